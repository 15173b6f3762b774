"""Codes sent per contact on Cassandra (schema version 5,
``schema/0005_code_sends.cql``).

A mixin for ``CassandraStore``: it uses the store's ``Bridge`` (``_db``),
settings and per-key locks. One partition per contact hash, one row per
code, written ``USING TTL`` of the window so nothing is deleted or purged.
The count reads the partition's rows newer than ``now - window``, newest
first, with a LIMIT of the limit: exactly the live rows, so the slice never
reaches the expired cells below its bound (the tombstone hazard of reading
a TTL'd partition from its start).

No lightweight transaction: a Paxos round on every Register would cost more
than the limit is worth, and overshooting it by a few codes under a race is
harmless (``Store.reserve_code_sends`` states the bound). Reads and writes
use the ``keys`` profile, this server's DC at the store's consistency, so a
write is seen by the next read of any server in the region.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.store.base import code_send_buckets, code_send_refusal
from rossby.store.cassandra.config import KEYS

if TYPE_CHECKING:
    from rossby.store.base import StoreOptions
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge
    from rossby.store.cassandra.locks import KeyedLocks


class CassandraCodeSends:
    """``reserve_code_sends``."""

    if TYPE_CHECKING:
        options: StoreOptions
        _db: Bridge
        _settings: Settings
        _locks: KeyedLocks

    def _code_send_cql(self, which: str) -> str:
        ks = self._settings.keyspace
        if which == "recent":
            return (
                f"SELECT sent_at FROM {ks}.code_sends WHERE contact_hash = ? AND sent_at > ?"
                " LIMIT ?"
            )
        return (
            f"INSERT INTO {ks}.code_sends (contact_hash, sent_at, send_id) VALUES (?, ?, ?)"
            " USING TTL ?"
        )

    async def _code_send_run(self, which: str, params: Sequence[Any]) -> list[Any]:
        return await self._db.execute(self._code_send_cql(which), params, profile=KEYS)

    async def reserve_code_sends(
        self,
        contact_hashes: Sequence[bytes],
        *,
        now: float,
        window: float,
        limit: int,
        requester: bytes = b"",
        requester_limit: int = 0,
    ) -> None:
        buckets = code_send_buckets(
            contact_hashes, limit, requester, requester_limit, window=window
        )
        # A row must live while a read at (server clock) still counts it.
        ttl = max(1, math.ceil(now + window - self.options.clock()))
        async with contextlib.AsyncExitStack() as held:
            # One order for every caller, so two multi-contact calls never
            # wait on each other crosswise.
            for key in sorted(key for key, _ in buckets):
                await held.enter_async_context(self._locks.hold(("code_sends", key)))
            reads = await asyncio.gather(
                *(self._code_send_run("recent", (key, now - window, n)) for key, n in buckets)
            )
            recent = [[float(row["sent_at"]) for row in rows] for rows in reads]
            refusal = code_send_refusal(
                recent, now=now, window=window, limit=limit, limits=[n for _, n in buckets]
            )
            if refusal is not None:
                raise refusal
            # Separate partitions: concurrent single writes, not a batch.
            await asyncio.gather(
                *(
                    self._code_send_run("record", (key, now, uuid.uuid4(), ttl))
                    for key, _ in buckets
                )
            )


__all__ = ["CassandraCodeSends"]
