"""Conformance: a device's ``last_seen`` (``Store.record_device_seen``), on
both backends. It drives idle-device unlinking (docs/security.md, "Idle
devices"), so the one property that matters is that it only ever grows."""

from __future__ import annotations

import asyncio
import dataclasses

from rossby.store import DeviceState, Store
from tests.store.conftest import Clock
from tests.store.test_contract import DAY, add_device, make_device, new_box


async def test_a_new_device_is_seen_at_its_creation(store: Store, clock: Clock) -> None:
    box, first = await new_box(store, clock)
    second = await add_device(store, box, clock.now + 5)
    got = await store.get_device(box.box_id, first.device_id)
    assert got is not None and got.last_seen == first.created_at
    listed = {d.device_id: d.last_seen for d in await store.list_devices(box.box_id)}
    assert listed == {first.device_id: first.created_at, second.device_id: clock.now + 5}


async def test_a_device_built_without_last_seen_is_seen_at_creation(
    store: Store, clock: Clock
) -> None:
    box, _ = await new_box(store, clock)
    device = dataclasses.replace(make_device(box.box_id, clock.now + 7), last_seen=None)
    await store.add_device(device)
    got = await store.get_device(box.box_id, device.device_id)
    assert got is not None and got.last_seen == clock.now + 7


async def test_record_device_seen_moves_it_forward(store: Store, clock: Clock) -> None:
    box, device = await new_box(store, clock)
    await store.record_device_seen(box.box_id, device.device_id, clock.now + DAY)
    got = await store.get_device(box.box_id, device.device_id)
    assert got is not None and got.last_seen == clock.now + DAY
    (listed,) = await store.list_devices(box.box_id)
    assert listed.last_seen == clock.now + DAY
    # Nothing else of the device changed.
    assert dataclasses.replace(got, last_seen=device.last_seen) == dataclasses.replace(
        device, created_at=got.created_at
    )


async def test_an_older_record_never_moves_it_back(store: Store, clock: Clock) -> None:
    box, device = await new_box(store, clock)
    await store.record_device_seen(box.box_id, device.device_id, clock.now + 2 * DAY)
    await store.record_device_seen(box.box_id, device.device_id, clock.now + DAY)
    got = await store.get_device(box.box_id, device.device_id)
    assert got is not None and got.last_seen == clock.now + 2 * DAY


async def test_concurrent_records_keep_the_latest(store: Store, clock: Clock) -> None:
    box, device = await new_box(store, clock)
    times = [clock.now + i * 3600.0 for i in range(1, 21)]
    # Latest first, so arrival order and time order disagree.
    await asyncio.gather(
        *(store.record_device_seen(box.box_id, device.device_id, t) for t in reversed(times))
    )
    got = await store.get_device(box.box_id, device.device_id)
    assert got is not None and got.last_seen == max(times)


async def test_a_revoked_device_stays_revoked_when_recorded(store: Store, clock: Clock) -> None:
    box, first = await new_box(store, clock)
    second = await add_device(store, box, clock.now)
    await store.revoke_device(box.box_id, second.device_id)
    await store.record_device_seen(box.box_id, second.device_id, clock.now + DAY)
    got = await store.get_device(box.box_id, second.device_id)
    assert got is not None and got.state is DeviceState.REVOKED
    assert [d.device_id for d in await store.list_devices(box.box_id)] == [first.device_id]
