"""Idle devices through a real channel, on both backends (docs/security.md,
"Idle devices"): the owner's other device is warned in Fetch, then the
server unlinks the idle one (an IDLE_UNLINK key-log entry the client's
check accepts), which then no longer exists for anyone."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api, MakeApi
from tests.api.device import Device, email
from tests.api.test_accounts import key_log, link, request_key_by_box, verified
from tests.support.grpc_errors import expect

C = grpc.StatusCode
DAY = 86400.0


async def settle(api: Api) -> None:
    """Let the background records (last_seen writes) of the calls so far land."""
    service = api.server.service
    assert service is not None and service.activity is not None
    for _ in range(100):
        if not service.activity._tasks:
            return
        await asyncio.sleep(0.01)


async def test_an_idle_device_is_warned_about_then_unlinked(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    tablet = await link(api, phone)
    await tablet.fetch()  # its last signed call
    await settle(api)
    assert phone.box_id is not None
    api.clock.advance(37 * DAY)
    reply = await phone.fetch()
    assert list(reply.idle_devices) == []  # not yet inside the week before
    await settle(api)
    api.clock.advance(2 * DAY)  # 39 days idle: within 7 days of 45
    reply = await phone.fetch()
    (warning,) = reply.idle_devices
    assert warning.device_id == str(tablet.device_id) and warning.device_name == "tablet"
    assert warning.unlink_at_ms - warning.last_seen_ms == 45 * DAY * 1000
    assert warning.unlink_at_ms > api.clock() * 1000
    queued = await bob.send((phone.box_id, b"one", None))
    await settle(api)
    api.clock.advance(7 * DAY)  # 46 days
    keys = await bob.request_key(phone.contacts[0])
    assert [d.device_id for d in keys.devices] == [str(phone.device_id)]
    log = await key_log(bob, phone.box_id)
    last = log.entries[-1]
    assert last.kind == pb.KEY_CHANGE_KIND_IDLE_UNLINK
    assert last.device_id == str(tablet.device_id) and last.actor_device_id == ""
    assert keys.key_log.seq == log.head.seq == last.seq and keys.key_log.hash == last.hash
    # The client's replay (hash chain, rules) accepts it and the key set shrank.
    state = verified(phone.box_id, list(log.entries))
    assert set(state.devices) == {phone.device_id} and state.retired == {tablet.device_id}
    # Its credentials are refused like a revoked device's.
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet.fetch())
    # Its cursor no longer holds compaction back.
    store = api.store
    acked = await phone.ack(queued.results[0].position)
    done = await store.compact(phone.box_id)
    assert done.purged_through == acked.cursor - store.settle_window
    # The phone is no longer warned about anything.
    assert list((await phone.fetch()).idle_devices) == []


async def test_the_idle_device_is_never_warned_about_to_itself(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    tablet = await link(api, phone)
    await settle(api)
    api.clock.advance(40 * DAY)
    # Both idle for 40 days; the tablet, linked last, is the one kept, and
    # calling now it hears only of the phone.
    warned = (await tablet.fetch()).idle_devices
    assert [w.device_id for w in warned] == [str(phone.device_id)]
    await settle(api)
    # The phone, calling, is active again and hears of nobody (the tablet is
    # the box's other device and not idle).
    assert list((await phone.fetch()).idle_devices) == []
    await settle(api)
    assert list((await tablet.fetch()).idle_devices) == []  # the phone came back


async def test_zero_disables(make_api: MakeApi) -> None:
    api = await make_api(device_idle_days=0)
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    tablet = await link(api, phone)
    await settle(api)
    api.clock.advance(400 * DAY)
    assert list((await phone.fetch()).idle_devices) == []
    keys = await bob.request_key(phone.contacts[0])
    assert {d.device_id for d in keys.devices} == {str(phone.device_id), str(tablet.device_id)}
    await tablet.fetch()


async def test_the_most_recently_seen_device_is_never_unlinked(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    assert phone.box_id is not None
    await settle(api)
    api.clock.advance(100 * DAY)
    # A lone device, idle for 100 days, stays.
    keys = await bob.request_key(phone.contacts[0])
    assert [d.device_id for d in keys.devices] == [str(phone.device_id)]
    # Two devices both idle: the one seen last stays.
    tablet = await link(api, phone)
    await tablet.fetch()
    await settle(api)
    api.clock.advance(100 * DAY)
    keys = await bob.request_key(phone.contacts[0])
    assert [d.device_id for d in keys.devices] == [str(tablet.device_id)]
    await tablet.fetch()


async def test_two_processes_unlinking_at_once_append_one_entry(make_api: MakeApi) -> None:
    one, two = await make_api(), await make_api()
    phone = await Device(one, email("alice")).join()
    bob = await Device(one, email("bob")).join()
    carol = await Device(two, email("carol")).join()
    tablet = await link(one, phone)
    await settle(one)
    one.clock.advance(DAY)
    two.clock.advance(DAY)
    await phone.fetch()  # the phone is the box's most recently seen device
    for api in (one, two):
        await settle(api)
        api.clock.advance(46 * DAY)
    # Each process finds the tablet due in the same moment.
    answers = await asyncio.gather(
        *(caller.request_key(phone.contacts[0]) for caller in (bob, carol, bob, carol))
    )
    for keys in answers:
        assert [d.device_id for d in keys.devices] == [str(phone.device_id)]
    log = await key_log(bob, phone.box_id)
    unlinks = [e for e in log.entries if e.kind == pb.KEY_CHANGE_KIND_IDLE_UNLINK]
    assert len(unlinks) == 1 and unlinks[0].device_id == str(tablet.device_id)
    verified(phone.box_id, list(log.entries))  # and the chain still verifies
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet.fetch())
    assert (await request_key_by_box(phone, phone.box_id)).key_log.seq == log.head.seq


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
