"""Row helpers every SQLite module uses, and the worker calls the
concern mixins (``registrations``, ``devices``, ``queue``) get from
``SqliteStore``.

Ids are stored as 16-byte blobs, lists of hashes as JSON arrays of hex.
Rows come back from ``_rows`` and ``_row`` as ``sqlite3.Row``, read by
column name; a single computed value (a count, a max) is read by ``_value``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rossby.store.model import Position, StoreOptions

T = TypeVar("T")


def _b(value: uuid.UUID) -> bytes:
    return value.bytes


def _u(value: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=value)


def _pack(items: Sequence[bytes]) -> str:
    return json.dumps([item.hex() for item in items])


def _unpack(text: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(item) for item in json.loads(text))


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run a statement to completion (a half-read cursor keeps its statement
    open, which would make a later COMMIT fail); rows read by column name."""
    cursor = conn.execute(sql, params)
    cursor.row_factory = sqlite3.Row
    return cursor.fetchall()


def _row(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


def _value(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The one value a one-column, one-row query answers (a count, a max):
    such a column has no name worth reading it by."""
    return conn.execute(sql, params).fetchone()[0]


def _changes(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    return conn.execute(sql, params).rowcount


class WorkerCalls:
    """What ``SqliteStore`` provides to the mixins that hold its concerns
    (declared for the type checker; the store defines them)."""

    if TYPE_CHECKING:
        options: StoreOptions
        settle_window: Position

        async def _run(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        def _now(self) -> float: ...


__all__ = ["WorkerCalls"]
