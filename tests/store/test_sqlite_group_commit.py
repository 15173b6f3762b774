"""SQLite group commit (rossby/store/sqlite/worker.py): concurrent writes
share one transaction and one fsync, each is rolled back alone when it
fails, and none is answered before the COMMIT that made it durable."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import rossby.store.sqlite.store as sqlite_store
from rossby.errors import StoreUnavailable
from rossby.store import Box, PendingCapExceeded, StoreOptions
from rossby.store.sqlite import SqliteStore
from tests.store.test_concurrency import make_device, make_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "rossby.db"), StoreOptions())
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def new_box(store: SqliteStore) -> uuid.UUID:
    box = Box(box_id=uuid.uuid4(), home_region="dc1", created_at=time.time())
    await store.create_box(box, make_device(box.box_id, "phone"))
    return box.box_id


def other_connection(store: SqliteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


async def test_concurrent_writes_share_commits_and_keep_dense_positions(
    store: SqliteStore,
) -> None:
    box = await new_box(store)
    before = store.commits
    results = await asyncio.gather(*(store.enqueue(box, make_message()) for _ in range(200)))
    assert sorted(r.position for r in results) == list(range(1, 201))
    commits = store.commits - before
    assert 1 <= commits < 200, commits
    assert store.grouped_writes >= 200


async def test_every_answer_is_already_committed(store: SqliteStore) -> None:
    box = await new_box(store)
    seen = other_connection(store)
    unseen: list[int] = []

    async def send() -> None:
        message = make_message()
        await store.enqueue(box, message)
        # The moment the answer arrives, another connection sees the row.
        row = seen.execute(
            "SELECT 1 FROM messages WHERE box_id = ? AND message_id = ?",
            (box.bytes, message.message_id.bytes),
        ).fetchone()
        if row is None:
            unseen.append(1)

    try:
        await asyncio.gather(*(send() for _ in range(100)))
    finally:
        seen.close()
    assert unseen == []


async def test_a_failing_write_is_rolled_back_alone(store: SqliteStore) -> None:
    box = await new_box(store)
    full = await new_box(store)
    tight = SqliteStore(store.path, StoreOptions(pending_cap=40))
    try:
        await asyncio.gather(*(tight.enqueue(full, make_message()) for _ in range(40)))
        marker = uuid.uuid4()

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO message_ids (box_id, message_id, position, expires_at)"
                " VALUES (?, ?, 1, 9e18)",
                (box.bytes, marker.bytes),
            )
            raise ValueError("a body that fails after writing")

        good = [make_message() for _ in range(30)]
        outcomes = await asyncio.gather(
            *(tight.enqueue(box, m) for m in good[:15]),
            tight._write(half_then_fail),
            tight.enqueue(full, make_message()),  # refused: the box is full
            *(tight.enqueue(box, m) for m in good[15:]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[15], ValueError)
        assert isinstance(outcomes[16], PendingCapExceeded)
        others = outcomes[:15] + outcomes[17:]
        assert all(not isinstance(o, BaseException) for o in others), others
        assert tight.commits < len(outcomes)  # they did share transactions
    finally:
        await tight.close()
    check = other_connection(store)
    try:
        (marked,) = check.execute(
            "SELECT count(*) FROM message_ids WHERE message_id = ?", (marker.bytes,)
        ).fetchone()
        (queued,) = check.execute(
            "SELECT count(*) FROM messages WHERE box_id = ?", (box.bytes,)
        ).fetchone()
        (in_full,) = check.execute(
            "SELECT count(*) FROM messages WHERE box_id = ?", (full.bytes,)
        ).fetchone()
    finally:
        check.close()
    assert (marked, queued, in_full) == (0, 30, 40)


async def test_a_group_that_cannot_begin_fails_whole_and_writes_nothing(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = await new_box(store)
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    blocked = SqliteStore(store.path, StoreOptions())
    holder = other_connection(store)
    try:
        await blocked.get_box(box)  # open its connection (with the short timeout)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        messages = [make_message() for _ in range(20)]
        outcomes = await asyncio.gather(
            *(blocked.enqueue(box, m) for m in messages), return_exceptions=True
        )
        holder.execute("ROLLBACK")
        assert all(isinstance(o, StoreUnavailable) and o.applied is False for o in outcomes)
        (count,) = holder.execute(
            "SELECT count(*) FROM messages WHERE box_id = ?", (box.bytes,)
        ).fetchone()
        assert count == 0
        # And the store works again once the lock is free.
        assert (await blocked.enqueue(box, messages[0])).position == 1
    finally:
        holder.close()
        await blocked.close()


async def test_close_finishes_what_is_queued_and_refuses_the_rest(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "close.db"), StoreOptions())
    await s.migrate()
    box = await new_box(s)
    sends = [asyncio.ensure_future(s.enqueue(box, make_message())) for _ in range(100)]
    await asyncio.sleep(0)  # let them queue
    await asyncio.wait_for(s.close(), 30)
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    with pytest.raises(StoreUnavailable):
        await s.enqueue(box, make_message())
    await s.close()  # twice is fine
