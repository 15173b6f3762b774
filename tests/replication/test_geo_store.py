"""The store across two datacenters: home routing, the fence after a move,
recovery and reconcile, and contact claims racing from both regions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rossby.store import Box, Device, DeviceKeys, DeviceState, NewMessage, StoreOptions, open_store
from rossby.store.cassandra import CassandraStore
from tests.replication.conftest import Regions
from tests.serverproc import rossby

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]


@pytest.fixture
def dc_ip(regions: Regions) -> dict[str, str]:
    """Each datacenter's node address, as the cluster was started (no fixed IPs)."""
    return {dc: regions.cluster.hosts(dc)[0].rsplit(":", 1)[0] for dc in ("dc1", "dc2")}


@pytest.fixture
async def stores(regions: Regions) -> AsyncIterator[Callable[..., CassandraStore]]:
    opened: list[CassandraStore] = []

    def make(dc: str, **params: str) -> CassandraStore:
        store = open_store(regions.url(dc, **params), StoreOptions())
        assert isinstance(store, CassandraStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def _device(box_id: uuid.UUID) -> Device:
    return Device(
        box_id=box_id,
        device_id=uuid.uuid4(),
        name="phone",
        keys=DeviceKeys(b"e" * 32, b"s" * 32, b"k" * 64),
        hawk_key=b"h" * 32,
        state=DeviceState.ACTIVE,
        created_at=time.time(),
    )


async def _box(store: CassandraStore, home: str) -> Device:
    box_id = uuid.uuid4()
    device = _device(box_id)
    await store.create_box(Box(box_id, home, time.time()), device)
    return device


def _message(sender: Device) -> NewMessage:
    return NewMessage(uuid.uuid4(), sender.box_id, sender.device_id, b"ciphertext")


async def _coordinators(store: CassandraStore, action: Any) -> set[str]:
    """The coordinators of every request ``action`` sent (query tracing)."""
    store._db.traces = []
    try:
        await action
        futures = list(store._db.traces)
    finally:
        store._db.traces = None

    def fetch_all() -> set[str]:
        return {str(f.get_query_trace(max_wait=10).coordinator) for f in futures}

    return await asyncio.to_thread(fetch_all)


async def test_queue_operations_are_coordinated_in_the_home_dc(
    stores: Callable[..., CassandraStore], dc_ip: dict[str, str]
) -> None:
    east, west = stores("dc1"), stores("dc2")
    alice = await _box(east, "dc1")  # homed in dc1
    sender = await _box(west, "dc2")
    assert await west.home_of(alice.box_id) == "dc1"
    message = _message(sender)
    # A server in dc2 sends to a dc1 box: every queue request goes to dc1.
    assert await _coordinators(west, west.enqueue(alice.box_id, message)) == {dc_ip["dc1"]}
    # So dc1 reads it at once, with no cross-DC replication in between.
    page = await east.fetch(alice.box_id, alice.device_id)
    assert [m.message_id for m in page.messages] == [message.message_id]
    # Reads and acks from dc2 are coordinated in dc1 too.
    assert await _coordinators(west, west.fetch(alice.box_id, alice.device_id)) == {dc_ip["dc1"]}
    position = page.messages[0].position
    assert await _coordinators(west, west.ack(alice.box_id, alice.device_id, position)) == {
        dc_ip["dc1"]
    }
    # Keys are read in the server's own DC.
    assert await _coordinators(west, west.list_devices(alice.box_id)) == {dc_ip["dc2"]}


async def test_contact_claims_race_across_regions_with_one_winner(
    stores: Callable[..., CassandraStore],
) -> None:
    east, west = stores("dc1"), stores("dc2")
    for _ in range(5):
        contact = uuid.uuid4().bytes * 2
        boxes = [uuid.uuid4() for _ in range(8)]
        answers = await asyncio.gather(
            *((east if i % 2 else west).claim_contact(contact, box) for i, box in enumerate(boxes))
        )
        winners = set(answers)
        assert len(winners) == 1, answers
        (winner,) = winners
        assert winner in boxes
        # Every box that asked learns the one winner, in either region.
        assert await east.lookup_contact(contact) == winner
        assert await west.lookup_contact(contact) == winner


async def test_move_home_fences_stale_routes_then_reconciles(
    stores: Callable[..., CassandraStore], regions: Regions, dc_ip: dict[str, str]
) -> None:
    fast = {"settle_ms": "1000", "request_timeout_ms": "500"}
    east, west, admin = stores("dc1", **fast), stores("dc2", **fast), stores("dc1", **fast)
    alice = await _box(east, "dc1")
    sender = await _box(east, "dc1")
    first = _message(sender)
    await east.enqueue(alice.box_id, first)
    assert await east.home_of(alice.box_id) == "dc1"  # cached in `east`

    record = await admin.move_home(alice.box_id, "dc2")
    assert (record.home_region, record.epoch) == ("dc2", 1)
    assert record.recovering
    for dc in ("dc1", "dc2"):  # a planned move is written in every DC at once
        seen = await admin.home_record(alice.box_id, dc)
        assert seen is not None and seen.home_region == "dc2"

    # `east` still believes dc1; the fence re-routes it before it writes.
    second = _message(sender)
    await east.enqueue(alice.box_id, second)
    assert await east.home_of(alice.box_id) == "dc2"
    assert await _coordinators(east, east.enqueue(alice.box_id, _message(sender))) == {dc_ip["dc2"]}

    await asyncio.sleep(1.2)  # one settle window later
    late = _message(sender)
    await west.enqueue(alice.box_id, late)
    page = await west.fetch(alice.box_id, alice.device_id)
    ids = [m.message_id for m in page.messages]
    assert ids[:2] == [first.message_id, second.message_id] and ids[-1] == late.message_id
    await west.ack(alice.box_id, alice.device_id, page.messages[-1].position)
    # Recovering: Fetch re-reads from the recovery floor, far below the
    # cursor's settle window (repeats, never gaps).
    again = await west.fetch(alice.box_id, alice.device_id)
    assert [m.message_id for m in again.messages] == ids
    # Compaction stays at or below the floor while recovering.
    compaction = await west.compact(alice.box_id)
    assert compaction.purged_through <= record.recovery_floor

    done = await admin.reconcile_home(alice.box_id, wait=False)
    assert done.cleared and done.sources == ("dc1",) and done.copied >= 1
    after = await admin.home_record(alice.box_id, "dc2")
    assert after is not None and not after.recovering and after.epoch == 1
    # Recovery over: only the settle window below the cursor is re-read.
    tail = await west.fetch(alice.box_id, alice.device_id)
    assert [m.message_id for m in tail.messages] == [late.message_id]
    # A second reconcile has nothing to do.
    assert not (await admin.reconcile_home(alice.box_id, wait=False)).cleared
    # The operator's view: the home as each DC holds it.
    shown = await asyncio.to_thread(
        rossby, "admin", "--store", regions.url("dc1"), "home", str(alice.box_id)
    )
    assert shown.returncode == 0, shown.stderr
    assert "dc1: home=dc2 epoch=1 settled" in shown.stdout
    assert "dc2: home=dc2 epoch=1 settled" in shown.stdout


async def test_a_move_to_an_unknown_region_is_refused(
    stores: Callable[..., CassandraStore],
) -> None:
    east = stores("dc1")
    alice = await _box(east, "dc1")
    with pytest.raises(Exception, match="holds no replicas"):
        await east.move_home(alice.box_id, "dc9")
