"""The server's VAPID key (RFC 8292): loading it, its public half, making one.

Web Push services accept a push only with a JWT signed by the key the
browser subscribed with (its ``applicationServerKey``), so the key is the
server's identity towards every browser subscription: losing or replacing
it invalidates them all (docs/operations.md "Web Push and VAPID keys").

The key file is read with ``cryptography`` (PEM, PKCS#8 or SEC 1) or with
``py_vapid``'s own string forms (the base64url raw 32-byte scalar, or
base64url DER), and nothing else: a file that is not a P-256 private key is
a ``ConfigError`` naming the setting, never a key silently generated in its
place (``py_vapid.Vapid.from_file`` would generate one for a missing path).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from rossby.errors import ConfigError

if TYPE_CHECKING:
    pass

SETTING = "push_vapid_private_key_file"


@dataclass(frozen=True, slots=True)
class VapidKey:
    """The loaded key: ``signer`` signs the JWTs, ``public_key`` is what a
    browser needs as ``applicationServerKey`` (65-byte uncompressed point)."""

    signer: Vapid = field(repr=False)
    public_key: bytes


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding of every key in Web Push."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _invalid(path: str, why: str) -> ConfigError:
    return ConfigError(f"invalid setting {SETTING}: {path}: {why}")


def _parse(text: str, path: str) -> ec.EllipticCurvePrivateKey:
    data = text.strip()
    try:
        if "-----BEGIN" in data:
            key = serialization.load_pem_private_key(data.encode("ascii"), password=None)
        else:
            key = Vapid.from_string(private_key=data).private_key
    except (ValueError, TypeError, binascii.Error, UnicodeError, UnsupportedAlgorithm):
        # The parser's message may quote key material: a fixed reason only.
        raise _invalid(path, "not a P-256 private key (PEM or py_vapid raw/DER)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _invalid(path, "not a P-256 (prime256v1) EC key")
    return key


def load_vapid_key(path: str) -> VapidKey:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise _invalid(path, f"cannot read ({reason})") from None
    key = _parse(text, path)
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKey(signer=Vapid(private_key=key), public_key=public)


def generate_vapid_key_file(path: str) -> bytes:
    """Write a new P-256 key as PKCS#8 PEM, owner-only (0600), and return its
    public point. Never overwrites: replacing a VAPID key cuts off every
    browser that subscribed with the old one, so that takes a deliberate rm."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: refuses an existing file (or a planted symlink); the mode is
    # set at creation, so the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


__all__ = [
    "SETTING",
    "VapidKey",
    "b64url",
    "generate_vapid_key_file",
    "load_vapid_key",
]
