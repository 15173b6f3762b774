"""The presence clauses of the Store contract, on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from rossby.store import Store
from rossby.store.base import Presence
from tests.store.conftest import Clock, new_id
from tests.support.backends import purged


def row(store: Store, clock: Clock, **changes: Any) -> Presence:
    base = Presence(
        box_id=new_id(),
        device_id=new_id(),
        server_id="server-a",
        address="10.0.0.1:1205",
        region="dc1",
        since=clock(),
        expires_at=clock() + 30,
    )
    return dataclasses.replace(base, **changes)


async def test_put_list_delete(store: Store, clock: Clock) -> None:
    a = row(store, clock)
    b = dataclasses.replace(a, server_id="server-b", address="10.0.0.2:1205")
    other_device = dataclasses.replace(a, device_id=new_id())
    for p in (a, b, other_device):
        await store.put_presence(p)
    await store.put_presence(row(store, clock))  # another box: not listed below
    found = sorted(
        await store.list_presence(a.box_id), key=lambda p: (str(p.device_id), p.server_id)
    )
    want = sorted([a, b, other_device], key=lambda p: (str(p.device_id), p.server_id))
    assert [(p.device_id, p.server_id, p.address, p.region) for p in found] == [
        (p.device_id, p.server_id, p.address, p.region) for p in want
    ]
    for p in found:
        assert abs(p.expires_at - (clock() + 30)) < 2.5
        assert abs(p.since - a.since) < 0.01
    await store.delete_presence(a.box_id, a.device_id, "server-a")
    await store.delete_presence(a.box_id, a.device_id, "server-a")  # idempotent
    left = {(p.device_id, p.server_id) for p in await store.list_presence(a.box_id)}
    assert left == {(b.device_id, "server-b"), (other_device.device_id, "server-a")}
    assert await store.list_presence(new_id()) == []


async def test_a_refresh_replaces_the_row_and_extends_it(store: Store, clock: Clock) -> None:
    a = row(store, clock, expires_at=clock() + 5)
    await store.put_presence(a)
    await store.put_presence(
        dataclasses.replace(a, address="10.0.0.9:1300", expires_at=clock() + 60)
    )
    (found,) = await store.list_presence(a.box_id)
    assert found.address == "10.0.0.9:1300"
    assert found.expires_at > clock() + 50


async def test_rows_expire_by_themselves(store: Store, clock: Clock, backend: str) -> None:
    short = row(store, clock, expires_at=clock() + 1)
    long = dataclasses.replace(short, server_id="server-b", expires_at=clock() + 60)
    await store.put_presence(short)
    await store.put_presence(long)
    # SQLite compares with the store's clock; Cassandra's TTL runs in real time.
    clock.advance(2)
    await asyncio.sleep(2.2)
    assert [p.server_id for p in await store.list_presence(short.box_id)] == ["server-b"]
    # The expired row is deleted here, or was by the backend itself (then 0).
    assert await store.purge_presence() == purged(backend, 1)
    assert [p.server_id for p in await store.list_presence(short.box_id)] == ["server-b"]
