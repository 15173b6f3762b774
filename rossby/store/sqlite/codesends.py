"""Codes sent per contact on SQLite (schema version 4,
``migrations/0004_code_sends.sql``).

A mixin for ``SqliteStore``: it uses the store's worker thread and its
``BEGIN IMMEDIATE`` transactions. The count and the record are one write
transaction, so the limit is exact across every process on the file. SQLite
has no TTL: each reservation removes a batch of rows past ``keep_until`` on
the way, which keeps the table at about the sends of one window.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from rossby.store.base import code_send_buckets, code_send_refusal
from rossby.store.sqlite.rows import _rows

T = TypeVar("T")

#: Expired rows one reservation removes at most; more than it adds, so the
#: sweep keeps up without a housekeeping pass.
SWEEP = 100


class SqliteCodeSends:
    """``reserve_code_sends``."""

    if TYPE_CHECKING:

        async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

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

        def body(conn: sqlite3.Connection) -> None:
            recent = [
                [
                    row["sent_at"]
                    for row in _rows(
                        conn,
                        "SELECT sent_at FROM code_sends WHERE contact_hash = ? AND sent_at > ?"
                        " ORDER BY sent_at DESC LIMIT ?",
                        (key, now - window, n),
                    )
                ]
                for key, n in buckets
            ]
            refusal = code_send_refusal(
                recent, now=now, window=window, limit=limit, limits=[n for _, n in buckets]
            )
            if refusal is not None:
                # Raised inside the transaction: it rolls back, nothing is written.
                raise refusal
            conn.executemany(
                "INSERT INTO code_sends (contact_hash, sent_at, keep_until) VALUES (?, ?, ?)",
                [(key, now, now + window) for key, _ in buckets],
            )
            conn.execute(
                "DELETE FROM code_sends WHERE rowid IN"
                " (SELECT rowid FROM code_sends WHERE keep_until <= ? LIMIT ?)",
                (now, SWEEP),
            )

        await self._write(body)


__all__ = ["SqliteCodeSends"]
