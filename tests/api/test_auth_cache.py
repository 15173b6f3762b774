"""The authorization caches keep their promise (docs/security.md,
"Authorization caches"): a change takes effect at once on the server that
made it and within ``auth_cache_ttl`` on every other server of the store.

Two servers on one store stand for two processes (or regions): each has
its own caches. Each test first makes the other server *use* the old
state, so its cache holds it, then changes the state through the first.
A cache that outlived its TTL, or ignored the change on the server that
made it, fails these tests.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.client.hawk import HawkSigner
from rossby.server.authcache import ExpiringCache
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.api.test_accounts import link, revoke_request, set_rule, update_profile
from tests.support.clocks import FakeClock
from tests.support.grpc_errors import expect

C = grpc.StatusCode
TTL = 0.5


def via(device: Device, api: Api) -> Device:
    """The same device (same credentials) talking to another server."""
    assert device.signer is not None and device.box_id is not None
    other = copy.copy(device)
    other.api = api
    other.signer = HawkSigner(
        f"{device.box_id}.{device.device_id}",
        device.hawk_key,
        "127.0.0.1",
        api.server.port,
        clock=api.clock,
    )
    return other


async def outcome(sender: Device, box: uuid.UUID | None) -> tuple[int, str]:
    result = (await sender.send((str(box), b"hi", None))).results[0]
    return result.outcome, result.reason


QUEUED = (pb.SEND_OUTCOME_QUEUED, "")
REFUSED = (pb.SEND_OUTCOME_REJECTED, "NOT_FOUND")


async def sender_on_two_servers(
    make_api: Callable[..., Any], name: str
) -> tuple[Device, Device, Device]:
    """Alice, a sender, and the same sender on a second server; the sender
    has reached Alice through both, so both servers cache that it may."""
    a = await make_api(auth_cache_ttl=TTL)
    b = await make_api(auth_cache_ttl=TTL)
    alice = await Device(a, email("alice")).join()
    sender = await Device(a, email(name)).join()
    sender_b = via(sender, b)
    assert await outcome(sender, alice.box_id) == QUEUED
    assert await outcome(sender_b, alice.box_id) == QUEUED
    return alice, sender, sender_b


async def test_a_revoked_device_is_refused_everywhere_within_the_ttl(
    make_api: Callable[..., Any],
) -> None:
    a = await make_api(auth_cache_ttl=TTL)
    b = await make_api(auth_cache_ttl=TTL)
    phone = await Device(a, email("alice")).join()
    tablet = await link(a, phone)
    tablet_b = via(tablet, b)
    await tablet.fetch()  # both servers now hold the tablet's key
    await tablet_b.fetch()

    await phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse)
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet.fetch())  # at once, here
    await asyncio.sleep(TTL + 0.05)
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet_b.fetch())


async def test_without_a_cache_revocation_is_immediate_everywhere(
    make_api: Callable[..., Any],
) -> None:
    a = await make_api(auth_cache_ttl=TTL)
    b = await make_api(auth_cache_ttl=0)
    phone = await Device(a, email("alice")).join()
    tablet = await link(a, phone)
    tablet_b = via(tablet, b)
    await tablet_b.fetch()
    await phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse)
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet_b.fetch())


async def test_a_block_stops_sends_everywhere_within_the_ttl(
    make_api: Callable[..., Any],
) -> None:
    alice, bob, bob_b = await sender_on_two_servers(make_api, "bob")

    await set_rule(alice, bob.box_id, pb.SENDER_RULE_BLOCKED)
    assert await outcome(bob, alice.box_id) == REFUSED  # at once, here
    await asyncio.sleep(TTL + 0.05)
    assert await outcome(bob_b, alice.box_id) == REFUSED
    # Unblocking is never delayed: refusals are not cached.
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_NONE)
    assert await outcome(bob_b, alice.box_id) == QUEUED


async def test_contacts_only_stops_strangers_everywhere_within_the_ttl(
    make_api: Callable[..., Any],
) -> None:
    alice, carol, carol_b = await sender_on_two_servers(make_api, "carol")

    await update_profile(alice, accept_from=pb.ACCEPT_FROM_CONTACTS_ONLY)
    assert await outcome(carol, alice.box_id) == REFUSED
    await asyncio.sleep(TTL + 0.05)
    assert await outcome(carol_b, alice.box_id) == REFUSED


# -- the cache itself (no server) -------------------------------------------------


async def test_an_entry_lives_ttl_from_the_start_of_its_read() -> None:
    clock = FakeClock(100.0)
    cache: ExpiringCache[str, int] = ExpiringCache(1.0, clock=clock)
    loads = 0

    async def slow_load() -> int:
        nonlocal loads
        loads += 1
        clock.now += 0.75  # the read takes 0.75 s
        return loads

    assert await cache.get("k", slow_load, bool) == 1
    clock.now += 0.2  # 0.95 s after the read began: still fresh
    assert await cache.get("k", slow_load, bool) == 1
    clock.now += 0.1  # 1.05 s after it began: stale, though cached 0.3 s ago
    assert await cache.get("k", slow_load, bool) == 2


async def test_a_change_during_a_read_makes_its_answer_stale() -> None:
    clock = FakeClock(100.0)
    changed = -1.0
    cache: ExpiringCache[str, int] = ExpiringCache(10.0, clock=clock, changed_at=lambda k: changed)
    value = 1

    async def load() -> int:
        nonlocal changed
        clock.now += 0.1
        if value == 1:
            changed = clock.now  # the change lands while the first read is out
        return value

    assert await cache.get("k", load, bool) == 1
    value = 2
    assert await cache.get("k", load, bool) == 2


async def test_a_put_during_a_read_is_kept_over_the_older_answer() -> None:
    """The prekeys_low hint: an upload's fresh counts are ``put`` while a
    Fetch's read of the old counts is out; the read must not replace them."""
    clock = FakeClock(100.0)
    cache: ExpiringCache[str, str] = ExpiringCache(10.0, clock=clock)

    async def load() -> str:
        clock.now += 0.1
        cache.put("k", "new")  # lands while this read is out
        return "old"

    assert await cache.get("k", load, bool) == "old"  # the caller gets what it read
    assert cache.peek("k") == "new"
    clock.now += 10.0
    assert cache.peek("k") is None  # put entries expire like loaded ones


@pytest.mark.parametrize("answer", [0, None])
async def test_refusals_are_never_cached(answer: int | None) -> None:
    cache: ExpiringCache[str, int | None] = ExpiringCache(60.0)
    calls = 0

    async def load() -> int | None:
        nonlocal calls
        calls += 1
        return answer

    await cache.get("k", load, bool)
    await cache.get("k", load, bool)
    assert calls == 2
