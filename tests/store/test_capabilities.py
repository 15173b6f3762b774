"""The capabilities each backend declares, checked against what it does.

A backend that declares a capability passes that capability's test; one
that declines it is skipped with its own reason, or (where the contract has
a call for it) refuses with the typed ``Unsupported`` error.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import grpc
import pytest

from rossby.errors import FailedPrecondition
from rossby.replication.homes import HomeRegions
from rossby.status import status_code
from rossby.store import Store
from rossby.store.base import Presence
from rossby.store.capabilities import Capabilities, Capability, Unsupported
from rossby.store.prekeys import Prekey, PrekeyUpload
from tests.store.conftest import Clock
from tests.store.test_contract import make_message, new_box, send


def require(capability: Capability) -> None:
    if not capability:
        pytest.skip(f"declined by this backend: {capability.reason}")


def test_every_capability_is_declared_with_a_reason(store: Store) -> None:
    assert isinstance(store.capabilities, Capabilities)
    names = [f.name for f in dataclasses.fields(Capabilities)]
    assert [name for name, _ in store.capabilities.items()] == names
    for name, capability in store.capabilities.items():
        assert isinstance(capability, Capability), name
        assert len(capability.reason) > 10, name


def test_ordered_visibility_is_a_zero_settle_window(store: Store) -> None:
    assert bool(store.capabilities.ordered_visibility) == (store.settle_window == 0)


async def test_home_regions_are_offered_or_refused_with_a_typed_error(store: Store) -> None:
    if store.capabilities.home_regions:
        homes = store.home_regions()
        assert isinstance(homes, HomeRegions)
        assert homes.datacenters
        return
    with pytest.raises(Unsupported) as refused:
        store.home_regions()
    assert isinstance(refused.value, FailedPrecondition)
    assert refused.value.reason == "NOT_REPLICATED"
    assert status_code(refused.value) is grpc.StatusCode.FAILED_PRECONDITION


async def test_compaction_reports_the_rows_it_removed(store: Store, clock: Clock) -> None:
    box, device = await new_box(store, clock)
    sent = await send(store, box, 3)
    await store.ack(box.box_id, device.device_id, sent[-1][0])
    done = await store.compact(box.box_id)
    if store.capabilities.counts_compacted_rows:
        assert done.removed == 3
    else:
        assert done.removed is None


async def test_without_native_expiry_housekeeping_removes_expired_rows(
    store: Store, clock: Clock
) -> None:
    if store.capabilities.native_expiry:
        pytest.skip(f"rows expire by themselves: {store.capabilities.native_expiry.reason}")
    box, _ = await new_box(store, clock)
    await send(store, box, 2)
    clock.advance(store.options.message_ttl + 1)
    assert await store.purge_expired() == 2


async def test_exact_enqueue_stores_one_copy_of_racing_attempts(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    one, two = make_store(), make_store()
    require(one.capabilities.exact_enqueue)
    box, _ = await new_box(one, clock)
    message = make_message()
    first, second = await one.enqueue(box.box_id, message), await two.enqueue(box.box_id, message)
    assert first.position == second.position
    assert second.duplicate
    assert await one.pending_count(box.box_id) == 1


async def test_presence_rows_are_kept(store: Store, clock: Clock) -> None:
    require(store.capabilities.presence)
    row = Presence(
        box_id=uuid.uuid4(),
        device_id=uuid.uuid4(),
        server_id="s1",
        address="127.0.0.1:1",
        region="dc1",
        since=clock.now,
        expires_at=clock.now + 60,
    )
    await store.put_presence(row)
    assert [p.server_id for p in await store.list_presence(row.box_id)] == ["s1"]


async def test_one_prekey_pool_is_emptied_before_any_last_resort_answer(store: Store) -> None:
    """Declared: every one-time key is handed out before the last-resort
    key is. Declined (per-region shares): the lowest share is reported, and
    it is never above the total."""
    box, device = uuid.uuid4(), uuid.uuid4()
    upload = PrekeyUpload(
        signed_prekey=Prekey(1, bytes(32), bytes(64)),
        one_time_kem_prekeys=[Prekey(i, bytes(1184), bytes(64)) for i in range(4)],
        last_resort_kem_prekey=Prekey(9, bytes(1184), bytes(64)),
    )
    counts = await store.put_prekeys(box, device, upload, pool_max=10)
    assert counts.lowest_one_time_kem_prekeys <= counts.one_time_kem_prekeys == 4
    require(store.capabilities.global_prekey_pools)
    assert counts.lowest_one_time_kem_prekeys == 4
    answers = [b for _ in range(5) for b in await store.claim_prekeys(box, [device])]
    assert [b.kem_last_resort for b in answers] == [False] * 4 + [True]
