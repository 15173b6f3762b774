"""Attempt reservations on Cassandra: one bounded compare-and-set loop for
registrations, link offers and contact challenges.

Why a loop of its own: the counter is an LWT cell (``SET attempts = n + 1
IF attempts = n AND <version> = v``). Within a process the callers queue
on ``KeyedLocks``, so a lost round means another process (or region) won
the same slot; retrying at once, 64 times, as the old counters did, only
renews the duel. A few rounds with a jittered pause let the winners
finish; after them the reservation is *refused* with ``AttemptContended``
rather than given up silently, and the caller compares nothing. An LWT
that timed out (outcome unknown) propagates as ``StoreUnavailable``: it
may have counted, and the caller compares nothing either, so an undecided
reservation can cost a try but never grant an uncounted one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from rossby.errors import NotFound
from rossby.store.base import AttemptContended

APPLIED = "[applied]"
#: Compare-and-set rounds before the reservation is refused as contended.
ROUNDS = 8
#: Upper bound of the pause after the first lost round, growing per round.
BACKOFF = 0.02


async def reserve(
    attempts: int,
    version: Any,
    cas: Callable[[int, Any], Awaitable[dict[str, Any]]],
    *,
    limit: int,
    version_column: str,
    what: str,
) -> int:
    """Reserve attempt ``attempts + 1`` of the row at ``version``.

    ``cas(n, v)`` runs the conditional update from ``n`` to ``n + 1`` under
    version ``v`` and answers the LWT's result row. Answers the number
    reserved, or 0 once ``limit`` were; ``NotFound`` when the row is gone
    or at another version (a re-Register, a resend).
    """
    for round_ in range(ROUNDS):
        if attempts >= limit:
            return 0
        row = await cas(attempts, version)
        if row[APPLIED]:
            return attempts + 1
        if row.get(version_column) is None or row[version_column] != version:
            raise NotFound(f"no such {what}")
        attempts = int(row.get("attempts") or 0)
        if attempts < limit:
            await asyncio.sleep(random.uniform(0, BACKOFF * (round_ + 1)))
    raise AttemptContended(f"store: {what} attempt reservation contended; retry")


__all__ = ["reserve"]
