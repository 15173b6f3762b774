"""The SQLite backend: one file, one connection per store, one worker thread.

sqlite3 calls block, so every call runs on a single dedicated thread that
owns the connection; the event loop only awaits. Concurrent writes share
one transaction and one fsync (group commit, ``rossby.store.sqlite.worker``).
One thread per store also
serialises this store's transactions, so the only contention left is
between stores (processes) sharing the file. That is settled by SQLite's
file locks: every write transaction starts with ``BEGIN IMMEDIATE`` (take
the write lock up front, so a reader never has to upgrade and deadlock)
and waits up to ``BUSY_TIMEOUT`` seconds for it.

Positions are a dense per-box counter (``queues.head``) bumped inside the
enqueue transaction, so a message is visible exactly when its position is
issued and ``settle_window`` is 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from rossby.errors import FailedPrecondition
from rossby.store.capabilities import Capabilities, no, yes
from rossby.store.contract import Store
from rossby.store.migrations import load_migrations
from rossby.store.model import Position, StoreOptions
from rossby.store.sqlite.accounts import SqliteAccounts
from rossby.store.sqlite.codesends import SqliteCodeSends
from rossby.store.sqlite.devices import SqliteDevices
from rossby.store.sqlite.errors import translate_error
from rossby.store.sqlite.nonces import SqliteNonces
from rossby.store.sqlite.prekeys import SqlitePrekeys
from rossby.store.sqlite.presence import SqlitePresence
from rossby.store.sqlite.pushtargets import SqlitePushTargets
from rossby.store.sqlite.queue import SqliteQueue
from rossby.store.sqlite.registrations import SqliteRegistrations
from rossby.store.sqlite.rows import _changes, _row, _value
from rossby.store.sqlite.worker import Kind, Worker

T = TypeVar("T")

#: Seconds a write waits for another process's write lock before giving up
#: with StoreUnavailable. Long enough to ride out a checkpoint, short enough
#: that a wedged writer surfaces as UNAVAILABLE rather than a hung RPC.
BUSY_TIMEOUT = 5.0

#: Rows purge_expired deletes per transaction, so housekeeping never holds
#: the write lock long enough to stall enqueues behind it.
PURGE_BATCH = 2000

_MEMORY = ":memory:"


# -- migrations ---------------------------------------------------------------


def split_statements(script: str) -> list[str]:
    """Split a migration into statements so it can run inside our own
    transaction (``executescript`` would commit first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise RuntimeError(f"incomplete SQL statement at the end of a migration: {buffer!r}")
    return statements


MIGRATIONS = load_migrations("rossby.store.sqlite.migrations", "sql", split_statements)
LATEST_VERSION = MIGRATIONS[-1].version

#: One file, one writer at a time: what that buys and what it cannot do.
CAPABILITIES = Capabilities(
    ordered_visibility=yes(
        "positions are issued inside the writing transaction, so visibility order is"
        " position order (settle_window 0)"
    ),
    exact_enqueue=yes(
        "the id check, the pending-cap count and the insert are one write transaction"
    ),
    exact_code_sends=yes("the count and the record are one write transaction"),
    counts_compacted_rows=yes("compaction is one DELETE, which reports its row count"),
    native_expiry=no(
        "SQLite has no TTL: expired rows stay until purge_expired / purge_presence delete them"
    ),
    presence=yes("presence rows live in the shared file, read by every process on it"),
    home_regions=no(
        "one SQLite file serves one region: nothing is replicated, so no box has a home to move",
        "NOT_REPLICATED",
    ),
    global_prekey_pools=yes(
        "one file, one pool per device: claims empty it before any last-resort answer"
    ),
)


# -- the store ----------------------------------------------------------------------


class SqliteStore(
    SqliteQueue,
    SqliteDevices,
    SqliteRegistrations,
    SqlitePresence,
    SqliteNonces,
    SqliteAccounts,
    SqliteCodeSends,
    SqlitePrekeys,
    SqlitePushTargets,
    Store,
):
    """A ``Store`` on one SQLite file (or ``:memory:``): the plumbing and
    lifecycle here, each concern in its module (see the imports)."""

    settle_window: Position = 0
    capabilities = CAPABILITIES

    def __init__(self, path: str, options: StoreOptions) -> None:
        self.path = path
        self.options = options
        self._worker = Worker(self._open, translate_error)

    # -- plumbing ----------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """The connection, opened on the worker thread that will own it."""
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            cached_statements=256,
            check_same_thread=True,
        )
        try:
            if self.path != _MEMORY:
                # WAL: readers never block the writer or each other.
                conn.execute("PRAGMA journal_mode=WAL")
            # FULL: fsync the WAL at every commit, so an acknowledged
            # Send survives power loss, not only a process crash.
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def commits(self) -> int:
        """Write transactions committed (one per group of writes)."""
        return self._worker.commits

    @property
    def grouped_writes(self) -> int:
        """Writes those transactions carried."""
        return self._worker.grouped_writes

    async def _run(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One call on the worker thread, no transaction of its own."""
        return await self._worker.submit(Kind.RAW, body)

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A write, committed with the others waiting (group commit)."""
        return await self._worker.submit(Kind.WRITE, body)

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A read transaction: one snapshot for several statements."""
        return await self._worker.submit(Kind.READ, body)

    def _now(self) -> float:
        return self.options.clock()

    # -- lifecycle ---------------------------------------------------------

    async def migrate(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = _value(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
            if current > LATEST_VERSION:
                raise FailedPrecondition(
                    f"sqlite schema is version {current}; this code knows {LATEST_VERSION}",
                    reason="SCHEMA_TOO_NEW",
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self._now()),
                )
            return LATEST_VERSION

        # One IMMEDIATE transaction of its own (DDL is never grouped): two
        # processes migrating at once apply each version exactly once, and a
        # failed file leaves no half schema.
        return await self._worker.submit(Kind.ALONE, body)

    async def check_schema(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            exists = _row(
                conn,
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            )
            version = 0
            if exists:
                version = _value(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
            if version == 0:
                raise FailedPrecondition(
                    f"no Rossby schema in {self.path}; run `rossby migrate`",
                    reason="SCHEMA_MISSING",
                )
            if version < LATEST_VERSION:
                raise FailedPrecondition(
                    f"sqlite schema is version {version}, this code needs {LATEST_VERSION};"
                    " run `rossby migrate`",
                    reason="SCHEMA_OUTDATED",
                )
            if version > LATEST_VERSION:
                raise FailedPrecondition(
                    f"sqlite schema is version {version}; this code knows {LATEST_VERSION}",
                    reason="SCHEMA_TOO_NEW",
                )
            return int(version)

        return await self._read(body)

    async def ping(self) -> None:
        # sqlite_master lives on page 1, so this really reads the file.
        await self._run(lambda conn: _row(conn, "SELECT count(*) FROM sqlite_master"))

    async def close(self) -> None:
        # Calls already queued finish first; later ones are refused.
        await self._worker.close()

    async def purge_expired(self) -> int:
        """Remove expired messages and registrations (answered: how many), and
        the remembered ids of expired messages, expired Hawk nonces and
        prekeys spent more than ``SPENT_HOLD`` ago (not counted: they are
        bookkeeping)."""

        def batch(conn: sqlite3.Connection) -> tuple[int, bool]:
            now = self._now()
            # Per box through the (box_id, expires_at) indexes; no table scan.
            messages = _changes(
                conn,
                "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages"
                " WHERE box_id IN (SELECT box_id FROM queues) AND expires_at <= ? LIMIT ?)",
                (now, PURGE_BATCH),
            )
            ids = _changes(
                conn,
                "DELETE FROM message_ids WHERE (box_id, message_id) IN (SELECT box_id, message_id"
                " FROM message_ids WHERE box_id IN (SELECT box_id FROM queues)"
                " AND expires_at <= ? LIMIT ?)",
                (now, PURGE_BATCH),
            )
            registrations = _changes(
                conn,
                "DELETE FROM registrations WHERE device_id IN (SELECT device_id"
                " FROM registrations WHERE purge_at <= ? LIMIT ?)",
                (now, PURGE_BATCH),
            )
            more = max(messages, ids, registrations) >= PURGE_BATCH
            return messages + registrations, more

        total = 0
        while True:
            # One short transaction per batch; other calls queue in between.
            removed, more = await self._write(batch)
            total += removed
            if not more:
                break
        await self.purge_nonces()
        await self.purge_spent_prekeys()
        return total


__all__ = ["LATEST_VERSION", "SqliteStore", "translate_error"]
