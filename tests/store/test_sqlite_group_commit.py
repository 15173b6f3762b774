"""SQLite group commit (rossby/store/sqlite/worker.py), on real files.

Concurrent writes share one transaction and one fsync; each write's body
runs in its own savepoint, so one that raises fails alone; nothing is
answered before its group committed; a group whose transaction fails, or
that meets an error no savepoint can contain (disk full, out of memory, a
corrupt file, SQLite rolling the whole transaction back), fails as a whole
with nothing applied. To put chosen calls in one group, a ``Gate`` holds the
store's worker thread inside a job while they queue: the next drain then
takes all of them at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rossby.errors import NotFound, RossbyError, StoreUnavailable
from rossby.store import StoreOptions
from rossby.store.base import Enqueued, PendingCapExceeded
from rossby.store.sqlite import SqliteStore
from rossby.store.sqlite import store as sqlite_store
from tests.store.test_concurrency import make_message, new_box


async def box_in(store: SqliteStore) -> uuid.UUID:
    box, _ = await new_box(store)
    return box.box_id


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rossby.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(db), StoreOptions())
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def spy(db: Path) -> Iterator[sqlite3.Connection]:
    """A second connection, like another process: it sees only what committed."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def positions(spy: sqlite3.Connection, box_id: uuid.UUID) -> list[int]:
    rows = spy.execute(
        "SELECT position FROM messages WHERE box_id = ? ORDER BY position", (box_id.bytes,)
    ).fetchall()
    return [row[0] for row in rows]


class Gate:
    """Holds the store's worker thread inside a job until released."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.released = threading.Event()
        self.task: asyncio.Task[Any] | None = None

    def _body(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.released.wait(30)

    async def __aenter__(self) -> Gate:
        self.task = asyncio.create_task(self.store._run(self._body))
        assert await asyncio.to_thread(self.entered.wait, 10)
        return self

    async def queued(self, count: int) -> None:
        """Wait until ``count`` jobs wait behind the gate."""
        deadline = time.monotonic() + 10
        while self.store._worker._queue.qsize() < count:
            assert time.monotonic() < deadline, "jobs did not queue"
            await asyncio.sleep(0.001)

    def release(self) -> None:
        self.released.set()

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        assert self.task is not None
        await self.task


async def gathered(*calls: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def one_group(store: SqliteStore, *calls: Awaitable[Any]) -> list[Any]:
    """Run ``calls`` as one group: queued behind a gate, drained at once."""
    async with Gate(store) as gate:
        tasks = [asyncio.ensure_future(call) for call in calls]
        await gate.queued(len(tasks))
        gate.release()
        return await gathered(*tasks)


# -- a real SQLITE_NOMEM ------------------------------------------------------

#: A hard heap limit far above anything the tests use, and an allocation
#: above it (randomblob refuses beyond 1e9 bytes with SQLITE_TOOBIG, so
#: just below that): SQLite checks the limit before allocating, so nothing
#: is really allocated and the call fails with SQLITE_NOMEM.
_HEAP_LIMIT = 512 * 1024 * 1024
_TOO_MUCH = 999_999_999


def _lift_heap_limit() -> None:
    """The limit is process-wide and PRAGMA can only lower it: lift it
    through the C API of the library the sqlite3 module uses."""
    name = ctypes.util.find_library("sqlite3")
    assert name is not None, "libsqlite3 not found: cannot lift the heap limit"
    lib = ctypes.CDLL(name)
    lib.sqlite3_hard_heap_limit64.argtypes = [ctypes.c_int64]
    lib.sqlite3_hard_heap_limit64.restype = ctypes.c_int64
    lib.sqlite3_hard_heap_limit64(0)


def out_of_memory(conn: sqlite3.Connection) -> None:
    """A body whose statement fails with SQLITE_NOMEM (the sqlite3 module
    raises MemoryError); SQLite leaves the transaction open."""
    options = {row[0] for row in conn.execute("PRAGMA compile_options").fetchall()}
    # Without memory statistics SQLite ignores the limit and would really
    # allocate the blob.
    assert "DEFAULT_MEMSTATUS=0" not in options, "this SQLite ignores hard_heap_limit"
    conn.execute(f"PRAGMA hard_heap_limit = {_HEAP_LIMIT}")
    try:
        conn.execute(f"SELECT length(randomblob({_TOO_MUCH}))").fetchall()
    finally:
        _lift_heap_limit()
        assert conn.execute("PRAGMA hard_heap_limit").fetchone() == (0,)


# -- sharing ------------------------------------------------------------------


async def test_concurrent_enqueues_share_commits_and_keep_dense_positions(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    commits, grouped = store.commits, store.grouped_writes
    n = 200
    answers = await asyncio.gather(*(store.enqueue(box, make_message()) for _ in range(n)))
    assert sorted(a.position for a in answers) == list(range(1, n + 1))
    assert not any(a.duplicate for a in answers)
    assert positions(spy, box) == list(range(1, n + 1))
    assert store.grouped_writes - grouped == n
    assert store.commits - commits < n


async def test_every_answer_is_already_committed(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    seen: list[int] = []

    async def send() -> None:
        answer = await store.enqueue(box, make_message())
        # Straight away, before anything else runs on this loop: another
        # connection must already see the row.
        row = spy.execute(
            "SELECT 1 FROM messages WHERE box_id = ? AND position = ?",
            (box.bytes, answer.position),
        ).fetchone()
        assert row is not None, f"position {answer.position} answered before it committed"
        seen.append(answer.position)

    await asyncio.gather(*(send() for _ in range(100)))
    assert sorted(seen) == list(range(1, 101))


async def test_one_group_answers_callers_on_several_loops(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)

    async def elsewhere() -> list[int]:
        answers = await asyncio.gather(*(store.enqueue(box, make_message()) for _ in range(3)))
        return [a.position for a in answers]

    async with Gate(store) as gate:
        commits = store.commits
        here = [asyncio.ensure_future(store.enqueue(box, make_message())) for _ in range(3)]
        there = asyncio.ensure_future(asyncio.to_thread(asyncio.run, elsewhere()))
        await gate.queued(6)
        gate.release()
        mine = [t.position for t in await asyncio.gather(*here)]
        theirs = await there
    assert store.commits == commits + 1
    assert sorted(mine + theirs) == [1, 2, 3, 4, 5, 6]
    assert positions(spy, box) == [1, 2, 3, 4, 5, 6]


async def test_a_cancelled_caller_does_not_break_its_group(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    async with Gate(store) as gate:
        commits = store.commits
        tasks = [asyncio.ensure_future(store.enqueue(box, make_message())) for _ in range(5)]
        await gate.queued(len(tasks))
        tasks[2].cancel()
        gate.release()
        got = await gathered(*tasks)
    assert isinstance(got[2], asyncio.CancelledError)
    answered = [g.position for i, g in enumerate(got) if i != 2]
    assert store.commits == commits + 1
    # A job already queued still runs (as an executor's running call would):
    # the cancelled write committed unseen, which a retry of the same
    # message id answers as a duplicate. The others are answered in full.
    assert positions(spy, box) == [1, 2, 3, 4, 5]
    assert len(set(answered)) == 4 and set(answered) < {1, 2, 3, 4, 5}


# -- one write fails alone ----------------------------------------------------


async def test_a_failing_body_rolls_back_alone(
    store: SqliteStore, spy: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    tight = SqliteStore(store.path, StoreOptions(pending_cap=3))
    full, other = await box_in(tight), await box_in(tight)
    for _ in range(2):
        await tight.enqueue(full, make_message())

    def bump_then_raise(conn: sqlite3.Connection) -> None:
        # Writes (issues a position in ``other``) and then refuses: the savepoint
        # must take the position back, or ``other`` would have a gap.
        conn.execute("UPDATE queues SET head = head + 1 WHERE box_id = ?", (other.bytes,))
        raise RossbyError("refused after writing", reason="TEST_REFUSAL")

    contact = os.urandom(32)

    def insert_twice(conn: sqlite3.Connection) -> None:
        for _ in range(2):  # the second insert breaks the primary key
            conn.execute(
                "INSERT INTO contacts (contact_hash, box_id, claimed_at) VALUES (?, ?, 0)",
                (contact, other.bytes),
            )

    def bad_bindings(conn: sqlite3.Connection) -> None:
        # Refused by the sqlite3 module before SQLite runs anything (no
        # result code): contained like a constraint.
        conn.execute("UPDATE queues SET head = head + 1 WHERE box_id = ?", (other.bytes,))
        conn.execute("SELECT ?, ?", (1,))

    loop = asyncio.get_running_loop()
    wakeups = 0
    wake = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return wake(*args, **kwargs)

    try:
        async with Gate(tight) as gate:
            commits = tight.commits
            calls = [
                tight.enqueue(full, make_message()),
                tight.enqueue(other, make_message()),
                tight.enqueue(full, make_message()),  # over the cap
                tight._write(bump_then_raise),
                tight.enqueue(other, make_message()),
                tight.enqueue(uuid.uuid4(), make_message()),  # no such box
                tight._write(insert_twice),
                tight.enqueue(other, make_message()),
                tight._write(bad_bindings),
            ]
            tasks = [asyncio.ensure_future(call) for call in calls]
            await gate.queued(len(tasks))
            monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
            gate.release()
            got = await gathered(*tasks)
        monkeypatch.undo()
    finally:
        await tight.close()

    assert tight.commits == commits + 1  # one group, one transaction
    # The gate's answer and the whole group's: one wake-up each.
    assert wakeups == 2
    assert isinstance(got[0], Enqueued) and got[0].position == 3
    assert isinstance(got[2], PendingCapExceeded)
    assert isinstance(got[3], RossbyError) and got[3].reason == "TEST_REFUSAL"
    assert isinstance(got[5], NotFound)
    assert isinstance(got[6], RossbyError) and got[6].reason == "STORE_INTERNAL"
    assert isinstance(got[8], RossbyError) and got[8].reason == "STORE_INTERNAL"
    assert [g.position for g in (got[1], got[4], got[7])] == [1, 2, 3]
    assert positions(spy, full) == [1, 2, 3]
    assert positions(spy, other) == [1, 2, 3]
    head = spy.execute("SELECT head FROM queues WHERE box_id = ?", (other.bytes,)).fetchone()
    assert head == (3,)
    assert (
        spy.execute("SELECT 1 FROM contacts WHERE contact_hash = ?", (contact,)).fetchone() is None
    )


# -- the whole group fails ----------------------------------------------------


async def test_a_failed_commit_fails_the_whole_group(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    # A deferred foreign key is checked at COMMIT: a body that breaks it
    # succeeds, and the group's COMMIT then fails.
    await store._run(lambda conn: conn.execute("PRAGMA foreign_keys = ON"))
    await store._run(lambda conn: conn.execute("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)"))
    await store._run(
        lambda conn: conn.execute(
            "CREATE TABLE t_child (parent INTEGER"
            " REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    )

    def orphan(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t_child (parent) VALUES (42)")
        return "written"

    commits = store.commits
    got = await one_group(
        store,
        store.enqueue(box, make_message()),
        store._write(orphan),
        store.enqueue(box, make_message()),
        store.enqueue(box, make_message()),
    )
    assert all(isinstance(g, RossbyError) and g.reason == "STORE_INTERNAL" for g in got), got
    assert store.commits == commits
    assert positions(spy, box) == []
    assert spy.execute("SELECT count(*) FROM t_child").fetchone() == (0,)
    # The connection is usable again and issued no position.
    assert (await store.enqueue(box, make_message())).position == 1


async def test_a_constraint_that_rolls_back_the_transaction_fails_the_group(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    """ON CONFLICT ROLLBACK: SQLite ends the whole transaction itself, so the
    earlier writes of the group are gone and the savepoint with them."""
    box = await box_in(store)
    contact = os.urandom(32)

    def claim_twice(conn: sqlite3.Connection) -> None:
        for _ in range(2):
            conn.execute(
                "INSERT OR ROLLBACK INTO contacts (contact_hash, box_id, claimed_at)"
                " VALUES (?, ?, 0)",
                (contact, box.bytes),
            )

    commits = store.commits
    got = await one_group(
        store,
        store.enqueue(box, make_message()),
        store._write(claim_twice),
        store.enqueue(box, make_message()),
    )
    # Every write gets the constraint error (a bug, not an outage), none
    # applied; not an unknown outcome from a savepoint that no longer exists.
    assert all(isinstance(g, RossbyError) and g.reason == "STORE_INTERNAL" for g in got), got
    assert all(isinstance(g.__cause__, sqlite3.IntegrityError) for g in got), got
    assert store.commits == commits
    assert positions(spy, box) == []
    assert (
        spy.execute("SELECT 1 FROM contacts WHERE contact_hash = ?", (contact,)).fetchone() is None
    )
    assert (await store.enqueue(box, make_message())).position == 1


async def test_a_full_disk_in_one_body_fails_the_group(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    await store._run(lambda conn: conn.execute("CREATE TABLE t_blob (data BLOB)"))
    pages = await store._run(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    # A full disk (SQLITE_FULL) in the middle of the group.
    await store._run(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 64}"))

    def huge(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t_blob (data) VALUES (randomblob(4000000))")

    try:
        got = await one_group(
            store,
            store.enqueue(box, make_message()),
            store._write(huge),
            store.enqueue(box, make_message()),
            store.enqueue(box, make_message()),
        )
    finally:
        await store._run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))

    assert all(isinstance(g, StoreUnavailable) and g.applied is False for g in got), got
    assert positions(spy, box) == []
    assert (await store.enqueue(box, make_message())).position == 1


async def test_out_of_memory_in_one_body_fails_the_group(
    store: SqliteStore, spy: sqlite3.Connection
) -> None:
    box = await box_in(store)
    commits = store.commits
    got = await one_group(
        store,
        store.enqueue(box, make_message()),
        store._write(out_of_memory),
        store.enqueue(box, make_message()),
    )
    assert all(isinstance(g, StoreUnavailable) and g.applied is False for g in got), got
    assert store.commits == commits
    assert positions(spy, box) == []
    assert (await store.enqueue(box, make_message())).position == 1


async def test_out_of_memory_outside_a_group_is_unavailable_not_applied(
    store: SqliteStore,
) -> None:
    with pytest.raises(StoreUnavailable) as read:
        await store._read(out_of_memory)
    assert read.value.applied is False
    assert isinstance(read.value.__cause__, MemoryError)


async def test_a_corrupt_file_in_one_body_fails_the_group(
    store: SqliteStore, spy: sqlite3.Connection, tmp_path: Path
) -> None:
    box = await box_in(store)
    # A second file, attached, whose table's root page is garbage: page 1
    # (the schema) is sound, so BEGIN works and the read fails with
    # SQLITE_CORRUPT inside the body's savepoint.
    spoiled = tmp_path / "spoiled.db"
    maker = sqlite3.connect(spoiled, isolation_level=None)
    try:
        maker.execute("CREATE TABLE t (x BLOB)")
        maker.executemany("INSERT INTO t (x) VALUES (randomblob(100))", [()] * 200)
        page_size = maker.execute("PRAGMA page_size").fetchone()[0]
    finally:
        maker.close()
    with spoiled.open("r+b") as file:
        file.seek(page_size)  # page 2: the root of t
        file.write(b"\xa5" * page_size)
    await store._run(lambda conn: conn.execute("ATTACH DATABASE ? AS spoiled", (str(spoiled),)))

    def read_spoiled(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT count(*) FROM spoiled.t").fetchall()

    try:
        got = await one_group(
            store,
            store.enqueue(box, make_message()),
            store._write(read_spoiled),
            store.enqueue(box, make_message()),
        )
    finally:
        await store._run(lambda conn: conn.execute("DETACH DATABASE spoiled"))

    # Corrupt: the outcome is unknown to a caller (docs/store.md's table).
    assert all(isinstance(g, StoreUnavailable) and g.applied is None for g in got), got
    assert all("malformed" in str(g) for g in got), got
    assert positions(spy, box) == []
    assert (await store.enqueue(box, make_message())).position == 1


async def test_a_group_that_cannot_begin_fails_whole_and_writes_nothing(
    db: Path, spy: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    store = SqliteStore(str(db), StoreOptions())
    try:
        await store.migrate()
        box = await box_in(store)
        spy.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            got = await one_group(store, *(store.enqueue(box, make_message()) for _ in range(4)))
        finally:
            spy.execute("ROLLBACK")
        assert all(isinstance(g, StoreUnavailable) and g.applied is False for g in got), got
        assert positions(spy, box) == []
        # And the store works again once the lock is free.
        assert (await store.enqueue(box, make_message())).position == 1
    finally:
        await store.close()


async def test_each_caller_of_a_failed_group_gets_its_own_exception(
    db: Path, spy: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One instance raised in several tasks would gather all their tracebacks
    (and keep their frames alive); each gets a copy, caused by SQLite's error."""
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    store = SqliteStore(str(db), StoreOptions())
    try:
        await store.migrate()
        box = await box_in(store)
        spy.execute("BEGIN IMMEDIATE")
        try:
            got = await one_group(store, *(store.enqueue(box, make_message()) for _ in range(4)))
        finally:
            spy.execute("ROLLBACK")
        assert all(isinstance(g, StoreUnavailable) for g in got), got
        assert len({id(g) for g in got}) == len(got)
        assert all(isinstance(g.__cause__, sqlite3.OperationalError) for g in got), got
    finally:
        await store.close()


# -- close --------------------------------------------------------------------


async def test_close_runs_what_is_queued_and_refuses_the_rest(
    db: Path, spy: sqlite3.Connection
) -> None:
    store = SqliteStore(str(db), StoreOptions())
    await store.migrate()
    box = await box_in(store)
    gate = Gate(store)
    await gate.__aenter__()
    try:
        tasks = [asyncio.ensure_future(store.enqueue(box, make_message())) for _ in range(20)]
        await gate.queued(len(tasks))
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)  # close() has begun: the store refuses new calls
        with pytest.raises(StoreUnavailable) as late:
            await store.enqueue(box, make_message())
        assert late.value.applied is False
    finally:
        await gate.__aexit__()
    await asyncio.wait_for(closing, 10)
    got = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(g.position for g in got) == list(range(1, 21))
    assert positions(spy, box) == list(range(1, 21))
    with pytest.raises(StoreUnavailable) as after:
        await store.ping()
    assert after.value.applied is False
    await store.close()  # again: a no-op


async def test_close_of_an_unused_store(db: Path) -> None:
    store = SqliteStore(str(db), StoreOptions())
    await asyncio.wait_for(store.close(), 5)
    with pytest.raises(StoreUnavailable):
        await store.ping()
