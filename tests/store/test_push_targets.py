"""The push-target clause of the Store contract (``PushTargetStore``), on
every backend: put/replace/list/delete, the conditional delete that must
not remove a newer registration, and revocation taking the target along.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

from rossby.store import Store
from rossby.store.pushtargets import PushKind, PushTarget
from tests.store.conftest import Clock, new_id
from tests.store.test_contract import add_device, make_keys, new_box


def web(clock: Clock, **changes: object) -> PushTarget:
    base = PushTarget(
        box_id=new_id(),
        device_id=new_id(),
        kind=PushKind.WEB_PUSH,
        registered_at=clock(),
        endpoint="https://push.example.net/sub/" + os.urandom(8).hex(),
        p256dh=b"\x04" + os.urandom(64),
        auth=os.urandom(16),
        hint="acct-1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def gateway(clock: Clock, **changes: object) -> PushTarget:
    base = PushTarget(
        box_id=new_id(),
        device_id=new_id(),
        kind=PushKind.GATEWAY,
        registered_at=clock(),
        app_id="com.example.app",
        pushkey="tok-" + os.urandom(12).hex(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def by_device(targets: list[PushTarget]) -> dict[object, PushTarget]:
    return {t.device_id: t for t in targets}


async def test_put_list_and_every_field_round_trips(store: Store, clock: Clock) -> None:
    a = web(clock)
    b = gateway(clock, box_id=a.box_id)
    await store.put_push_target(a)
    await store.put_push_target(b)
    await store.put_push_target(web(clock))  # another box: not listed below
    found = by_device(await store.list_push_targets(a.box_id))
    assert found == {a.device_id: a, b.device_id: b}
    assert await store.list_push_targets(new_id()) == []


async def test_registering_again_replaces_the_target(store: Store, clock: Clock) -> None:
    first = web(clock)
    await store.put_push_target(first)
    clock.advance(1)
    second = gateway(clock, box_id=first.box_id, device_id=first.device_id, hint="h2")
    await store.put_push_target(second)
    assert await store.list_push_targets(first.box_id) == [second]


async def test_delete_is_idempotent_and_leaves_other_devices(store: Store, clock: Clock) -> None:
    a = web(clock)
    b = web(clock, box_id=a.box_id)
    await store.put_push_target(a)
    await store.put_push_target(b)
    await store.delete_push_target(a.box_id, a.device_id)
    await store.delete_push_target(a.box_id, a.device_id)
    await store.delete_push_target(a.box_id, new_id())  # never registered
    assert await store.list_push_targets(a.box_id) == [b]


async def test_gone_for_the_stored_registration_deletes_it(store: Store, clock: Clock) -> None:
    a = web(clock)
    await store.put_push_target(a)
    await store.delete_push_target(a.box_id, a.device_id, registered_at=a.registered_at)
    assert await store.list_push_targets(a.box_id) == []


async def test_gone_for_an_old_registration_keeps_the_new_one(store: Store, clock: Clock) -> None:
    """A push service answers "gone" for a subscription the device has
    replaced since: the new registration must survive."""
    old = web(clock)
    await store.put_push_target(old)
    clock.advance(0.25)
    new = dataclasses.replace(old, registered_at=clock(), endpoint=old.endpoint + "-new")
    await store.put_push_target(new)
    await store.delete_push_target(old.box_id, old.device_id, registered_at=old.registered_at)
    assert await store.list_push_targets(old.box_id) == [new]


async def test_old_gone_and_new_registration_racing_keep_the_new_one(
    store: Store, clock: Clock
) -> None:
    """Whatever order the two writes land in, only the old registration goes."""
    for _ in range(5):
        old = web(clock)
        await store.put_push_target(old)
        clock.advance(0.001)
        new = dataclasses.replace(old, registered_at=clock(), hint="new")
        await asyncio.gather(
            store.delete_push_target(old.box_id, old.device_id, registered_at=old.registered_at),
            store.put_push_target(new),
        )
        assert await store.list_push_targets(old.box_id) == [new]


async def test_a_registration_after_a_clear_is_kept(store: Store, clock: Clock) -> None:
    a = web(clock)
    await store.put_push_target(a)
    await store.delete_push_target(a.box_id, a.device_id)
    clock.advance(0.01)
    again = dataclasses.replace(a, registered_at=clock())
    await store.put_push_target(again)
    assert await store.list_push_targets(a.box_id) == [again]


async def test_revoking_a_device_removes_its_target(store: Store, clock: Clock) -> None:
    box, first = await new_box(store, clock)
    second = await add_device(store, box, clock.now + 1)
    mine = web(clock, box_id=box.box_id, device_id=first.device_id)
    theirs = gateway(clock, box_id=box.box_id, device_id=second.device_id)
    await store.put_push_target(mine)
    await store.put_push_target(theirs)
    await store.revoke_device(box.box_id, second.device_id)
    assert await store.list_push_targets(box.box_id) == [mine]
    await store.revoke_device(box.box_id, second.device_id)  # idempotent
    assert await store.list_push_targets(box.box_id) == [mine]


async def test_rotating_keys_keeps_the_target(store: Store, clock: Clock) -> None:
    """A rotated device is the same device (same app install): it stays woken."""
    box, first = await new_box(store, clock)
    mine = gateway(clock, box_id=box.box_id, device_id=first.device_id)
    await store.put_push_target(mine)
    await store.rotate_device_keys(box.box_id, first.device_id, make_keys())
    assert await store.list_push_targets(box.box_id) == [mine]
