"""Device key pairs and the two signatures the server checks.

A device owns an X25519 key (others encrypt to it) and an Ed25519 key (it
signs with it). The private halves never leave the device; the server stores
the public halves and checks two signatures made with the signing key:

``key_signature``
    over ``b"rossby/v1/device-keys\\x00" || device id (16 raw bytes) ||
    encryption public key (32)``. It binds the encryption key to the device,
    so a server (or anyone in the middle) cannot swap in an encryption key
    of its own without also holding the device's signing key.

``authorize_signature``
    over ``b"rossby/v1/authorize\\x00" || device id (16 raw bytes) ||
    "\\n".join(codes) as UTF-8``. It proves that whoever presents the codes
    also holds the signing key registered for the device, so a code read off
    a stolen notification is useless on its own.

The labels end in a NUL byte and every field after them has a fixed length
except the last, so no two different inputs produce the same signed string.
The one variable-length field, the codes, is joined by ``"\\n"``; a code
containing ``"\\n"`` would make ``["a\\nb"]`` and ``["a", "b"]`` collide, so
signing refuses it and verification answers False.

Verification answers a bool and never raises on malformed input: the server
turns False into ``INVALID_ARGUMENT``/``PERMISSION_DENIED`` itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Ed25519Private,
    Ed25519Public,
    Rng,
    X25519Public,
    ed25519_private,
    ed25519_public,
    random_bytes,
    x25519_public,
)

DEVICE_KEYS_LABEL = b"rossby/v1/device-keys\x00"
AUTHORIZE_LABEL = b"rossby/v1/authorize\x00"


class PublicDeviceKeys(NamedTuple):
    """The public half of a device, as raw 32-byte keys (what the server stores)."""

    encryption_public: bytes
    signing_public: bytes


@dataclass(frozen=True, slots=True)
class DeviceKeyPair:
    """A device's two private keys.

    Held as key objects rather than bytes so that nothing prints or logs the
    private material by accident (``repr`` shows only the public halves).
    """

    encryption_private: X25519PrivateKey = field(repr=False)
    signing_private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, *, rng: Rng | None = None) -> DeviceKeyPair:
        """Fresh keys; ``rng`` exists only so test vectors are reproducible.

        Both key types accept any 32 bytes as a private key (X25519 clamps,
        Ed25519 treats them as a seed), so drawing them from ``rng`` is
        exactly as strong as the library's own ``generate()``.
        """
        return cls.from_private_bytes(random_bytes(rng, KEY_BYTES), random_bytes(rng, KEY_BYTES))

    @classmethod
    def from_private_bytes(cls, encryption_private: bytes, signing_private: bytes) -> DeviceKeyPair:
        if len(encryption_private) != KEY_BYTES or len(signing_private) != KEY_BYTES:
            raise ValueError("device private keys are exactly 32 bytes each")
        return cls(
            X25519PrivateKey.from_private_bytes(encryption_private),
            Ed25519PrivateKey.from_private_bytes(signing_private),
        )

    def encryption_private_bytes(self) -> bytes:
        return self.encryption_private.private_bytes_raw()

    def signing_private_bytes(self) -> bytes:
        return self.signing_private.private_bytes_raw()

    @property
    def encryption_public(self) -> X25519PublicKey:
        return self.encryption_private.public_key()

    @property
    def signing_public(self) -> Ed25519PublicKey:
        return self.signing_private.public_key()

    @property
    def encryption_public_bytes(self) -> bytes:
        return self.encryption_public.public_bytes_raw()

    @property
    def signing_public_bytes(self) -> bytes:
        return self.signing_public.public_bytes_raw()

    def public(self) -> PublicDeviceKeys:
        return PublicDeviceKeys(self.encryption_public_bytes, self.signing_public_bytes)

    def key_signature(self, device_id: uuid.UUID) -> bytes:
        return key_signature(self.signing_private, device_id, self.encryption_public_bytes)

    def authorize_signature(self, device_id: uuid.UUID, codes: Sequence[str]) -> bytes:
        return authorize_signature(self.signing_private, device_id, codes)

    def __repr__(self) -> str:
        return (
            f"DeviceKeyPair(encryption_public={self.encryption_public_bytes.hex()}, "
            f"signing_public={self.signing_public_bytes.hex()})"
        )


def _device_keys_message(device_id: uuid.UUID, encryption_public: X25519Public) -> bytes:
    raw = x25519_public(encryption_public).public_bytes_raw()
    return DEVICE_KEYS_LABEL + device_id.bytes + raw


def _authorize_message(device_id: uuid.UUID, codes: Sequence[str]) -> bytes:
    if isinstance(codes, str):
        raise TypeError("codes is a sequence of strings, not one string")
    if any("\n" in code for code in codes):
        raise ValueError('a code must not contain "\\n"')
    return AUTHORIZE_LABEL + device_id.bytes + "\n".join(codes).encode("utf-8")


def key_signature(
    signing_private: Ed25519Private, device_id: uuid.UUID, encryption_public: X25519Public
) -> bytes:
    """The 64-byte ``DeviceKeys.key_signature`` binding the encryption key to the device."""
    message = _device_keys_message(device_id, encryption_public)
    return ed25519_private(signing_private).sign(message)


def verify_key_signature(
    signing_public: Ed25519Public,
    device_id: uuid.UUID,
    encryption_public: X25519Public,
    signature: bytes,
) -> bool:
    """True only for a valid signature; malformed keys or signatures answer False."""
    try:
        if len(signature) != SIGNATURE_BYTES:
            return False
        message = _device_keys_message(device_id, encryption_public)
        ed25519_public(signing_public).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def authorize_signature(
    signing_private: Ed25519Private, device_id: uuid.UUID, codes: Sequence[str]
) -> bytes:
    """The 64-byte ``AuthorizeRequest.signature``; codes in the order they were registered."""
    return ed25519_private(signing_private).sign(_authorize_message(device_id, codes))


def verify_authorize_signature(
    signing_public: Ed25519Public,
    device_id: uuid.UUID,
    codes: Sequence[str],
    signature: bytes,
) -> bool:
    """True only for a valid signature; malformed input (incl. a code with "\\n") is False."""
    try:
        if len(signature) != SIGNATURE_BYTES:
            return False
        ed25519_public(signing_public).verify(signature, _authorize_message(device_id, codes))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
