"""The per-contact code limit clauses of the Store contract
(``reserve_code_sends``), on every backend."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from rossby.store import CodeSendLimitExceeded, Store, StoreOptions, open_store
from rossby.store.cassandra import CassandraStore
from rossby.store.cassandra.config import KEYS
from tests.store.conftest import Clock

WINDOW = 3600.0


def contact() -> bytes:
    """A fresh keyed-hash-sized contact: the Cassandra keyspace is shared."""
    return os.urandom(32)


async def reserve(store: Store, clock: Clock, *hashes: bytes, limit: int = 3) -> None:
    await store.reserve_code_sends(hashes, now=clock(), window=WINDOW, limit=limit)


async def test_the_send_after_the_limit_is_refused_with_a_retry_time(
    store: Store, clock: Clock
) -> None:
    a, b = contact(), contact()
    for _ in range(3):
        await reserve(store, clock, a)
        clock.advance(10)
    with pytest.raises(CodeSendLimitExceeded) as refused:
        await reserve(store, clock, a)
    err = refused.value
    assert err.reason == "CONTACT_RATE_LIMITED"
    # The oldest of the three was sent 30 s ago: a slot frees in 3570 s.
    assert err.metadata == {"retry_after_seconds": "3570", "limit": "3"}
    # Other contacts are counted apart.
    await reserve(store, clock, b)


async def test_the_window_slides(store: Store, clock: Clock) -> None:
    a = contact()
    for _ in range(3):
        await reserve(store, clock, a)
        clock.advance(100)
    with pytest.raises(CodeSendLimitExceeded):
        await reserve(store, clock, a)
    clock.advance(WINDOW - 300 + 1)  # only the first send has left the window
    await reserve(store, clock, a)
    with pytest.raises(CodeSendLimitExceeded) as again:
        await reserve(store, clock, a)
    assert again.value.metadata["retry_after_seconds"] == "99"
    clock.advance(WINDOW)
    for _ in range(3):
        await reserve(store, clock, a)


async def test_a_refused_call_records_nothing_for_any_contact(store: Store, clock: Clock) -> None:
    full, free = contact(), contact()
    await reserve(store, clock, full, limit=2)
    await reserve(store, clock, full, limit=2)
    for _ in range(3):
        with pytest.raises(CodeSendLimitExceeded):
            await reserve(store, clock, free, full, limit=2)
    # ``free`` still has both of its slots.
    await reserve(store, clock, free, limit=2)
    await reserve(store, clock, free, limit=2)
    with pytest.raises(CodeSendLimitExceeded):
        await reserve(store, clock, free, limit=2)


async def test_every_contact_of_a_call_is_counted_and_repeats_once(
    store: Store, clock: Clock
) -> None:
    a, b = contact(), contact()
    await reserve(store, clock, a, b, a, limit=2)
    await reserve(store, clock, b, limit=2)
    with pytest.raises(CodeSendLimitExceeded):
        await reserve(store, clock, b, limit=2)
    await reserve(store, clock, a, limit=2)  # a was counted once, not twice
    with pytest.raises(CodeSendLimitExceeded):
        await reserve(store, clock, a, limit=2)


async def test_the_count_is_shared_by_every_store_on_the_database(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    one, two = make_store(), make_store()
    a = contact()
    await reserve(one, clock, a, limit=2)
    await reserve(two, clock, a, limit=2)
    for store in (one, two):
        with pytest.raises(CodeSendLimitExceeded):
            await reserve(store, clock, a, limit=2)


async def test_racing_calls_in_one_process_never_overshoot(store: Store, clock: Clock) -> None:
    a = contact()
    answers = await asyncio.gather(
        *(reserve(store, clock, a) for _ in range(10)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 3, answers
    assert all(isinstance(x, CodeSendLimitExceeded) for x in answers if x is not None)


@pytest.mark.parametrize(("limit", "window"), [(0, WINDOW), (3, 0.0), (3, -1.0)])
async def test_a_meaningless_limit_is_a_caller_bug(
    store: Store, clock: Clock, limit: int, window: float
) -> None:
    with pytest.raises(ValueError, match="limit >= 1 and window > 0"):
        await store.reserve_code_sends([contact()], now=clock(), window=window, limit=limit)


TOMBSTONE_TRACE = re.compile(r"Read (\d+) live rows and (\d+) tombstone cells")


async def _traced(store: CassandraStore, call: Any) -> list[int]:
    """Tombstone cells each read of ``call`` met (from the request traces)."""
    store._db.traces = []
    try:
        await call
    finally:
        futures, store._db.traces = store._db.traces, None
    seen = []
    for future in futures:
        trace = await asyncio.to_thread(future.get_query_trace, 10.0)
        seen += [
            int(m.group(2))
            for e in trace.events
            if (m := TOMBSTONE_TRACE.search(e.description)) is not None
        ]
    return seen


@pytest.mark.cassandra
async def test_cassandra_counts_never_scan_expired_sends(cassandra_keyspace_url: str) -> None:
    """The count reads above ``now - window``: the sends whose TTL ran out
    lie below that bound, so a contact hammered for days costs no
    tombstone scans. Real time throughout: Cassandra's TTL runs on it."""
    store = open_store(cassandra_keyspace_url, StoreOptions())
    assert isinstance(store, CassandraStore)
    try:
        await store.migrate()
        a, window = contact(), 2.0
        for _ in range(40):
            await store.reserve_code_sends([a], now=time.time(), window=window, limit=1000)
        await asyncio.sleep(window + 1.5)
        seen = await _traced(
            store, store.reserve_code_sends([a], now=time.time(), window=window, limit=1000)
        )
        assert seen and all(t == 0 for t in seen), seen
        # Control: the same partition read without the bound meets them.
        table = cassandra_keyspace_url.rsplit("/", 1)[1].split("?")[0] + ".code_sends"
        control = await _traced(
            store,
            store._db.execute(
                f"SELECT sent_at FROM {table} WHERE contact_hash = ?", (a,), profile=KEYS
            ),
        )
        assert control and max(control) > 0, control
    finally:
        await store.close()


async def test_requesters_have_their_own_share_under_a_common_ceiling(
    store: Store, clock: Clock
) -> None:
    """Finding 6 of issue 16: one requester's sends use up its own share,
    not another's; the ceiling counts everyone's."""
    victim = contact()
    abuser, owner, third = os.urandom(32), os.urandom(32), os.urandom(32)

    async def send(requester: bytes) -> None:
        await store.reserve_code_sends(
            [victim], now=clock(), window=WINDOW, limit=5, requester=requester, requester_limit=2
        )

    await send(abuser)
    await send(abuser)
    with pytest.raises(CodeSendLimitExceeded) as share:
        await send(abuser)
    assert share.value.metadata["limit"] == "2"
    await send(owner)  # the owner's share is whole
    await send(owner)
    await send(third)  # five codes to the victim now: the ceiling
    with pytest.raises(CodeSendLimitExceeded) as ceiling:
        await send(os.urandom(32))
    assert ceiling.value.metadata["limit"] == "5"
    # A refusal recorded nothing: after the window the abuser has its share again.
    clock.advance(WINDOW + 1)
    await send(abuser)
    await send(abuser)
