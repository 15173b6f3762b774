"""The abuse limit on one-time codes, as both backends count it
(``Store.reserve_code_sends``): which rows a reservation counts and what it
refuses with. Kept out of the backends so SQLite and Cassandra cannot drift.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from rossby.store.model import CodeSendLimitExceeded


def requester_bucket(requester: bytes, contact_hash: bytes) -> bytes:
    """The row key one requester's sends to one contact are counted under
    (``reserve_code_sends``): 32 bytes, like a contact hash, and as opaque
    (the requester is already a keyed tag)."""
    return hashlib.sha256(b"rossby/v1 code-sends requester\0" + requester + contact_hash).digest()


def code_send_buckets(
    contact_hashes: Sequence[bytes],
    limit: int,
    requester: bytes,
    requester_limit: int,
    *,
    window: float = 1.0,
) -> list[tuple[bytes, int]]:
    """Every (row key, limit) ``reserve_code_sends`` counts, in a stable
    order: each contact under ``limit``, then (with a requester) each
    requester share under ``requester_limit``. Both backends use it, so it
    also refuses (``ValueError``) the arguments no limit can mean."""
    if limit < 1 or window <= 0:
        raise ValueError("reserve_code_sends needs limit >= 1 and window > 0")
    hashes = list(dict.fromkeys(contact_hashes))
    buckets = [(h, limit) for h in hashes]
    if requester and requester_limit > 0:
        buckets += [(requester_bucket(requester, h), requester_limit) for h in hashes]
    return buckets


def code_send_refusal(
    recent: Sequence[Sequence[float]],
    *,
    now: float,
    window: float,
    limit: int,
    limits: Sequence[int] | None = None,
) -> CodeSendLimitExceeded | None:
    """What ``reserve_code_sends`` raises, or None when every count has room.

    ``recent`` holds, per counted key, its send times after ``now - window``,
    newest first, at most that key's limit of them (both backends read them
    that way, so the bound is a LIMIT, not a scan); ``limits`` the limit per
    key (default ``limit`` for all). A key at its limit has room again once
    its limit-th newest send leaves the window.
    """
    per_key = list(limits) if limits is not None else [limit] * len(recent)
    refused = [
        (times[n - 1] + window - now, n)
        for times, n in zip(recent, per_key, strict=True)
        if len(times) >= n
    ]
    if not refused:
        return None
    wait, which = max(refused)
    return CodeSendLimitExceeded(
        f"a contact was sent {which} codes in the last {window:g} seconds; retry later",
        metadata={"retry_after_seconds": str(max(1, math.ceil(wait))), "limit": str(which)},
    )


__all__ = ["code_send_buckets", "code_send_refusal", "requester_bucket"]
