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

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from rossby.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    RossbyError,
    StoreUnavailable,
)
from rossby.store.base import (
    Box,
    Compaction,
    Device,
    DeviceKeys,
    DeviceState,
    Enqueued,
    NewMessage,
    Page,
    PendingCapExceeded,
    Position,
    Profile,
    Registration,
    Store,
    StoredMessage,
    StoreOptions,
)
from rossby.store.sqlite.accounts import SqliteAccounts
from rossby.store.sqlite.codesends import SqliteCodeSends
from rossby.store.sqlite.nonces import SqliteNonces
from rossby.store.sqlite.presence import SqlitePresence
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

#: The largest position SQLite can compare against (signed 64-bit).
_MAX_POSITION = 2**63 - 1


# -- migrations ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> tuple[Migration, ...]:
    """Read ``migrations/NNNN_name.sql`` in version order.

    Versions must run 1..N without gaps: a gap would mean a file went
    missing from the package, and applying around it would leave a schema
    no version number describes.
    """
    found: list[Migration] = []
    for entry in resources.files("rossby.store.sqlite.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, _ = name.partition("_")
        found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"sqlite migrations must be numbered 1..N, found {versions}")
    return tuple(found)


MIGRATIONS = load_migrations()
LATEST_VERSION = MIGRATIONS[-1].version


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


# -- error translation ----------------------------------------------------------

# Primary result codes (the low byte of an extended code).
_SQLITE_ERROR = 1
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_NOMEM = 7
_SQLITE_READONLY = 8
_SQLITE_INTERRUPT = 9
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

# Failures that happen before anything is written: the caller may retry
# knowing the write did not land. Anything else (I/O errors in COMMIT, a
# corrupt file) leaves the outcome unknown.
_NOT_APPLIED = {
    _SQLITE_PERM,
    _SQLITE_BUSY,
    _SQLITE_LOCKED,
    _SQLITE_NOMEM,
    _SQLITE_READONLY,
    _SQLITE_INTERRUPT,
    _SQLITE_FULL,
    _SQLITE_CANTOPEN,
}


def translate_error(exc: sqlite3.Error | MemoryError) -> RossbyError:
    """The one place a sqlite3 exception becomes a ``rossby.errors`` one.

    The sqlite3 module reports SQLITE_NOMEM as MemoryError, without a result
    code; the worker hands that over too, so out of memory is an outage
    (nothing was written: SQLite rolled the statement or transaction back),
    not a raw MemoryError reaching the server."""
    if isinstance(exc, MemoryError):
        return StoreUnavailable("sqlite: out of memory", applied=False)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        # A constraint or API misuse is a bug in this backend, not an outage:
        # retrying would fail the same way, so it must not look retryable.
        return RossbyError(f"sqlite store bug: {text}", reason="STORE_INTERNAL")
    if primary == _SQLITE_ERROR and text.startswith("no such table"):
        return FailedPrecondition(
            f"sqlite schema missing ({text}); run `rossby migrate`", reason="SCHEMA_MISSING"
        )
    applied = False if primary in _NOT_APPLIED else None
    return StoreUnavailable(f"sqlite: {text}", applied=applied)


# -- row helpers ------------------------------------------------------------------


def _b(value: uuid.UUID) -> bytes:
    return value.bytes


def _u(value: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=value)


def _pack(items: Sequence[bytes]) -> str:
    return json.dumps([item.hex() for item in items])


def _unpack(text: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(item) for item in json.loads(text))


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run a statement to completion: a half-read cursor keeps its statement
    open, which would make a later COMMIT fail."""
    return conn.execute(sql, params).fetchall()


def _row(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


def _changes(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    return conn.execute(sql, params).rowcount


_DEVICE_COLUMNS = (
    "box_id, device_id, name, encryption_key, signing_key, key_signature, hawk_key, state,"
    " created_at"
)


def _device(row: Any) -> Device:
    return Device(
        box_id=_u(row[0]),
        device_id=_u(row[1]),
        name=row[2],
        keys=DeviceKeys(encryption_key=row[3], signing_key=row[4], key_signature=row[5]),
        hawk_key=row[6],
        state=DeviceState(row[7]),
        created_at=row[8],
    )


def _insert_device(conn: sqlite3.Connection, device: Device, start: Position) -> bool:
    """Insert an active device and its cursor at ``start``; False if the
    device already exists (left untouched, so a retry cannot reset its
    cursor or bring a revoked device back)."""
    inserted = _changes(
        conn,
        "INSERT INTO devices (box_id, device_id, name, encryption_key, signing_key,"
        " key_signature, hawk_key, state, created_at, start_position)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            _b(device.box_id),
            _b(device.device_id),
            device.name,
            device.keys.encryption_key,
            device.keys.signing_key,
            device.keys.key_signature,
            device.hawk_key,
            DeviceState.ACTIVE.value,
            device.created_at,
            start,
        ),
    )
    if inserted:
        conn.execute(
            "INSERT INTO cursors (box_id, device_id, cursor) VALUES (?, ?, ?)"
            " ON CONFLICT DO UPDATE SET cursor = excluded.cursor",
            (_b(device.box_id), _b(device.device_id), start),
        )
    return bool(inserted)


def _active_cursor(conn: sqlite3.Connection, box_id: uuid.UUID, device_id: uuid.UUID) -> Any:
    """(cursor, start_position) of an active device, or ``NotFound``."""
    row = _row(
        conn,
        "SELECT c.cursor, d.start_position FROM devices d"
        " JOIN cursors c ON c.box_id = d.box_id AND c.device_id = d.device_id"
        " WHERE d.box_id = ? AND d.device_id = ? AND d.state = ?",
        (_b(box_id), _b(device_id), DeviceState.ACTIVE.value),
    )
    if row is None:
        raise NotFound(f"no active device {device_id} in box {box_id}")
    return row


# -- the store ----------------------------------------------------------------------


class SqliteStore(SqlitePresence, SqliteNonces, SqliteAccounts, SqliteCodeSends, Store):
    """A ``Store`` on one SQLite file (or ``:memory:``)."""

    settle_window: Position = 0

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
            current = _row(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")[0]
            if current > LATEST_VERSION:
                raise FailedPrecondition(
                    f"sqlite schema is version {current}; this code knows {LATEST_VERSION}",
                    reason="SCHEMA_TOO_NEW",
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in split_statements(migration.sql):
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
                version = _row(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")[0]
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

    # -- contacts ----------------------------------------------------------

    async def lookup_contact(self, contact_hash: bytes) -> uuid.UUID | None:
        row = await self._run(
            lambda conn: _row(
                conn, "SELECT box_id FROM contacts WHERE contact_hash = ?", (contact_hash,)
            )
        )
        return None if row is None else _u(row[0])

    async def claim_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> uuid.UUID:
        def body(conn: sqlite3.Connection) -> uuid.UUID:
            conn.execute(
                "INSERT INTO contacts (contact_hash, box_id, claimed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (contact_hash) DO NOTHING",
                (contact_hash, _b(box_id), self._now()),
            )
            owner = _row(
                conn, "SELECT box_id FROM contacts WHERE contact_hash = ?", (contact_hash,)
            )
            return _u(owner[0])

        return await self._write(body)

    async def release_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> None:
        await self._write(
            lambda conn: _changes(
                conn,
                "DELETE FROM contacts WHERE contact_hash = ? AND box_id = ?",
                (contact_hash, _b(box_id)),
            )
        )

    # -- registrations -----------------------------------------------------

    async def put_registration(self, registration: Registration) -> None:
        r = registration

        def body(conn: sqlite3.Connection) -> None:
            purge_at = min(r.expires_at, self._now() + self.options.registration_ttl)
            conn.execute(
                "INSERT OR REPLACE INTO registrations (device_id, box_id, contact_hashes,"
                " code_hashes, encryption_key, signing_key, key_signature, device_name,"
                " created_at, expires_at, purge_at, sent_at, attempts, completed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _b(r.device_id),
                    _b(r.box_id),
                    _pack(r.contact_hashes),
                    _pack(r.code_hashes),
                    r.keys.encryption_key,
                    r.keys.signing_key,
                    r.keys.key_signature,
                    r.device_name,
                    r.created_at,
                    r.expires_at,
                    purge_at,
                    r.sent_at,
                    r.attempts,
                    int(r.completed),
                ),
            )

        await self._write(body)

    async def get_registration(self, device_id: uuid.UUID) -> Registration | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                "SELECT device_id, box_id, contact_hashes, code_hashes, encryption_key,"
                " signing_key, key_signature, device_name, created_at, expires_at, sent_at,"
                " attempts, completed FROM registrations WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
        )
        if row is None:
            return None
        return Registration(
            device_id=_u(row[0]),
            box_id=_u(row[1]),
            contact_hashes=_unpack(row[2]),
            code_hashes=_unpack(row[3]),
            keys=DeviceKeys(encryption_key=row[4], signing_key=row[5], key_signature=row[6]),
            device_name=row[7],
            created_at=row[8],
            expires_at=row[9],
            sent_at=row[10],
            attempts=row[11],
            completed=bool(row[12]),
        )

    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = _row(
                conn,
                "SELECT attempts, expires_at FROM registrations"
                " WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
            if row is None or row[1] != expires_at:
                raise NotFound(f"no such pending registration for device {device_id}")
            if int(row[0]) >= limit:
                return 0
            # Under the write lock: the read and this update are one step.
            conn.execute(
                "UPDATE registrations SET attempts = attempts + 1 WHERE device_id = ?",
                (_b(device_id),),
            )
            return int(row[0]) + 1

        return await self._write(body)

    async def complete_registration(self, device_id: uuid.UUID) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE registrations SET completed = 1 WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
            if not changed:
                raise NotFound(f"no pending registration for device {device_id}")

        await self._write(body)

    # -- boxes, devices, profiles ------------------------------------------

    async def create_box(self, box: Box, first_device: Device) -> None:
        def body(conn: sqlite3.Connection) -> None:
            bid = _b(box.box_id)
            if _row(conn, "SELECT 1 FROM boxes WHERE box_id = ?", (bid,)) is not None:
                if _row(
                    conn,
                    "SELECT 1 FROM devices WHERE box_id = ? AND device_id = ?",
                    (bid, _b(first_device.device_id)),
                ):
                    return  # a retry: everything is already in place
                raise AlreadyExists(f"box {box.box_id} exists with another first device")
            conn.execute(
                "INSERT INTO boxes (box_id, home_region, created_at) VALUES (?, ?, ?)",
                (bid, box.home_region, box.created_at),
            )
            conn.execute(
                "INSERT INTO queues (box_id, head, purged_through) VALUES (?, 0, 0)", (bid,)
            )
            _insert_device(conn, first_device, 0)
            defaults = Profile(box_id=box.box_id)
            conn.execute(
                "INSERT INTO profiles (box_id, display_name, description, avatar_ref,"
                " discoverable, accept_from) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    bid,
                    defaults.display_name,
                    defaults.description,
                    defaults.avatar_ref,
                    int(defaults.discoverable),
                    defaults.accept_from,
                ),
            )

        await self._write(body)

    async def get_box(self, box_id: uuid.UUID) -> Box | None:
        row = await self._run(
            lambda conn: _row(
                conn, "SELECT home_region, created_at FROM boxes WHERE box_id = ?", (_b(box_id),)
            )
        )
        return None if row is None else Box(box_id=box_id, home_region=row[0], created_at=row[1])

    async def add_device(self, device: Device) -> None:
        def body(conn: sqlite3.Connection) -> None:
            queue = _row(conn, "SELECT head FROM queues WHERE box_id = ?", (_b(device.box_id),))
            if queue is None:
                raise NotFound(f"no box {device.box_id}")
            _insert_device(conn, device, queue[0])

        await self._write(body)

    async def get_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE box_id = ? AND device_id = ?",
                (_b(box_id), _b(device_id)),
            )
        )
        return None if row is None else _device(row)

    async def list_devices(self, box_id: uuid.UUID) -> list[Device]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE box_id = ? AND state = ?"
                " ORDER BY created_at, rowid",
                (_b(box_id), DeviceState.ACTIVE.value),
            )
        )
        return [_device(row) for row in rows]

    async def rotate_device_keys(
        self, box_id: uuid.UUID, device_id: uuid.UUID, keys: DeviceKeys
    ) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE devices SET encryption_key = ?, signing_key = ?, key_signature = ?"
                " WHERE box_id = ? AND device_id = ? AND state = ?",
                (
                    keys.encryption_key,
                    keys.signing_key,
                    keys.key_signature,
                    _b(box_id),
                    _b(device_id),
                    DeviceState.ACTIVE.value,
                ),
            )
            if not changed:
                raise NotFound(f"no active device {device_id} in box {box_id}")

        await self._write(body)

    async def set_hawk_key(self, box_id: uuid.UUID, device_id: uuid.UUID, hawk_key: bytes) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE devices SET hawk_key = ? WHERE box_id = ? AND device_id = ?",
                (hawk_key, _b(box_id), _b(device_id)),
            )
            if not changed:
                raise NotFound(f"no device {device_id} in box {box_id}")

        await self._write(body)

    async def device_page(
        self, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
    ) -> list[Device]:
        # The primary key's order: a keyset page, no OFFSET to rescan.
        if after is None:
            sql = f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY box_id, device_id LIMIT ?"
            params: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE (box_id, device_id) > (?, ?)"
                " ORDER BY box_id, device_id LIMIT ?"
            )
            params = (_b(after[0]), _b(after[1]), limit)
        rows = await self._run(lambda conn: _rows(conn, sql, params))
        return [_device(row) for row in rows]

    async def revoke_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        await self._write(
            lambda conn: _changes(
                conn,
                "UPDATE devices SET state = ? WHERE box_id = ? AND device_id = ?",
                (DeviceState.REVOKED.value, _b(box_id), _b(device_id)),
            )
        )

    async def get_profile(self, box_id: uuid.UUID) -> Profile | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                "SELECT display_name, description, avatar_ref, discoverable, accept_from"
                " FROM profiles WHERE box_id = ?",
                (_b(box_id),),
            )
        )
        if row is None:
            return None
        return Profile(
            box_id=box_id,
            display_name=row[0],
            description=row[1],
            avatar_ref=row[2],
            discoverable=bool(row[3]),
            accept_from=row[4],
        )

    async def put_profile(self, profile: Profile) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE profiles SET display_name = ?, description = ?, avatar_ref = ?,"
                " discoverable = ?, accept_from = ? WHERE box_id = ?",
                (
                    profile.display_name,
                    profile.description,
                    profile.avatar_ref,
                    int(profile.discoverable),
                    profile.accept_from,
                    _b(profile.box_id),
                ),
            )
            if not changed:
                raise NotFound(f"no box {profile.box_id}")

        await self._write(body)

    # -- the queue ---------------------------------------------------------

    def _live_count(self, conn: sqlite3.Connection, box_id: bytes, now: float, cap: int) -> int:
        """Messages neither compacted (those rows are gone) nor expired,
        counted on the (box_id, expires_at) index and stopped at ``cap``."""
        row = _row(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM messages"
            " WHERE box_id = ? AND expires_at > ? LIMIT ?)",
            (box_id, now, cap),
        )
        return int(row[0])

    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        def body(conn: sqlite3.Connection) -> Enqueued:
            bid = _b(box_id)
            # The duplicate check comes before the cap: a retry of a message
            # that made it in must learn so, even if the box filled since. It
            # reads message_ids, which outlive compaction (migration 0005).
            seen = _row(
                conn,
                "SELECT position FROM message_ids WHERE box_id = ? AND message_id = ?",
                (bid, _b(message.message_id)),
            )
            if seen is not None:
                return Enqueued(position=seen[0], duplicate=True)
            now = self._now()
            cap = self.options.pending_cap
            if self._live_count(conn, bid, now, cap) >= cap:
                raise PendingCapExceeded(
                    f"box {box_id} already holds {cap} undelivered messages",
                    metadata={"pending_cap": str(cap)},
                )
            head = _row(
                conn, "UPDATE queues SET head = head + 1 WHERE box_id = ? RETURNING head", (bid,)
            )
            if head is None:
                raise NotFound(f"no box {box_id}")
            conn.execute(
                "INSERT INTO messages (box_id, position, message_id, sender_box, sender_device,"
                " received_at, expires_at, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bid,
                    head[0],
                    _b(message.message_id),
                    _b(message.sender_box),
                    _b(message.sender_device),
                    now,
                    now + self.options.message_ttl,
                    message.ciphertext,
                ),
            )
            conn.execute(
                "INSERT INTO message_ids (box_id, message_id, position, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (bid, _b(message.message_id), head[0], now + self.options.message_ttl),
            )
            return Enqueued(position=head[0], duplicate=False)

        return await self._write(body)

    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        def body(conn: sqlite3.Connection) -> Page:
            cursor, start = _active_cursor(conn, box_id, device_id)
            queue = _row(conn, "SELECT purged_through FROM queues WHERE box_id = ?", (_b(box_id),))
            purged = queue[0] if queue else 0
            # SQLite integers are signed 64-bit; a client's page token is not.
            lower = min(max(after, cursor - self.settle_window, start, purged), _MAX_POSITION)
            wanted = max(limit, 0)
            rows = _rows(
                conn,
                "SELECT position, message_id, sender_box, sender_device, received_at, ciphertext"
                " FROM messages WHERE box_id = ? AND position > ? AND expires_at > ?"
                " ORDER BY position LIMIT ?",
                (_b(box_id), lower, self._now(), wanted + 1),
            )
            messages = [
                StoredMessage(
                    position=row[0],
                    message_id=_u(row[1]),
                    sender_box=_u(row[2]),
                    sender_device=_u(row[3]),
                    received_at=row[4],
                    ciphertext=row[5],
                )
                for row in rows[:wanted]
            ]
            return Page(messages=messages, more=len(rows) > wanted, cursor=cursor)

        return await self._read(body)

    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        def body(conn: sqlite3.Connection) -> Position:
            _active_cursor(conn, box_id, device_id)
            head = _row(conn, "SELECT head FROM queues WHERE box_id = ?", (_b(box_id),))[0]
            row = _row(
                conn,
                "UPDATE cursors SET cursor = max(cursor, ?)"
                " WHERE box_id = ? AND device_id = ? RETURNING cursor",
                (min(through, head), _b(box_id), _b(device_id)),
            )
            return int(row[0])

        return await self._write(body)

    async def compact(self, box_id: uuid.UUID) -> Compaction:
        def body(conn: sqlite3.Connection) -> Compaction:
            bid = _b(box_id)
            queue = _row(conn, "SELECT head, purged_through FROM queues WHERE box_id = ?", (bid,))
            if queue is None:
                return Compaction(purged_through=0, removed=0)
            head, purged = queue
            low = _row(
                conn,
                "SELECT min(c.cursor) FROM cursors c JOIN devices d"
                " ON d.box_id = c.box_id AND d.device_id = c.device_id"
                " WHERE c.box_id = ? AND d.state = ?",
                (bid, DeviceState.ACTIVE.value),
            )[0]
            # No active device: nobody can read what is queued, and a device
            # added later starts at the head, so all of it may go.
            bound = (head if low is None else low) - self.settle_window
            if bound <= purged:
                return Compaction(purged_through=purged, removed=0)
            removed = _changes(
                conn, "DELETE FROM messages WHERE box_id = ? AND position <= ?", (bid, bound)
            )
            conn.execute("UPDATE queues SET purged_through = ? WHERE box_id = ?", (bound, bid))
            return Compaction(purged_through=bound, removed=removed)

        return await self._write(body)

    async def pending_count(self, box_id: uuid.UUID) -> int:
        cap = self.options.pending_cap + 1
        return await self._run(lambda conn: self._live_count(conn, _b(box_id), self._now(), cap))

    async def purge_expired(self) -> int:
        """Remove expired messages and registrations (answered: how many), and
        the remembered ids of expired messages and expired Hawk nonces (not
        counted: they are bookkeeping)."""

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
        return total


__all__ = ["LATEST_VERSION", "SqliteStore", "translate_error"]
