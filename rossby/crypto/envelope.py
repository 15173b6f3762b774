"""The v1 message envelope: one body, a key for every reader, one signature.

Read-only since envelope v2 (``rossby.crypto.envelope_v2``), which carries
the content key in Double Ratchet sessions for forward secrecy: clients open
v1 envelopes queued before their upgrade and send only v2. ``seal_envelope``
stays for the tests and vectors that pin this format.

A box has one queue that all of its devices read, so a message must be
readable by every active device of the recipient box, and by the sender's own
other devices (which receive a copy in the sender's box so every device shows
the conversation). The body is therefore encrypted once under a fresh random
content key, and that key is wrapped separately for each device. The sending
device signs the whole envelope, so a reader knows which device wrote it and
that nobody (the server included) changed, added or removed a single byte.

Format v1, big-endian, ``n`` recipients (see ``docs/envelope.md`` for vectors)::

    off      size     field
    0        1        version = 0x01
    1        16       sender box id (raw UUID bytes)
    17       16       sender device id
    33       16       recipient box id
    49       16       message id
    65       8        sent at, milliseconds since the Unix epoch (u64)
    73       32       ephemeral X25519 public key E (fresh per message)
    105      2        n, recipient device count (u16), 1..MAX_RECIPIENTS
    107      64*n     recipient table, ascending by device id, each entry:
                        16  device id
                        48  wrapped content key (32 ciphertext + 16 tag)
    107+64n  L        body: ChaCha20-Poly1305 ciphertext of the padded plaintext
    end-64   64       Ed25519 signature by the sender device

The first 107 bytes are the *fixed header*.

Wrapping, per recipient device D with X25519 public key P::

    shared   = X25519(e, P)
    wrap key = HKDF-SHA256(ikm=shared, salt=b"rossby/v1/envelope-wrap",
                           info=b"rossby/v1/envelope-wrap\\x00" || E || P || D, length=32)
    wrapped  = ChaCha20-Poly1305(wrap key, nonce=12 zero bytes,
                                 plaintext=content key, aad=fixed header)

Body: ``ChaCha20-Poly1305(content key, nonce=12 zero bytes, padded plaintext,
aad=fixed header || recipient table)``. The all-zero nonces are safe because
each key encrypts exactly one message: the content key is fresh random per
envelope, and each wrap key is unique to (E, P, D) with E fresh per envelope.
The device id is in the wrap ``info`` so that two devices sharing a public
key still get different wrap keys.

Padded plaintext::

    1    k = kind length, 1..32
    k    kind, ASCII matching [a-z][a-z0-9._-]*   ("text", "receipt", "typing", ...)
    4    m = body length (u32)
    m    body
    p    zero bytes, the fewest that make the total a multiple of 64

The kind lives inside the ciphertext and the padding blurs lengths, so the
server cannot tell a typing notification from a short text by its size alone.

Signature: Ed25519 over ``b"rossby/v1/envelope\\x00" || every byte before the
signature``. Signing the ciphertext (rather than the plaintext) lets a reader
reject a forgery before any decryption, and it binds everything:

* sender box and device: the reader verifies with the key that the keystore
  holds for exactly that (box, device), so nobody can write as another
  device, and a reader who can decrypt cannot re-sign someone else's message
  as its own sender without its own key (and then it *is* the sender);
* recipient box: an envelope cannot be replayed into a different box; the
  opener insists on the box it fetched the message from (or, for the sender's
  own sync copy, that the sender box is its own box);
* message id: the server's idempotency key and the client's dedupe key, so a
  replay into the same box is recognised as a repeat rather than a new
  message; clients must drop message ids they have already seen and should
  check that the id matches the one the server reported;
* timestamp, recipient table and body: nothing can be truncated, re-ordered
  or stripped of a reader without detection.

The fixed header also goes into every AEAD's associated data, so even a
reader holding the content key cannot move the body under another header
without re-signing it.

Limits: at most ``MAX_RECIPIENTS`` (256) devices per envelope, counting the
recipient box's devices and the sender's other devices together; that keeps
the table to 16 KiB, well under the server's default 64 KiB message limit.
Use ``envelope_size`` to check a message against the limit before sealing.

Every failure to open or peek raises the one opaque ``InvalidEnvelope``.
Only ``sender_lookup`` may raise something else: its own errors (a keystore
that is unreachable, say) propagate, because dropping a genuine message as
"invalid" on a network hiccup would be worse than retrying.
"""

from __future__ import annotations

import struct
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Public,
    Rng,
    X25519Private,
    X25519Public,
    ed25519_public,
    random_bytes,
    x25519_private,
    x25519_public,
)
from rossby.crypto._padding import PAD_BLOCK, check_kind, pad, padded_length, unpad
from rossby.crypto.errors import InvalidEnvelope

VERSION = 0x01
MAX_RECIPIENTS = 256

SIGN_LABEL = b"rossby/v1/envelope\x00"
WRAP_LABEL = b"rossby/v1/envelope-wrap"

_HEADER = struct.Struct(">B16s16s16s16sQ32sH")
_ENTRY_BYTES = 16 + KEY_BYTES + 16
_TAG_BYTES = 16
_ZERO_NONCE = bytes(12)

SenderLookup = Callable[[uuid.UUID, uuid.UUID], Ed25519Public | None]
"""``sender_lookup(sender_box, sender_device)``: the device's Ed25519 public key, or None."""


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """The sending device: who it claims to be, and the key that proves it."""

    box_id: uuid.UUID
    device_id: uuid.UUID
    signing_private: Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecipientDevice:
    """One device that must be able to read the message.

    The caller should have checked the device's ``key_signature`` (see
    ``rossby.crypto.keys.verify_key_signature``) before trusting the key.
    """

    device_id: uuid.UUID
    encryption_public: X25519Public


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """What ``peek_header`` reveals. UNAUTHENTICATED: use it only to find the sender's key."""

    version: int
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    recipient_box: uuid.UUID
    message_id: uuid.UUID
    sent_at_ms: int
    recipient_devices: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """A verified, decrypted message. ``sent_at_ms`` is the sender's clock, signed."""

    message_id: uuid.UUID
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    recipient_box: uuid.UUID
    sent_at_ms: int
    kind: str
    body: bytes


@dataclass(frozen=True, slots=True)
class _Parsed:
    header: EnvelopeHeader
    fixed: bytes
    ephemeral_public: bytes
    table_end: int
    entries: tuple[bytes, ...]  # 64-byte table entries, ascending by device id


def envelope_size(recipient_count: int, kind: str, body_len: int) -> int:
    """Exact size in bytes of an envelope, to check against the server's message limit."""
    padded = padded_length(len(check_kind(kind)), body_len)
    return _HEADER.size + _ENTRY_BYTES * recipient_count + padded + _TAG_BYTES + SIGNATURE_BYTES


def _wrap_key(
    shared: bytes, ephemeral_public: bytes, device_public: bytes, device_id: bytes
) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=WRAP_LABEL,
        info=WRAP_LABEL + b"\x00" + ephemeral_public + device_public + device_id,
    ).derive(shared)


def seal_envelope(
    sender: SenderIdentity,
    recipient_box: uuid.UUID,
    recipients: Sequence[RecipientDevice],
    message_id: uuid.UUID,
    kind: str,
    body: bytes,
    *,
    now_ms: int | None = None,
    rng: Rng | None = None,
) -> bytes:
    """Encrypt ``body`` for every device in ``recipients`` and sign it as ``sender``.

    ``recipients`` lists every active device of ``recipient_box`` plus the
    sender's own *other* devices, in any order; listing the sending device
    itself, a device twice, more than ``MAX_RECIPIENTS`` devices or none is a
    ``ValueError``. ``now_ms`` and ``rng`` exist for deterministic tests:
    ``rng`` is asked first for the 32-byte ephemeral private key, then for
    the 32-byte content key.
    """
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"an envelope has 1..{MAX_RECIPIENTS} recipient devices")
    ids = [r.device_id.bytes for r in recipients]
    if len(set(ids)) != len(ids):
        raise ValueError("a recipient device is listed twice")
    if sender.device_id.bytes in ids:
        raise ValueError("the sending device is not its own recipient")
    plaintext = pad(kind, body)
    sent_at_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= sent_at_ms < 2**64:
        raise ValueError("now_ms is out of range")

    ephemeral = X25519PrivateKey.from_private_bytes(random_bytes(rng, KEY_BYTES))
    content_key = random_bytes(rng, KEY_BYTES)
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    fixed = _HEADER.pack(
        VERSION,
        sender.box_id.bytes,
        sender.device_id.bytes,
        recipient_box.bytes,
        message_id.bytes,
        sent_at_ms,
        ephemeral_public,
        len(recipients),
    )

    table = bytearray()
    for recipient in sorted(recipients, key=lambda r: r.device_id.bytes):
        device_public = x25519_public(recipient.encryption_public)
        try:
            shared = ephemeral.exchange(device_public)
        except ValueError:
            raise ValueError(f"device {recipient.device_id} has an unusable X25519 key") from None
        device_id = recipient.device_id.bytes
        key = _wrap_key(shared, ephemeral_public, device_public.public_bytes_raw(), device_id)
        table += device_id + ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, content_key, fixed)

    signed = fixed + bytes(table)
    signed += ChaCha20Poly1305(content_key).encrypt(_ZERO_NONCE, plaintext, signed)
    return signed + sender.signing_private.sign(SIGN_LABEL + signed)


def _parse(data: bytes) -> _Parsed:
    """Split the structure; raises ValueError (turned opaque by the callers)."""
    if not isinstance(data, bytes) or len(data) < _HEADER.size:
        raise ValueError
    version, sbox, sdev, rbox, mid, sent_at, eph, count = _HEADER.unpack_from(data)
    if version != VERSION or not 1 <= count <= MAX_RECIPIENTS:
        raise ValueError
    table_end = _HEADER.size + _ENTRY_BYTES * count
    # The smallest body is one padding block plus its tag.
    if len(data) < table_end + PAD_BLOCK + _TAG_BYTES + SIGNATURE_BYTES:
        raise ValueError
    entries = tuple(
        data[o : o + _ENTRY_BYTES] for o in range(_HEADER.size, table_end, _ENTRY_BYTES)
    )
    ids = [e[:16] for e in entries]
    if any(a >= b for a, b in pairwise(ids)):
        raise ValueError  # not canonical: unsorted or duplicated
    header = EnvelopeHeader(
        version=version,
        sender_box=uuid.UUID(bytes=sbox),
        sender_device=uuid.UUID(bytes=sdev),
        recipient_box=uuid.UUID(bytes=rbox),
        message_id=uuid.UUID(bytes=mid),
        sent_at_ms=sent_at,
        recipient_devices=tuple(uuid.UUID(bytes=i) for i in ids),
    )
    return _Parsed(header, data[: _HEADER.size], eph, table_end, entries)


def peek_header(data: bytes) -> EnvelopeHeader:
    """Read the header WITHOUT verifying anything, to find whose key to look up.

    Lets an async client resolve the sender's key before calling the
    synchronous ``open_envelope``. Nothing in the result may be shown or
    acted upon until ``open_envelope`` succeeds.
    """
    try:
        return _parse(data).header
    except ValueError:
        raise InvalidEnvelope from None


def open_envelope(
    data: bytes,
    *,
    my_device_id: uuid.UUID,
    my_encryption_private: X25519Private,
    expected_recipient_box: uuid.UUID,
    sender_lookup: SenderLookup,
) -> OpenedMessage:
    """Verify and decrypt an envelope fetched from ``expected_recipient_box``'s queue.

    Accepted only when the envelope is addressed to that box, or is the sync
    copy of a message one of that box's own devices sent elsewhere (sender
    box == ``expected_recipient_box``); when ``my_device_id`` is one of its
    readers; and when the signature verifies under the key ``sender_lookup``
    returns for the claimed sender. Anything else raises ``InvalidEnvelope``.
    """
    private = x25519_private(my_encryption_private)
    my_public = private.public_key().public_bytes_raw()
    try:
        parsed = _parse(data)
        header = parsed.header
        if expected_recipient_box not in (header.recipient_box, header.sender_box):
            raise ValueError
        my_id = my_device_id.bytes
        ids = [e[:16] for e in parsed.entries]
        i = bisect_left(ids, my_id)
        if i == len(ids) or ids[i] != my_id:
            raise ValueError
        found = sender_lookup(header.sender_box, header.sender_device)
        if found is None:
            raise ValueError
        signer: Ed25519PublicKey = ed25519_public(found)
        signed, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        signer.verify(signature, SIGN_LABEL + signed)

        shared = private.exchange(X25519PublicKey.from_public_bytes(parsed.ephemeral_public))
        key = _wrap_key(shared, parsed.ephemeral_public, my_public, my_id)
        wrapped = parsed.entries[i][16:]
        content_key = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, wrapped, parsed.fixed)
        body_ct = signed[parsed.table_end :]
        aad = signed[: parsed.table_end]
        kind, body = unpad(ChaCha20Poly1305(content_key).decrypt(_ZERO_NONCE, body_ct, aad))
    except (ValueError, InvalidSignature, InvalidTag, struct.error):
        raise InvalidEnvelope from None
    return OpenedMessage(
        message_id=header.message_id,
        sender_box=header.sender_box,
        sender_device=header.sender_device,
        recipient_box=header.recipient_box,
        sent_at_ms=header.sent_at_ms,
        kind=kind,
        body=body,
    )
