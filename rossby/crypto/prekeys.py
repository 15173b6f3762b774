"""Prekey signatures: the one string both the server and the SDK must agree on.

A device publishes prekeys so that others can start a forward-secret session
with it while it is offline (X3DH / PQXDH, docs/envelope.md "Prekeys"). The
server checks every signature at upload against the device's current
Ed25519 key, so a compromised server cannot slip its own prekeys in without
also holding a device key; senders check them again after a claim, because
the server is not trusted to have done so.

Signed bytes::

    "rossby/v2/prekey" 0x00 || kind (1) || device id (16) || key id (u32) || public key

Kinds: 0x01 the signed X25519 prekey, 0x02 a one-time ML-KEM-768 prekey,
0x03 the last-resort ML-KEM-768 prekey. The kind is signed so a one-time KEM
key cannot be replayed as a last-resort key (or the reverse), and the device
id so a prekey cannot be moved to another device. Every field before the key
has a fixed length, so the encoding is unambiguous.
"""

from __future__ import annotations

import enum
import struct
import uuid

from cryptography.exceptions import InvalidSignature

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Private,
    Ed25519Public,
    ed25519_private,
    ed25519_public,
)

PREKEY_LABEL = b"rossby/v2/prekey\x00"

X25519_PUBLIC_BYTES = KEY_BYTES
MLKEM768_PUBLIC_BYTES = 1184
MLKEM768_CIPHERTEXT_BYTES = 1088

MAX_KEY_ID = 2**32 - 1

_U32 = struct.Struct(">I")


class PrekeyKind(enum.IntEnum):
    """What a signed prekey is for; part of the signed bytes."""

    SIGNED = 0x01
    ONE_TIME_KEM = 0x02
    LAST_RESORT_KEM = 0x03

    @property
    def public_bytes(self) -> int:
        """The exact length of a public key of this kind."""
        return X25519_PUBLIC_BYTES if self is PrekeyKind.SIGNED else MLKEM768_PUBLIC_BYTES


def prekey_signed_bytes(
    kind: PrekeyKind, device_id: uuid.UUID, key_id: int, public_key: bytes
) -> bytes:
    """The bytes a prekey signature covers; ``ValueError`` on a malformed field."""
    if not 0 <= key_id <= MAX_KEY_ID:
        raise ValueError("a prekey id is a u32")
    if len(public_key) != kind.public_bytes:
        raise ValueError(f"a {kind.name} public key is exactly {kind.public_bytes} bytes")
    return PREKEY_LABEL + bytes([kind]) + device_id.bytes + _U32.pack(key_id) + public_key


def sign_prekey(
    signing_private: Ed25519Private,
    kind: PrekeyKind,
    device_id: uuid.UUID,
    key_id: int,
    public_key: bytes,
) -> bytes:
    """The 64-byte signature for ``SignedPrekey.signature``."""
    message = prekey_signed_bytes(kind, device_id, key_id, public_key)
    return ed25519_private(signing_private).sign(message)


def verify_prekey_signature(
    signing_public: Ed25519Public,
    kind: PrekeyKind,
    device_id: uuid.UUID,
    key_id: int,
    public_key: bytes,
    signature: bytes,
) -> bool:
    """True only for a valid signature; malformed input answers False, never raises."""
    try:
        if len(signature) != SIGNATURE_BYTES:
            return False
        message = prekey_signed_bytes(kind, device_id, key_id, public_key)
        ed25519_public(signing_public).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


__all__ = [
    "MAX_KEY_ID",
    "MLKEM768_CIPHERTEXT_BYTES",
    "MLKEM768_PUBLIC_BYTES",
    "PREKEY_LABEL",
    "X25519_PUBLIC_BYTES",
    "PrekeyKind",
    "prekey_signed_bytes",
    "sign_prekey",
    "verify_prekey_signature",
]
