"""What every concern of ``CassandraStore`` shares: its fields (set by the
store's constructor, declared here for the type checker) and the small
helpers on them (running a statement, the expiry horizon, the read bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.store.cassandra.positions import position_at, time_of
from rossby.store.model import Position, StoreOptions

if TYPE_CHECKING:
    from rossby.replication.homes import HomeCache
    from rossby.replication.topology import Topology
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.cql import Cql
    from rossby.store.cassandra.driver import Bridge
    from rossby.store.cassandra.locks import KeyedLocks
    from rossby.store.cassandra.pending import PendingEstimates
    from rossby.store.cassandra.positions import Allocator


def ttl_covering(seconds: float) -> int:
    """The smallest ``USING TTL`` that keeps a row for at least ``seconds``.

    Cassandra expires a cell once the clock's *second* passes the write's
    second plus the TTL, so ``ceil(seconds)`` alone can end up to a second
    early (a 1-s TTL written at x.999 s is gone at (x+1).000 s)."""
    return max(1, math.ceil(seconds)) + 1


class Plumbing:
    """The store's shared state and helpers (a base of every concern)."""

    if TYPE_CHECKING:
        options: StoreOptions
        settle_window: Position
        _settings: Settings
        _positions: Allocator
        _db: Bridge
        _cql: Cql
        _locks: KeyedLocks
        _topology: Topology
        _homes: HomeCache
        _pending: PendingEstimates

    async def _run(self, cql: str, params: Sequence[Any], profile: str, **kw: Any) -> list[Any]:
        return await self._db.execute(cql, params, profile=profile, **kw)

    def _message_ttl(self) -> int:
        return max(1, math.ceil(self.options.message_ttl))

    def _horizon(self) -> Position:
        """Positions at or below this have expired (never read them)."""
        expired_before = self.options.clock() - self.options.message_ttl
        return position_at(expired_before) if expired_before > time_of(0) else 0

    def _upper(self) -> Position:
        """Reads stop here: the head plus the settle window, so a message
        from a writer whose clock runs (tolerably) ahead is not held back."""
        return self._positions.head() + self.settle_window

    def _budget(self) -> float:
        return self._settings.request_timeout


__all__ = ["Plumbing", "ttl_covering"]
