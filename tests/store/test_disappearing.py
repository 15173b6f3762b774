"""Disappearing messages (``NewMessage.expire_after``), on every backend.

A message with a server-side lifetime is never handed out at or after its
``expires_at``, is not counted as pending once expired, and its id outlives
it: a retry after it disappeared is a duplicate, never a second copy. Most
tests move the store's injected clock; the ones marked "real time" let
Cassandra's own TTL run (it counts from the write's whole second), with
short lifetimes and bounded waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import pytest

from rossby.store import NewMessage, PendingCapExceeded, Store
from tests.store.conftest import Clock
from tests.store.test_contract import fetch_all, make_message, new_box, send
from tests.support.backends import purged

MakeStore = Callable[..., Store]
TTL = 3600.0


def short(seconds: float) -> NewMessage:
    return dataclasses.replace(make_message(), expire_after=seconds)


async def test_a_short_lived_message_is_not_fetched_after_it_expires(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(message_ttl=TTL)
    box, device = await new_box(store, clock)
    brief = short(10)
    await store.enqueue(box.box_id, brief)
    (normal,) = await send(store, box, 1)
    got = await fetch_all(store, box, device)
    assert [m.message_id for m in got] == [brief.message_id, normal[1].message_id]
    assert got[0].expires_at == pytest.approx(clock.now + 10, abs=1e-2)
    assert got[1].expires_at == pytest.approx(clock.now + TTL, abs=1e-2)
    clock.advance(9.9)
    assert len(await fetch_all(store, box, device)) == 2
    clock.advance(0.2)
    assert [m.message_id for m in await fetch_all(store, box, device)] == [normal[1].message_id]


async def test_expire_after_is_capped_at_the_message_ttl(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(message_ttl=60.0)
    box, device = await new_box(store, clock)
    await store.enqueue(box.box_id, short(10 * TTL))
    (got,) = await fetch_all(store, box, device)
    assert got.expires_at == pytest.approx(clock.now + 60, abs=1e-2)
    clock.advance(61)
    assert await fetch_all(store, box, device) == []


async def test_expired_messages_are_not_pending_and_free_the_cap(
    make_store: MakeStore, clock: Clock, backend: str
) -> None:
    store = make_store(message_ttl=TTL, pending_cap=2)
    box, device = await new_box(store, clock)
    for _ in range(2):
        await store.enqueue(box.box_id, short(5))
    assert await store.pending_count(box.box_id) == 2
    with pytest.raises(PendingCapExceeded):
        await store.enqueue(box.box_id, make_message())
    clock.advance(6)
    assert await store.pending_count(box.box_id) == 0
    later = await send(store, box, 2)
    assert [m.message_id for m in await fetch_all(store, box, device)] == [
        m.message_id for _, m in later
    ]
    # SQLite's housekeeping deletes the expired rows; Cassandra's TTL does.
    assert await store.purge_expired() == purged(backend, 2)


async def test_a_retry_after_expiry_is_a_duplicate(make_store: MakeStore, clock: Clock) -> None:
    store = make_store(message_ttl=TTL)
    box, device = await new_box(store, clock)
    brief = short(5)
    first = await store.enqueue(box.box_id, brief)
    clock.advance(6)
    await store.purge_expired()
    retry = await store.enqueue(box.box_id, brief)
    assert retry.duplicate and retry.position == first.position
    assert await fetch_all(store, box, device) == []
    assert await store.pending_count(box.box_id) == 0


async def test_a_page_of_expired_messages_moves_on(make_store: MakeStore, clock: Clock) -> None:
    """A full page whose rows all expired still says where the next one starts."""
    store = make_store(message_ttl=TTL)
    box, device = await new_box(store, clock)
    for _ in range(3):
        await store.enqueue(box.box_id, short(5))
    clock.advance(6)
    (normal,) = await send(store, box, 1)
    got = await fetch_all(store, box, device, limit=2)
    assert [m.message_id for m in got] == [normal[1].message_id]


async def wait_until(predicate: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[misc]
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not true within {seconds} s")


async def test_real_time_expiry_removes_the_row_and_keeps_the_id(
    make_store: MakeStore, clock: Clock, backend: str
) -> None:
    """Real time: on Cassandra the row goes by its own TTL (no range delete,
    no tombstone), yet a retry is still a duplicate (the id row keeps the
    full message_ttl, and knows the copy's expiry)."""
    store = make_store(message_ttl=TTL, clock=time.time)
    box, device = await new_box(store, clock)
    brief = short(2)
    first = await store.enqueue(box.box_id, brief)
    (got,) = await fetch_all(store, box, device)
    assert got.expires_at <= time.time() + 2
    await asyncio.sleep(max(0.0, got.expires_at - time.time()))
    assert await fetch_all(store, box, device) == []
    assert await store.pending_count(box.box_id) == 0
    await store.purge_expired()
    retry = await store.enqueue(box.box_id, brief)
    assert retry.duplicate and retry.position == first.position
    await asyncio.sleep(3)  # past the TTL's rounding: the row itself is gone on Cassandra
    retry = await store.enqueue(box.box_id, brief)
    assert retry.duplicate and retry.position == first.position
    assert await fetch_all(store, box, device) == []
