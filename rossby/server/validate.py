"""Input validation for RPC requests: turns bad input into ``InvalidArgument``.

Backends store what they are given, so every limit a client can hit is
checked here, before anything is written.
"""

from __future__ import annotations

import uuid

from rossby.crypto.keys import verify_key_signature
from rossby.crypto.sealed import seal
from rossby.errors import InvalidArgument
from rossby.store import DeviceKeys
from rossby.v1 import rossby_pb2

MAX_DEVICE_NAME = 64
#: Messages per Fetch page or Subscribe read: the default and the most.
FETCH_DEFAULT = 100
FETCH_MAX = 500


def page_limit(requested: int) -> int:
    """A Fetch or Subscribe ``limit``: 0 is the default, more than
    ``FETCH_MAX`` is INVALID_ARGUMENT ``TOO_MANY``. One check for both, so a
    page and a stream's reads cannot disagree on what a client may ask."""
    limit = requested or FETCH_DEFAULT
    if limit > FETCH_MAX:
        raise InvalidArgument(
            f"limit: at most {FETCH_MAX}",
            reason="TOO_MANY",
            metadata={"field": "limit", "max": str(FETCH_MAX)},
        )
    return limit


def parse_id(field: str, value: str) -> uuid.UUID:
    """A canonical UUID, or INVALID_ARGUMENT ``MALFORMED_ID`` naming the field."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(
            f"{field} is not a UUID", reason="MALFORMED_ID", metadata={"field": field}
        ) from None
    if str(parsed) != value:
        raise InvalidArgument(
            f"{field} must be a canonical UUID", reason="MALFORMED_ID", metadata={"field": field}
        )
    return parsed


def device_keys(device_id: uuid.UUID, keys: rossby_pb2.DeviceKeys) -> DeviceKeys:
    """Check sizes and that the signing key vouches for the encryption key."""
    if len(keys.encryption_key) != 32 or len(keys.signing_key) != 32:
        raise InvalidArgument(
            "keys must be 32-byte X25519 and Ed25519 public keys", reason="KEYS_INVALID"
        )
    if len(keys.key_signature) != 64 or not verify_key_signature(
        keys.signing_key, device_id, keys.encryption_key, keys.key_signature
    ):
        raise InvalidArgument("key_signature does not verify", reason="KEY_SIGNATURE_INVALID")
    try:  # a low-order X25519 point would make sealing credentials fail later
        seal(bytes(keys.encryption_key), b"")
    except ValueError:
        raise InvalidArgument(
            "encryption_key is not a usable X25519 key", reason="KEYS_INVALID"
        ) from None
    return DeviceKeys(
        bytes(keys.encryption_key), bytes(keys.signing_key), bytes(keys.key_signature)
    )


def device_name(name: str) -> str:
    if len(name) > MAX_DEVICE_NAME or any(ord(c) < 32 for c in name):
        raise InvalidArgument(
            f"device_name: at most {MAX_DEVICE_NAME} printable characters",
            reason="DEVICE_NAME_INVALID",
        )
    return name


def count(field: str, n: int, low: int, high: int) -> None:
    if n < low:
        raise InvalidArgument(
            f"{field}: at least {low} required",
            reason="TOO_FEW",
            metadata={"field": field, "min": str(low)},
        )
    if n > high:
        raise InvalidArgument(
            f"{field}: at most {high} allowed",
            reason="TOO_MANY",
            metadata={"field": field, "max": str(high)},
        )
