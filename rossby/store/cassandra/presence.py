"""Presence rows on Cassandra (schema version 2, ``schema/0002_presence.cql``).

A mixin for ``CassandraStore``: it uses the store's ``Bridge`` (``_db``),
settings and clock. Rows are written ``USING TTL`` so an abandoned row (a
process that died) disappears by itself; a read answers only live rows, and
``expires_at`` comes back from the cell's remaining TTL. Reads and writes go
to this server's datacenter at the store's consistency (the ``keys``
profile): a row written in another region arrives with replication, and
until then the streams' poll covers it (docs/realtime.md).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.store.base import Presence, StoreOptions
from rossby.store.cassandra.config import KEYS

if TYPE_CHECKING:
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge

#: Rows one box's presence read answers at most (devices x processes).
MAX_ROWS = 1000
#: The name Cassandra gives the selected ``TTL(address)`` column.
TTL_COLUMN = "ttl(address)"


class CassandraPresence:
    """``put_presence``, ``list_presence``, ``delete_presence``."""

    if TYPE_CHECKING:
        options: StoreOptions
        _db: Bridge
        _settings: Settings

    def _presence_cql(self, which: str) -> str:
        ks = self._settings.keyspace
        if which == "put":
            return (
                f"INSERT INTO {ks}.presence (box_id, device_id, server_id, address, region,"
                " since) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
            )
        if which == "list":
            return (
                f"SELECT device_id, server_id, address, region, since, TTL(address)"
                f" FROM {ks}.presence WHERE box_id = ? LIMIT {MAX_ROWS}"
            )
        return f"DELETE FROM {ks}.presence WHERE box_id = ? AND device_id = ? AND server_id = ?"

    async def _presence_run(self, which: str, params: Sequence[Any]) -> list[Any]:
        return await self._db.execute(self._presence_cql(which), params, profile=KEYS)

    async def put_presence(self, presence: Presence) -> None:
        p = presence
        ttl = max(1, math.ceil(p.expires_at - self.options.clock()))
        await self._presence_run(
            "put", (p.box_id, p.device_id, p.server_id, p.address, p.region, p.since, ttl)
        )

    async def put_presences(self, presences: Sequence[Presence]) -> None:
        # Separate partitions: concurrent single writes (the Bridge bounds
        # how many are in flight), not a multi-partition batch.
        await asyncio.gather(*(self.put_presence(p) for p in presences))

    async def list_presence(self, box_id: uuid.UUID) -> list[Presence]:
        now = self.options.clock()
        rows = await self._presence_run("list", (box_id,))
        out: list[Presence] = []
        for row in rows:
            ttl, address = row[TTL_COLUMN], row["address"]
            if ttl is None or address is None:
                continue  # a partial row (a cell expired first): ignore it
            out.append(
                Presence(
                    box_id=box_id,
                    device_id=row["device_id"],
                    server_id=row["server_id"],
                    address=address,
                    region=row["region"] or "",
                    since=row["since"] or 0.0,
                    expires_at=now + ttl,
                )
            )
        return out

    async def delete_presence(
        self, box_id: uuid.UUID, device_id: uuid.UUID, server_id: str
    ) -> None:
        await self._presence_run("delete", (box_id, device_id, server_id))


__all__ = ["CassandraPresence"]
