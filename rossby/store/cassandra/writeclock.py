"""Timestamps for plain writes to rows that lightweight transactions delete.

Cassandra keeps, per cell, the write with the highest timestamp. A Paxos
commit (a claim's conditional delete) is stamped with its ballot: the
coordinator's clock in microseconds. A plain write is stamped by the
driver with this process's clock, also in microseconds, so a server whose
clock runs ahead of the nodes' could write a row whose timestamp outranks
a later claim's tombstone, and the claimed key would live on.

Stamping every plain write of those tables in **milliseconds** instead
(``USING TIMESTAMP``) puts them a thousand times below any ballot: a
claim's tombstone outranks every upload of its key, before or after it,
whatever the clocks. Among themselves plain writes still order by time
(an upload after a delete wins), and one process's stamps strictly
increase, so its own write after its own delete in the same millisecond
still lands.
"""

from __future__ import annotations

from collections.abc import Callable


class MillisClock:
    """Strictly increasing millisecond write timestamps from ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        self._last = max(int(self._clock() * 1000), self._last + 1)
        return self._last


__all__ = ["MillisClock"]
