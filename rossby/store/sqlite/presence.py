"""Presence rows on SQLite (schema version 2, ``migrations/0002_presence.sql``).

A mixin for ``SqliteStore``: it uses the store's worker thread and
transactions (``_run``, ``_write``) and its clock. SQLite has no TTL, so
reads filter on ``expires_at`` and ``purge_presence`` deletes expired rows
through the ``presence_by_expiry`` index.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rossby.store.base import Presence
from rossby.store.sqlite.batches import delete_until_short
from rossby.store.sqlite.rows import _rows

T = TypeVar("T")

#: Rows one ``purge_presence`` transaction deletes at most.
PURGE_BATCH = 2000


def _presence(row: Any) -> Presence:
    return Presence(
        box_id=uuid.UUID(bytes=row["box_id"]),
        device_id=uuid.UUID(bytes=row["device_id"]),
        server_id=row["server_id"],
        address=row["address"],
        region=row["region"],
        since=row["since"],
        expires_at=row["expires_at"],
    )


class SqlitePresence:
    """``put_presence(s)``, ``list_presence``, ``delete_presence``, ``purge_presence``."""

    if TYPE_CHECKING:

        async def _run(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        def _now(self) -> float: ...

    async def put_presence(self, presence: Presence) -> None:
        await self.put_presences([presence])

    async def put_presences(self, presences: Sequence[Presence]) -> None:
        """One write transaction for all of them: the write lock is shared
        with every other process on the file, so a refresh takes it once."""
        rows = [
            (
                p.box_id.bytes,
                p.device_id.bytes,
                p.server_id,
                p.address,
                p.region,
                p.since,
                p.expires_at,
            )
            for p in presences
        ]
        if not rows:
            return

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO presence (box_id, device_id, server_id, address, region, since,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (box_id, device_id, server_id) DO UPDATE SET"
                " address = excluded.address, region = excluded.region,"
                " expires_at = excluded.expires_at",
                rows,
            )

        await self._write(body)

    async def list_presence(self, box_id: uuid.UUID) -> list[Presence]:
        def body(conn: sqlite3.Connection) -> list[Presence]:
            rows = _rows(
                conn,
                "SELECT box_id, device_id, server_id, address, region, since, expires_at"
                " FROM presence WHERE box_id = ? AND expires_at > ?",
                (box_id.bytes, self._now()),
            )
            return [_presence(row) for row in rows]

        return await self._run(body)

    async def delete_presence(
        self, box_id: uuid.UUID, device_id: uuid.UUID, server_id: str
    ) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM presence WHERE box_id = ? AND device_id = ? AND server_id = ?",
                (box_id.bytes, device_id.bytes, server_id),
            )

        await self._write(body)

    async def purge_presence(self) -> int:
        def batch(conn: sqlite3.Connection) -> int:
            return conn.execute(
                # WITHOUT ROWID: select the rows by their key.
                "DELETE FROM presence WHERE (box_id, device_id, server_id) IN"
                " (SELECT box_id, device_id, server_id FROM presence"
                " WHERE expires_at <= ? LIMIT ?)",
                (self._now(), PURGE_BATCH),
            ).rowcount

        return await delete_until_short(lambda: self._write(batch), PURGE_BATCH)


__all__ = ["SqlitePresence"]
