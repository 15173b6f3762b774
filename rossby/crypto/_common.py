"""Helpers shared by the formats: injectable randomness and key coercion.

Every format takes its randomness as a parameter so that the test vectors in
``tests/vectors/envelope_v1.json`` are exact; production callers leave it as
``None`` and get ``os.urandom``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

Rng = Callable[[int], bytes]
"""``rng(n)`` returns ``n`` random bytes; ``os.urandom`` has this shape."""

X25519Public = X25519PublicKey | bytes
X25519Private = X25519PrivateKey | bytes
Ed25519Public = Ed25519PublicKey | bytes
Ed25519Private = Ed25519PrivateKey | bytes

KEY_BYTES = 32
SIGNATURE_BYTES = 64


def random_bytes(rng: Rng | None, n: int) -> bytes:
    """Draw ``n`` bytes, refusing an injected source that answers the wrong length.

    A short answer from a test double would otherwise surface far away as a
    confusing key-length error, or worse, silently weaken a key.
    """
    out = (rng or os.urandom)(n)
    if not isinstance(out, bytes) or len(out) != n:
        raise ValueError(f"rng must return exactly {n} bytes")
    return out


def x25519_public(key: X25519Public) -> X25519PublicKey:
    if isinstance(key, X25519PublicKey):
        return key
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError("an X25519 public key is exactly 32 bytes")
    return X25519PublicKey.from_public_bytes(key)


def x25519_private(key: X25519Private) -> X25519PrivateKey:
    if isinstance(key, X25519PrivateKey):
        return key
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError("an X25519 private key is exactly 32 bytes")
    return X25519PrivateKey.from_private_bytes(key)


def ed25519_public(key: Ed25519Public) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError("an Ed25519 public key is exactly 32 bytes")
    return Ed25519PublicKey.from_public_bytes(key)


def ed25519_private(key: Ed25519Private) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError("an Ed25519 private key is exactly 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(key)
