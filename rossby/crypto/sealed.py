"""Anonymous-sender sealed boxes: encrypt bytes to one X25519 public key.

The server uses this to hand a device its Hawk credentials
(``AuthorizeResponse.sealed_credentials``): only the device that registered
the X25519 key can read them, so the credentials never appear in clear in
logs, proxies or a compromised TLS terminator. The box does not say who
sealed it; the caller authenticates the context some other way (here: the
TLS channel plus the codes the device just proved).

Format v1 (byte offsets)::

    0      1   version = 0x01
    1     32   ephemeral X25519 public key E
    33   n+16  ChaCha20-Poly1305 ciphertext of the n-byte plaintext, with tag

Key schedule: ``shared = X25519(e, R)`` for the recipient's public key R, then
``HKDF-SHA256(ikm=shared, salt=b"rossby/v1/sealed", info=b"rossby/v1/sealed\\x00"
|| 0x01 || E || R, length=44)``; the first 32 bytes are the AEAD key, the last 12
the nonce. Putting both public keys in ``info`` binds the key to this exact
pair (no key reuse across recipients, no swapping E for an equivalent point);
the ephemeral key is fresh per seal, so a derived nonce never repeats under a
key. The AEAD's associated data is ``version || E || aad`` (the caller's
``aad``, which the opener must repeat exactly, e.g. the device id, so a box
sealed for one context cannot be replayed into another).

Hawk credentials (``AuthorizeResponse.sealed_credentials``) are the
serialized ``HawkCredentials`` message sealed to the device's X25519 key with
``aad = credentials_aad(device_id) = b"rossby/v1/credentials\x00" || device id
(16 raw bytes)``, so credentials issued to one device cannot be passed off to
another that happens to share an encryption key.

Every failure to unseal raises the one opaque ``InvalidSealed``.
"""

from __future__ import annotations

import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rossby.crypto._common import (
    KEY_BYTES,
    Rng,
    X25519Private,
    X25519Public,
    random_bytes,
    x25519_private,
    x25519_public,
)
from rossby.crypto.errors import InvalidSealed

VERSION = 0x01
_LABEL = b"rossby/v1/sealed"
_TAG_BYTES = 16
_NONCE_BYTES = 12
OVERHEAD = 1 + KEY_BYTES + _TAG_BYTES
"""Bytes a sealed box adds to its plaintext (49)."""
CREDENTIALS_LABEL = b"rossby/v1/credentials\x00"


def credentials_aad(device_id: uuid.UUID) -> bytes:
    """The ``aad`` both server and client use for ``AuthorizeResponse.sealed_credentials``."""
    return CREDENTIALS_LABEL + device_id.bytes


def _key_and_nonce(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES + _NONCE_BYTES,
        salt=_LABEL,
        info=_LABEL + b"\x00" + bytes([VERSION]) + ephemeral_public + recipient_public,
    ).derive(shared)


def seal(
    recipient_public: X25519Public, plaintext: bytes, *, aad: bytes = b"", rng: Rng | None = None
) -> bytes:
    """Encrypt ``plaintext`` so only the holder of the matching private key can read it.

    ``rng`` supplies the 32-byte ephemeral private key; leave it ``None``
    outside test vectors. A recipient key that is a low-order point (the
    shared secret would be all zeros) raises ``ValueError``.
    """
    recipient = x25519_public(recipient_public)
    ephemeral = X25519PrivateKey.from_private_bytes(random_bytes(rng, KEY_BYTES))
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(recipient)
    material = _key_and_nonce(shared, ephemeral_public, recipient.public_bytes_raw())
    header = bytes([VERSION]) + ephemeral_public
    aead = ChaCha20Poly1305(material[:KEY_BYTES])
    return header + aead.encrypt(material[KEY_BYTES:], plaintext, header + aad)


def unseal(recipient_private: X25519Private, sealed: bytes, *, aad: bytes = b"") -> bytes:
    """Recover the plaintext, or raise ``InvalidSealed`` whatever went wrong."""
    private = x25519_private(recipient_private)
    try:
        if not isinstance(sealed, bytes) or len(sealed) < OVERHEAD or sealed[0] != VERSION:
            raise ValueError
        header, ciphertext = sealed[: 1 + KEY_BYTES], sealed[1 + KEY_BYTES :]
        ephemeral_public = header[1:]
        shared = private.exchange(x25519_public(ephemeral_public))
        recipient_public = private.public_key().public_bytes_raw()
        material = _key_and_nonce(shared, ephemeral_public, recipient_public)
        aead = ChaCha20Poly1305(material[:KEY_BYTES])
        return aead.decrypt(material[KEY_BYTES:], ciphertext, header + aad)
    except (InvalidTag, ValueError, TypeError):
        raise InvalidSealed from None
