"""Attempt reservations on Cassandra: one bounded compare-and-set loop for
registrations, link offers and contact challenges (``reserve_counter``
builds the compare-and-set for all three), and the insert-or-replace loop
of their LWT-only rows.

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rossby.errors import NotFound, StoreUnavailable
from rossby.store.model import AttemptContended

#: Runs one statement with its parameters under the caller's profile.
Run = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]

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


async def reserve_counter(
    run: Run,
    cql: str,
    key: Sequence[Any],
    *,
    attempts: int,
    version: Any,
    ttl: Callable[[Any], int],
    limit: int,
    version_column: str,
    what: str,
    live: Callable[[Any], bool] | None = None,
) -> int:
    """``reserve`` on one LWT counter row, the compare-and-set built here.

    ``cql`` is ``UPDATE ... USING TTL ? SET attempts = ? WHERE <key> IF
    attempts = ? AND <version_column> = ?``; ``ttl(version)`` is the TTL the
    row keeps, and ``live(version)``, when given, says whether the row is
    still usable (``NotFound`` otherwise) before each round.
    """

    async def cas(n: int, v: Any) -> dict[str, Any]:
        if live is not None and not live(v):
            raise NotFound(f"no such {what}")
        rows = await run(cql, (ttl(v), n + 1, *key, n, v))
        return dict(rows[0])

    return await reserve(
        attempts, version, cas, limit=limit, version_column=version_column, what=what
    )


async def insert_or_replace(
    run: Run,
    insert: tuple[str, Sequence[Any]],
    replace: tuple[str, Sequence[Any]],
    *,
    rounds: int,
    contended: str,
) -> None:
    """Write an LWT-only row whether or not it exists: ``INSERT ... IF NOT
    EXISTS``, else ``UPDATE ... IF EXISTS``, until one applies (a row that
    expires or is created in between makes both lose a round). Raises
    ``StoreUnavailable(contended)`` after ``rounds``; nothing was written."""
    for _ in range(rounds):
        rows = await run(*insert)
        if rows[0][APPLIED]:
            return
        rows = await run(*replace)
        if rows[0][APPLIED]:
            return
    raise StoreUnavailable(contended, applied=False)


__all__ = ["insert_or_replace", "reserve", "reserve_counter"]
