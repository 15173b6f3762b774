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

The generators make the device's side of a prekey (the private half stays in
the client state, the public half and signature go to UploadPrekeys). An
ML-KEM-768 private key is kept as its 64-byte seed (FIPS 203 "d || z"), the
smallest form that rebuilds the whole key; ``kem_private_key`` rebuilds it.
Randomness is a parameter, as everywhere in ``rossby.crypto``, so the test
vectors are exact.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Private,
    Ed25519Public,
    Rng,
    ed25519_private,
    ed25519_public,
    random_bytes,
    x25519_private,
)

PREKEY_LABEL = b"rossby/v2/prekey\x00"

X25519_PUBLIC_BYTES = KEY_BYTES
MLKEM768_PUBLIC_BYTES = 1184
MLKEM768_CIPHERTEXT_BYTES = 1088

MLKEM768_SEED_BYTES = 64

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


@dataclass(frozen=True, slots=True)
class PrekeySecret:
    """One prekey as its owner keeps it: the private half never leaves the device.

    ``kind`` is None for a one-time X25519 prekey, which is not signed (as in
    PQXDH: it only adds forward secrecy, and a forged one cannot open anything
    without the signed prekey's private half). ``private`` is the X25519
    scalar (32 bytes) or the ML-KEM-768 seed (64 bytes).
    """

    kind: PrekeyKind | None
    key_id: int
    private: bytes = field(repr=False)
    public: bytes
    signature: bytes


def _check_ids(first_id: int, count: int) -> None:
    if count < 0 or not 0 <= first_id or first_id + max(count, 1) - 1 > MAX_KEY_ID:
        raise ValueError("prekey ids are u32: first_id .. first_id + count - 1 must fit")


def kem_private_key(seed: bytes) -> MLKEM768PrivateKey:
    """The ML-KEM-768 key a ``PrekeySecret.private`` seed stands for."""
    if not isinstance(seed, bytes) or len(seed) != MLKEM768_SEED_BYTES:
        raise ValueError(f"an ML-KEM-768 seed is exactly {MLKEM768_SEED_BYTES} bytes")
    return MLKEM768PrivateKey.from_seed_bytes(seed)


def generate_signed_prekey(
    signing_private: Ed25519Private,
    device_id: uuid.UUID,
    key_id: int,
    *,
    rng: Rng | None = None,
) -> PrekeySecret:
    """A fresh signed X25519 prekey (PQXDH section 3.2: SPK_B and Sig(IK_B, Encode(SPK_B)))."""
    _check_ids(key_id, 1)
    private = x25519_private(random_bytes(rng, KEY_BYTES))
    public = private.public_key().public_bytes_raw()
    signature = sign_prekey(signing_private, PrekeyKind.SIGNED, device_id, key_id, public)
    return PrekeySecret(PrekeyKind.SIGNED, key_id, private.private_bytes_raw(), public, signature)


def generate_one_time_prekeys(
    first_id: int, count: int, *, rng: Rng | None = None
) -> list[PrekeySecret]:
    """``count`` one-time X25519 prekeys (OPK_B), ids ``first_id`` upward, unsigned."""
    _check_ids(first_id, count)
    out = []
    for key_id in range(first_id, first_id + count):
        private = x25519_private(random_bytes(rng, KEY_BYTES))
        public = private.public_key().public_bytes_raw()
        out.append(PrekeySecret(None, key_id, private.private_bytes_raw(), public, b""))
    return out


def generate_kem_prekeys(
    signing_private: Ed25519Private,
    device_id: uuid.UUID,
    first_id: int,
    count: int,
    *,
    last_resort: bool = False,
    rng: Rng | None = None,
) -> list[PrekeySecret]:
    """``count`` signed ML-KEM-768 prekeys (PQXDH 3.2: PQOPK_B, or PQSPK_B the last resort).

    ``rng`` is asked for one 64-byte seed per key, in id order.
    """
    _check_ids(first_id, count)
    kind = PrekeyKind.LAST_RESORT_KEM if last_resort else PrekeyKind.ONE_TIME_KEM
    out = []
    for key_id in range(first_id, first_id + count):
        seed = random_bytes(rng, MLKEM768_SEED_BYTES)
        public = kem_private_key(seed).public_key().public_bytes_raw()
        signature = sign_prekey(signing_private, kind, device_id, key_id, public)
        out.append(PrekeySecret(kind, key_id, seed, public, signature))
    return out


__all__ = [
    "MAX_KEY_ID",
    "MLKEM768_CIPHERTEXT_BYTES",
    "MLKEM768_PUBLIC_BYTES",
    "MLKEM768_SEED_BYTES",
    "PREKEY_LABEL",
    "X25519_PUBLIC_BYTES",
    "PrekeyKind",
    "PrekeySecret",
    "generate_kem_prekeys",
    "generate_one_time_prekeys",
    "generate_signed_prekey",
    "kem_private_key",
    "prekey_signed_bytes",
    "sign_prekey",
    "verify_prekey_signature",
]
