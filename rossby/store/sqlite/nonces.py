"""Hawk nonces on SQLite (schema version 6, ``migrations/0006_hawk_nonces.sql``).

A mixin for ``SqliteStore``, like ``SqlitePresence``. Every process on the
file shares the table, so a claim made by one worker is seen by all: the
insert and its conflict check are one statement inside the writer's
transaction, which SQLite serialises across processes.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rossby.store.sqlite.batches import delete_until_short

T = TypeVar("T")

#: Rows one ``purge_nonces`` transaction deletes at most.
PURGE_BATCH = 5000


class SqliteNonces:
    """``claim_nonce`` and its housekeeping."""

    if TYPE_CHECKING:

        async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        def _now(self) -> float: ...

    async def claim_nonce(
        self, box_id: uuid.UUID, device_id: uuid.UUID, nonce: bytes, ttl: float
    ) -> bool:
        now = self._now()

        def body(conn: sqlite3.Connection) -> bool:
            # An expired row not yet purged is taken over (the claim is new);
            # a live one leaves the insert a no-op: no change, a replay.
            cursor = conn.execute(
                "INSERT INTO hawk_nonces (box_id, device_id, nonce, expires_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (box_id, device_id, nonce)"
                " DO UPDATE SET expires_at = excluded.expires_at WHERE expires_at <= ?",
                (box_id.bytes, device_id.bytes, nonce, now + ttl, now),
            )
            return cursor.rowcount == 1

        return await self._write(body)

    async def purge_nonces(self) -> int:
        """Delete expired nonces in batches; answer how many."""

        def batch(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM hawk_nonces WHERE (box_id, device_id, nonce) IN"
                " (SELECT box_id, device_id, nonce FROM hawk_nonces"
                " WHERE expires_at <= ? LIMIT ?)",
                (self._now(), PURGE_BATCH),
            ).rowcount

        return await delete_until_short(lambda: self._write(batch), PURGE_BATCH)


__all__ = ["SqliteNonces"]
