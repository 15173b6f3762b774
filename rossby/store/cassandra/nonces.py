"""Hawk nonces on Cassandra (schema version 7, ``schema/0007_hawk_nonces.cql``).

A mixin for ``CassandraStore``, like ``CassandraPresence``. A claim is two
plain statements in sequence, write then read, instead of a Paxos round:

1. insert a row ``(nonce, attempt)`` with a fresh random ``attempt``;
2. read the nonce's partition (two rows at most);
3. the claim wins only if the one row read is its own.

Both run at the store's consistency in this server's DC (``LOCAL_QUORUM``;
the URL may only choose levels with read-your-writes). Why at most one of
several claims wins: order the claims by when their writes were
acknowledged. Each claim's read starts after its own write was acknowledged,
so the claim acknowledged last reads after every other write was
acknowledged, and its read quorum meets each of their write quorums: it sees
their rows and loses. Several may lose (a legitimate request never claims a
nonce twice, so only replays do); none can win alongside another.

Rows carry ``USING TTL`` in whole seconds, and Cassandra expires a cell once
the clock's *second* passes the write's second plus the TTL, so a TTL of
``ceil(ttl)`` can end up to a second early: with ``ttl = 1`` a row written at
x.999 s is gone at (x+1).000 s, before the claim's own read (a flaky
conformance test caught exactly that). ``ttl_covering`` adds that second, so
a nonce is remembered for at least ``ttl`` as the contract says.

Each row goes to every DC with the keyspace's replication, so a replay sent
to another region after replication is refused there too; before that only
the Hawk MAC, which binds each region's own public host name, refuses it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from rossby.store.cassandra.config import NONCES
from rossby.store.cassandra.plumbing import ttl_covering

if TYPE_CHECKING:
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge


class CassandraNonces:
    """``claim_nonce``."""

    if TYPE_CHECKING:
        _db: Bridge
        _settings: Settings

    async def claim_nonce(
        self, box_id: uuid.UUID, device_id: uuid.UUID, nonce: bytes, ttl: float
    ) -> bool:
        ks = self._settings.keyspace
        attempt = uuid.uuid4()
        await self._db.execute(
            f"INSERT INTO {ks}.hawk_nonces (box_id, device_id, nonce, attempt)"
            " VALUES (?, ?, ?, ?) USING TTL ?",
            (box_id, device_id, nonce, attempt, ttl_covering(ttl)),
            profile=NONCES,
        )
        rows = await self._db.execute(
            f"SELECT attempt FROM {ks}.hawk_nonces"
            " WHERE box_id = ? AND device_id = ? AND nonce = ? LIMIT 2",
            (box_id, device_id, nonce),
            profile=NONCES,
        )
        return [row["attempt"] for row in rows] == [attempt]


__all__ = ["CassandraNonces"]
