"""The key log: a per-box hash chain of every change to the box's device keys.

Each entry records one change (a device registered, linked, re-keyed or
revoked), when the server recorded it, the hash of the previous entry, and
the signature of the device that made the change. The byte formats are in
docs/envelope.md ("Key log"); this module is their one implementation, used
by the server (to build entries and check signatures before appending) and
by clients (to verify a chain and replay it into the box's key set).

**Signed change string** (what the acting device signs)::

    "rossby/v1/key-change" 0x00 || kind (1) || box id (16) || device id (16)
        || X25519 public (32) || Ed25519 public (32)

``device id`` is the device the change is about; the keys are its keys after
the change (for a revocation: the keys it had). The signer is:

* REGISTER: the registering device itself, and the signature is its
  ``DeviceKeys.key_signature`` (a genesis entry has nobody to vouch for it);
  allowed only as entry 1;
* LINK: an active device of the box (the one that approved the link);
* ROTATE: the same device, with its *previous* signing key;
* REVOKE: an active device of the box (possibly the revoked one itself).
* IDLE_UNLINK: nobody. The server removes a device idle for
  ``device_idle_days`` (docs/security.md, "Idle devices"): the entry has
  no actor (the nil UUID) and no signature (empty; hashed as 64 zero
  bytes), and a reader accepts it only as the removal of a device that is
  active with exactly those keys and is not the box's last one. So the
  server can take a device away, which it could always do by not
  delivering to it, but never add a key or change one.

**Entry hash**: SHA-256 of::

    "rossby/v1/key-log" 0x00 || 0x01 || box id (16) || seq (u64) || prev hash (32)
        || timestamp ms (u64) || kind (1) || device id (16) || actor device id (16)
        || X25519 public (32) || Ed25519 public (32) || signature (64)

Every field has a fixed length, so the encoding is canonical.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Private,
    Ed25519Public,
    ed25519_private,
    ed25519_public,
)
from rossby.crypto.errors import CryptoError
from rossby.crypto.keys import verify_key_signature

CHANGE_LABEL = b"rossby/v1/key-change\x00"
ENTRY_LABEL = b"rossby/v1/key-log\x00"
ENTRY_VERSION = 0x01
HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)
#: The actor of an entry nobody signed (IDLE_UNLINK).
NO_ACTOR = uuid.UUID(int=0)
#: What the hash covers in place of the missing signature of an IDLE_UNLINK.
_NO_SIGNATURE = bytes(SIGNATURE_BYTES)

_ENTRY = struct.Struct(">QQ")  # seq, timestamp ms


class ChangeKind(enum.IntEnum):
    """Numbers match ``rossby.v1.KeyChangeKind`` and the byte in the formats."""

    REGISTER = 1
    LINK = 2
    ROTATE = 3
    REVOKE = 4
    IDLE_UNLINK = 5

    @property
    def label(self) -> str:
        return self.name.lower()


class InvalidKeyLog(CryptoError):
    """A chain that does not verify. ``reason`` says how, for the user:
    a key log is verified by the client that shows it, so there is no
    oracle to hide."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def change_message(
    kind: ChangeKind,
    box_id: uuid.UUID,
    device_id: uuid.UUID,
    encryption_key: bytes,
    signing_key: bytes,
) -> bytes:
    if len(encryption_key) != KEY_BYTES or len(signing_key) != KEY_BYTES:
        raise ValueError("keys are 32 bytes each")
    return (
        CHANGE_LABEL
        + bytes([int(kind)])
        + box_id.bytes
        + device_id.bytes
        + encryption_key
        + signing_key
    )


def sign_change(
    signing_private: Ed25519Private,
    kind: ChangeKind,
    box_id: uuid.UUID,
    device_id: uuid.UUID,
    encryption_key: bytes,
    signing_key: bytes,
) -> bytes:
    """The 64-byte signature a device puts on a LINK, ROTATE or REVOKE."""
    message = change_message(kind, box_id, device_id, encryption_key, signing_key)
    return ed25519_private(signing_private).sign(message)


def verify_change(
    signer_public: Ed25519Public,
    kind: ChangeKind,
    box_id: uuid.UUID,
    device_id: uuid.UUID,
    encryption_key: bytes,
    signing_key: bytes,
    signature: bytes,
) -> bool:
    """True only for a valid signature; malformed input answers False.

    A REGISTER is checked as the device's own ``key_signature``.
    """
    try:
        if len(signature) != SIGNATURE_BYTES:
            return False
        if kind is ChangeKind.REGISTER:
            return verify_key_signature(signing_key, device_id, encryption_key, signature)
        message = change_message(kind, box_id, device_id, encryption_key, signing_key)
        ed25519_public(signer_public).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry as a client sees it (``hash`` is what the server claimed)."""

    box_id: uuid.UUID
    seq: int
    prev_hash: bytes
    timestamp_ms: int
    kind: ChangeKind
    device_id: uuid.UUID
    actor_device_id: uuid.UUID
    encryption_key: bytes
    signing_key: bytes
    signature: bytes
    hash: bytes = b""

    def computed_hash(self) -> bytes:
        return entry_hash(
            self.box_id,
            self.seq,
            self.prev_hash,
            self.timestamp_ms,
            self.kind,
            self.device_id,
            self.actor_device_id,
            self.encryption_key,
            self.signing_key,
            self.signature,
        )


def entry_hash(
    box_id: uuid.UUID,
    seq: int,
    prev_hash: bytes,
    timestamp_ms: int,
    kind: ChangeKind,
    device_id: uuid.UUID,
    actor_device_id: uuid.UUID,
    encryption_key: bytes,
    signing_key: bytes,
    signature: bytes,
) -> bytes:
    if len(prev_hash) != HASH_BYTES:
        raise ValueError("prev_hash is 32 bytes")
    if len(encryption_key) != KEY_BYTES or len(signing_key) != KEY_BYTES:
        raise ValueError("keys are 32 bytes each")
    if kind is ChangeKind.IDLE_UNLINK:
        if signature or actor_device_id != NO_ACTOR:
            raise ValueError("an idle unlink has no actor and no signature")
        signature = _NO_SIGNATURE
    elif len(signature) != SIGNATURE_BYTES:
        raise ValueError("signature is 64 bytes")
    if seq < 1 or timestamp_ms < 0:
        raise ValueError("seq starts at 1; timestamps are not negative")
    encoded = (
        ENTRY_LABEL
        + bytes([ENTRY_VERSION])
        + box_id.bytes
        + struct.pack(">Q", seq)
        + prev_hash
        + struct.pack(">Q", timestamp_ms)
        + bytes([int(kind)])
        + device_id.bytes
        + actor_device_id.bytes
        + encryption_key
        + signing_key
        + signature
    )
    return hashlib.sha256(encoded).digest()


@dataclass(slots=True)
class ChainState:
    """A box's key set as replayed from its log up to ``seq``.

    ``devices`` maps each active device to its (X25519, Ed25519) public
    keys; ``retired`` holds revoked device ids, which can never return.
    """

    box_id: uuid.UUID
    seq: int = 0
    head: bytes = ZERO_HASH
    devices: dict[uuid.UUID, tuple[bytes, bytes]] = field(default_factory=dict)
    retired: set[uuid.UUID] = field(default_factory=set)

    def copy(self) -> ChainState:
        return ChainState(self.box_id, self.seq, self.head, dict(self.devices), set(self.retired))


def replay(state: ChainState, entries: Iterable[LogEntry]) -> ChainState:
    """Extend ``state`` by ``entries`` (which must follow it without a gap).

    Checks every link (seq, previous hash, recomputed hash), every signature
    against the key set *at that point*, and the rules of each kind. Raises
    ``InvalidKeyLog`` naming the first violation; ``state`` is not changed.
    """
    out = state.copy()
    for e in entries:
        where = f"key log entry {e.seq}"
        if e.box_id != out.box_id:
            raise InvalidKeyLog(f"{where} belongs to another box")
        if e.seq != out.seq + 1:
            raise InvalidKeyLog(f"{where} does not follow entry {out.seq}")
        if e.prev_hash != out.head:
            raise InvalidKeyLog(f"{where} does not link to the previous entry (a fork)")
        try:
            computed = e.computed_hash()
        except ValueError:
            raise InvalidKeyLog(f"{where} is malformed") from None
        if e.hash and e.hash != computed:
            raise InvalidKeyLog(f"{where} does not match its hash")
        keys = (e.encryption_key, e.signing_key)
        if e.kind is ChangeKind.IDLE_UNLINK:
            # Unsigned, so it may only ever take away: the hash above already
            # refused an actor or a signature on it.
            _remove(out, e, keys, where, "unlinks")
            out.seq, out.head = e.seq, computed
            continue
        if e.kind is ChangeKind.REGISTER:
            if e.seq != 1 or e.actor_device_id != e.device_id:
                raise InvalidKeyLog(f"{where}: a registration can only start the log")
            signer = e.signing_key
        else:
            actor = out.devices.get(e.actor_device_id)
            if actor is None:
                raise InvalidKeyLog(f"{where} is signed by a device that is not active")
            signer = actor[1]
        if not verify_change(
            signer,
            e.kind,
            e.box_id,
            e.device_id,
            e.encryption_key,
            e.signing_key,
            e.signature,
        ):
            raise InvalidKeyLog(f"{where} carries a signature that does not verify (forged)")
        if e.kind in (ChangeKind.REGISTER, ChangeKind.LINK):
            if e.device_id in out.devices or e.device_id in out.retired:
                raise InvalidKeyLog(f"{where} adds a device that already existed")
            out.devices[e.device_id] = keys
        elif e.kind is ChangeKind.ROTATE:
            if e.actor_device_id != e.device_id:
                raise InvalidKeyLog(f"{where}: only a device can rotate its own keys")
            out.devices[e.device_id] = keys
        else:  # REVOKE
            _remove(out, e, keys, where, "revokes")
        out.seq, out.head = e.seq, computed
    return out


def _remove(out: ChainState, e: LogEntry, keys: tuple[bytes, bytes], where: str, verb: str) -> None:
    if out.devices.get(e.device_id) != keys:
        raise InvalidKeyLog(f"{where} {verb} a device that is not active with those keys")
    if len(out.devices) == 1:
        raise InvalidKeyLog(f"{where} {verb} the box's last device")
    del out.devices[e.device_id]
    out.retired.add(e.device_id)


__all__ = [
    "CHANGE_LABEL",
    "ENTRY_LABEL",
    "NO_ACTOR",
    "ZERO_HASH",
    "ChainState",
    "ChangeKind",
    "InvalidKeyLog",
    "LogEntry",
    "change_message",
    "entry_hash",
    "replay",
    "sign_change",
    "verify_change",
]
