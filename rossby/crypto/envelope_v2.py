"""Envelope version 2: the v1 shape, with each reader's key carried by its ratchet session.

As in v1 (``rossby.crypto.envelope``), one body is encrypted once under a
fresh random content key K and the sending device signs every byte. What
changes is how K reaches each reader device: instead of a wrap to the
device's static X25519 key (which a later theft of that key opens), K is
the plaintext of one Double Ratchet message of the (sender device, reader
device) session, so the keys that protected it are gone once both sides
have moved on (forward secrecy) and heal after a compromise (PCS). While a
session is not yet acknowledged, its entry also carries the PQXDH initial
header so the reader can create the session.

Sealing is two-phase because the ratchet is async and stateful and lives in
the client, not here::

    draft = draft_envelope(sender, recipient_box, reader_ids, message_id)
    for each reader: ratchet message = session.encrypt(draft.content_key, draft.associated_data)
    data  = seal_draft(draft, {reader: DeviceEntry(initial or None, ratchet message)}, kind, body)

and so is opening::

    parsed = parse_envelope(data, my_device_id=..., expected_recipient_box=...)
    verify_envelope(parsed, sender_signing_public)         # before any decryption
    K      = session.decrypt(parsed.entry.ratchet_message, parsed.associated_data)
    kind, body = open_body(parsed, K)

Format v2, big-endian, ``n`` reader devices (docs/envelope.md "Envelope v2")::

    off  size  field
    0    1     version = 0x02
    1    16    sender box id
    17   16    sender device id
    33   16    recipient box id
    49   16    message id
    65   8     sent at, ms since the Unix epoch (u64)
    73   2     n, reader device count (u16), 1..MAX_RECIPIENTS
    75   ...   reader table, strictly ascending by device id, each entry:
                 16    device id
                 1     flags: 0x01 = an initial header follows; other bits zero
                 2     r, ratchet message length (u16)
                 1133  PQXDH initial header (only with flag 0x01)
                 r     ratchet message (its plaintext is K)
    ...  L     body: ChaCha20-Poly1305(K, nonce 0^12, padded plaintext,
                                       aad = fixed header || table)
    end  64    Ed25519 signature over "rossby/v2/envelope" 0x00 || every byte before it

The first 75 bytes are the fixed header. Each ratchet message binds
``associated_data = "rossby/v2/envelope-key" 0x00 || fixed header``, so a
ratchet message cannot be moved under another envelope's header even by a
reader who could re-sign. The padded plaintext is v1's (kind, length, body,
zeros to a multiple of 64). The zero body nonce is safe for the v1 reason:
K is fresh per envelope.

Every failure to parse, verify or open is the one opaque ``InvalidEnvelope``.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Public,
    Rng,
    ed25519_public,
    random_bytes,
)
from rossby.crypto._padding import PAD_BLOCK, check_kind, pad, padded_length, unpad
from rossby.crypto.envelope import MAX_RECIPIENTS, EnvelopeHeader, SenderIdentity
from rossby.crypto.errors import InvalidEnvelope
from rossby.crypto.pqxdh import INITIAL_HEADER_BYTES, InitialHeader
from rossby.crypto.ratchet import HEADER_BYTES as RATCHET_HEADER_BYTES
from rossby.crypto.ratchet import message_size

VERSION = 0x02
SIGN_LABEL = b"rossby/v2/envelope\x00"
KEY_AD_LABEL = b"rossby/v2/envelope-key\x00"

_HEADER = struct.Struct(">B16s16s16s16sQH")
FIXED_HEADER_BYTES = _HEADER.size  # 75
_ENTRY_HEAD = struct.Struct(">16sBH")  # device id, flags, r
_FLAG_INITIAL = 0x01
_TAG_BYTES = 16
_ZERO_NONCE = bytes(12)
#: A ratchet message is at least its header, one AES block and the 32-byte tag.
_MIN_RATCHET_MESSAGE = RATCHET_HEADER_BYTES + 16 + 32
_MAX_RATCHET_MESSAGE = 2**16 - 1

SESSION_ENTRY_BYTES = _ENTRY_HEAD.size + message_size(KEY_BYTES)  # 139
INITIAL_ENTRY_BYTES = SESSION_ENTRY_BYTES + INITIAL_HEADER_BYTES  # 1272


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One reader's slot: the PQXDH header while its session is unacknowledged, then K."""

    initial: InitialHeader | None
    ratchet_message: bytes


@dataclass(frozen=True, slots=True)
class EnvelopeDraft:
    """An envelope before its entries exist: what each ratchet encrypt must carry and bind."""

    sender: SenderIdentity = field(repr=False)
    header: EnvelopeHeader
    fixed: bytes
    content_key: bytes = field(repr=False)
    associated_data: bytes


@dataclass(frozen=True, slots=True)
class ParsedEnvelope:
    """A structurally valid envelope addressed to this device. NOT yet verified."""

    header: EnvelopeHeader
    entry: DeviceEntry
    associated_data: bytes
    signed: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    body_start: int = field(repr=False)


def envelope_v2_size(session_entries: int, initial_entries: int, kind: str, body_len: int) -> int:
    """Exact size of a v2 envelope, to check against the server's message limit.

    Every entry carries a 32-byte K; an initial entry adds the 1133-byte
    PQXDH header (dominated by the 1088-byte ML-KEM ciphertext).
    """
    padded = padded_length(len(check_kind(kind)), body_len)
    return (
        FIXED_HEADER_BYTES
        + SESSION_ENTRY_BYTES * session_entries
        + INITIAL_ENTRY_BYTES * initial_entries
        + padded
        + _TAG_BYTES
        + SIGNATURE_BYTES
    )


def draft_envelope(
    sender: SenderIdentity,
    recipient_box: uuid.UUID,
    reader_ids: Iterable[uuid.UUID],
    message_id: uuid.UUID,
    *,
    now_ms: int | None = None,
    rng: Rng | None = None,
) -> EnvelopeDraft:
    """Fix the header and draw K; ``rng`` is asked for the 32-byte content key.

    ``reader_ids`` are the recipient box's active devices plus the sender's
    other devices (never the sending device), 1..MAX_RECIPIENTS, no repeats:
    anything else is a ``ValueError``, as in v1.
    """
    readers = list(reader_ids)
    if not 1 <= len(readers) <= MAX_RECIPIENTS:
        raise ValueError(f"an envelope has 1..{MAX_RECIPIENTS} reader devices")
    if len(set(readers)) != len(readers):
        raise ValueError("a reader device is listed twice")
    if sender.device_id in readers:
        raise ValueError("the sending device is not its own reader")
    sent_at_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= sent_at_ms < 2**64:
        raise ValueError("now_ms is out of range")
    content_key = random_bytes(rng, KEY_BYTES)
    ordered = tuple(sorted(readers, key=lambda r: r.bytes))
    fixed = _HEADER.pack(
        VERSION,
        sender.box_id.bytes,
        sender.device_id.bytes,
        recipient_box.bytes,
        message_id.bytes,
        sent_at_ms,
        len(ordered),
    )
    header = EnvelopeHeader(
        version=VERSION,
        sender_box=sender.box_id,
        sender_device=sender.device_id,
        recipient_box=recipient_box,
        message_id=message_id,
        sent_at_ms=sent_at_ms,
        recipient_devices=ordered,
    )
    return EnvelopeDraft(sender, header, fixed, content_key, KEY_AD_LABEL + fixed)


def _encode_entry(device_id: uuid.UUID, entry: DeviceEntry) -> bytes:
    if not _MIN_RATCHET_MESSAGE <= len(entry.ratchet_message) <= _MAX_RATCHET_MESSAGE:
        raise ValueError(f"device {device_id}: a ratchet message is 88..65535 bytes")
    flags = _FLAG_INITIAL if entry.initial is not None else 0
    initial = entry.initial.encode() if entry.initial is not None else b""
    head = _ENTRY_HEAD.pack(device_id.bytes, flags, len(entry.ratchet_message))
    return head + initial + entry.ratchet_message


def seal_draft(
    draft: EnvelopeDraft, entries: Mapping[uuid.UUID, DeviceEntry], kind: str, body: bytes
) -> bytes:
    """Assemble and sign; ``entries`` must name exactly the draft's readers (ValueError)."""
    if set(entries) != set(draft.header.recipient_devices):
        raise ValueError("entries must cover exactly the draft's reader devices")
    plaintext = pad(kind, body)
    table = b"".join(_encode_entry(d, entries[d]) for d in draft.header.recipient_devices)
    signed = draft.fixed + table
    signed += ChaCha20Poly1305(draft.content_key).encrypt(_ZERO_NONCE, plaintext, signed)
    return signed + draft.sender.signing_private.sign(SIGN_LABEL + signed)


def peek_version(data: bytes) -> int:
    """1 or 2 (clients still open v1 envelopes queued before the upgrade); else InvalidEnvelope."""
    if not isinstance(data, bytes) or not data or data[0] not in (0x01, VERSION):
        raise InvalidEnvelope
    return data[0]


def _parse_table(
    data: bytes, count: int
) -> tuple[list[tuple[bytes, InitialHeader | None, bytes]], int]:
    """Walk the length-prefixed entries; ValueError on anything non-canonical."""
    offset = FIXED_HEADER_BYTES
    out: list[tuple[bytes, InitialHeader | None, bytes]] = []
    for _ in range(count):
        device, flags, r = _ENTRY_HEAD.unpack_from(data, offset)
        offset += _ENTRY_HEAD.size
        if flags & ~_FLAG_INITIAL or r < _MIN_RATCHET_MESSAGE:
            raise ValueError
        initial = None
        if flags & _FLAG_INITIAL:
            raw = data[offset : offset + INITIAL_HEADER_BYTES]
            try:
                initial = InitialHeader.decode(raw)
            except InvalidEnvelope:
                raise ValueError from None
            offset += INITIAL_HEADER_BYTES
        message = data[offset : offset + r]
        if len(message) != r:
            raise ValueError
        offset += r
        out.append((device, initial, message))
    if any(a[0] >= b[0] for a, b in pairwise(out)):
        raise ValueError  # not canonical: unsorted or duplicated
    return out, offset


def parse_envelope(
    data: bytes, *, my_device_id: uuid.UUID, expected_recipient_box: uuid.UUID
) -> ParsedEnvelope:
    """Split a v2 envelope and find this device's entry. Nothing is verified yet.

    Refused (``InvalidEnvelope``) unless well formed, addressed to
    ``expected_recipient_box`` or a sync copy from it (sender box equal), and
    listing ``my_device_id``. The result is UNAUTHENTICATED until
    ``verify_envelope`` passes; the header tells whose key to look up.
    """
    try:
        if not isinstance(data, bytes) or len(data) < FIXED_HEADER_BYTES:
            raise ValueError
        version, sbox, sdev, rbox, mid, sent_at, count = _HEADER.unpack_from(data)
        if version != VERSION or not 1 <= count <= MAX_RECIPIENTS:
            raise ValueError
        entries, table_end = _parse_table(data, count)
        # The smallest body is one padding block plus its tag.
        if len(data) - table_end - SIGNATURE_BYTES < PAD_BLOCK + _TAG_BYTES:
            raise ValueError
        if (len(data) - table_end - SIGNATURE_BYTES - _TAG_BYTES) % PAD_BLOCK:
            raise ValueError
        header = EnvelopeHeader(
            version=version,
            sender_box=uuid.UUID(bytes=sbox),
            sender_device=uuid.UUID(bytes=sdev),
            recipient_box=uuid.UUID(bytes=rbox),
            message_id=uuid.UUID(bytes=mid),
            sent_at_ms=sent_at,
            recipient_devices=tuple(uuid.UUID(bytes=e[0]) for e in entries),
        )
        if expected_recipient_box not in (header.recipient_box, header.sender_box):
            raise ValueError
        mine = [e for e in entries if e[0] == my_device_id.bytes]
        if not mine:
            raise ValueError
        _, initial, message = mine[0]
    except (ValueError, struct.error):
        raise InvalidEnvelope from None
    return ParsedEnvelope(
        header=header,
        entry=DeviceEntry(initial, message),
        associated_data=KEY_AD_LABEL + data[:FIXED_HEADER_BYTES],
        signed=data[:-SIGNATURE_BYTES],
        signature=data[-SIGNATURE_BYTES:],
        body_start=table_end,
    )


def verify_envelope(parsed: ParsedEnvelope, sender_signing_public: Ed25519Public) -> None:
    """Check the sender device's signature over every byte; InvalidEnvelope if it fails.

    Run it before the ratchet decrypt: a forged entry must not reach (and
    cost a skipped-key computation in) the session.
    """
    try:
        ed25519_public(sender_signing_public).verify(parsed.signature, SIGN_LABEL + parsed.signed)
    except (InvalidSignature, ValueError, TypeError):
        raise InvalidEnvelope from None


def open_body(parsed: ParsedEnvelope, content_key: bytes) -> tuple[str, bytes]:
    """Decrypt and strictly unpad the body under K; InvalidEnvelope on any failure."""
    try:
        if not isinstance(content_key, bytes) or len(content_key) != KEY_BYTES:
            raise ValueError
        aad, body_ct = parsed.signed[: parsed.body_start], parsed.signed[parsed.body_start :]
        return unpad(ChaCha20Poly1305(content_key).decrypt(_ZERO_NONCE, body_ct, aad))
    except (ValueError, InvalidTag, struct.error):
        raise InvalidEnvelope from None


__all__ = [
    "FIXED_HEADER_BYTES",
    "INITIAL_ENTRY_BYTES",
    "KEY_AD_LABEL",
    "SESSION_ENTRY_BYTES",
    "SIGN_LABEL",
    "VERSION",
    "DeviceEntry",
    "EnvelopeDraft",
    "ParsedEnvelope",
    "draft_envelope",
    "envelope_v2_size",
    "open_body",
    "parse_envelope",
    "peek_version",
    "seal_draft",
    "verify_envelope",
]
