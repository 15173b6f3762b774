"""How ids appear in logs: keyed tags, never the ids themselves.

A box is logged as the first 12 hex digits of an HMAC of its id under a key
derived from ``server_secret``. Tags are stable across workers, restarts and
regions (which share the secret), so one box's calls can be followed from
Register to its last Fetch, but a log reader cannot test a known box id (or
a device id, which RequestKey shows anyone) against them. Device ids are not
logged at all: within a box the box tag is what an operator follows, and
device ids are unique only within a box anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

LOG_TAG_CONTEXT: Final = b"rossby/v1 log box tag"


def log_key(server_secret: bytes) -> bytes:
    return hmac.new(server_secret, LOG_TAG_CONTEXT, hashlib.sha256).digest()


def box_tag(key: bytes, box_id: str) -> str:
    """The box id as it appears in logs."""
    return hmac.new(key, box_id.encode(), hashlib.sha256).hexdigest()[:12]


__all__ = ["LOG_TAG_CONTEXT", "box_tag", "log_key"]
