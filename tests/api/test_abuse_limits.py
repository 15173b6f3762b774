"""Abuse limits on the unauthenticated RPCs, through a real channel on each
backend: codes per contact (kept in the store), Register calls and wrong
Authorize codes per client address (in process). docs/security.md, "Abuse
limits"."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from rossby.errors import ResourceExhausted
from rossby.server.ratelimit import RateLimit, client_address
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, contact, email, reason
from tests.support.grpc_errors import refused


def outbox(api: Api) -> dict[str, bytes]:
    """Every code file and its content: a code sent changes this."""
    root: Path = api.outbox
    if not root.exists():
        return {}
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def add_contact(dev: Device, value: str) -> pb.AddContactResponse:
    return await dev.call(
        "AddContact", pb.AddContactRequest(contact=contact(value)), pb.AddContactResponse
    )


# -- codes per contact -----------------------------------------------------------------


async def test_fresh_device_ids_cannot_pump_codes_to_one_contact(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(register_contact_limit=2, register_contact_window=600)
    victim = email("victim")
    for _ in range(2):
        await Device(api, victim).register()
    before = outbox(api)
    pump = Device(api, victim)
    metadata = await refused(pump.register(), "CONTACT_RATE_LIMITED")
    assert metadata["limit"] == "2"
    assert 590 <= int(metadata["retry_after_seconds"]) <= 600
    # Nothing sent, nothing written.
    assert outbox(api) == before
    assert await api.store.get_registration(pump.device_id) is None
    # A Register that also names the limited contact is refused whole.
    other = email("other")
    both = Device(api, other, victim)
    await refused(both.register(), "CONTACT_RATE_LIMITED")
    assert outbox(api) == before
    assert await api.store.get_registration(both.device_id) is None
    # The other contact's quota is untouched by the refusal.
    await Device(api, other).register()
    await Device(api, other).register()
    await refused(Device(api, other).register(), "CONTACT_RATE_LIMITED")


async def test_the_contact_limit_frees_after_the_window(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(register_contact_limit=1, register_contact_window=600)
    victim = email("victim")
    await Device(api, victim).register()
    await refused(Device(api, victim).register(), "CONTACT_RATE_LIMITED")
    api.clock.advance(601)
    late = Device(api, victim)
    await late.register()
    await late.authorize()  # the code that went out is the one the outbox holds


async def test_the_contact_limit_holds_across_server_processes(
    make_api: Callable[..., Any],
) -> None:
    one: Api = await make_api(register_contact_limit=1)
    two: Api = await make_api(register_contact_limit=1)
    victim = email("victim")
    await Device(one, victim).register()
    await refused(Device(two, victim).register(), "CONTACT_RATE_LIMITED")


async def test_a_resend_counts_against_the_contact(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(register_contact_limit=2, resend_interval=1)
    device = Device(api, email("resend"))
    await device.register()
    api.clock.advance(2)
    await device.register()  # the resend: a second code
    api.clock.advance(2)
    await refused(device.register(), "CONTACT_RATE_LIMITED")
    registration = await api.store.get_registration(device.device_id)
    assert registration is not None and registration.sent_at < api.clock() - 1


async def test_add_contact_shares_the_contact_ceiling(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(register_contact_limit=1, register_contact_ceiling=1)
    owner = await Device(api, email("owner")).join()
    target = email("target")
    await Device(api, target).register()  # someone else's pending registration
    before = outbox(api)
    await refused(add_contact(owner, target), "CONTACT_RATE_LIMITED")
    assert outbox(api) == before
    api.clock.advance(3601)  # the default window
    await add_contact(owner, target)


# -- per client address ----------------------------------------------------------------


async def test_register_calls_per_address_are_limited(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(register_rate_per_address="3/hour")
    await Device(api, email("a")).register()
    bad = Device(api, "not-an-address")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await bad.register()
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # counted all the same
    await Device(api, email("b")).register()
    before = outbox(api)
    late = Device(api, email("c"))
    metadata = await refused(late.register(), "ADDRESS_RATE_LIMITED")
    assert metadata["limit"] == "3 per 1 hour"
    assert outbox(api) == before
    assert await api.store.get_registration(late.device_id) is None
    # Another process counts on its own (the documented per-process caveat).
    other: Api = await make_api(register_rate_per_address="3/hour")
    await Device(other, email("d")).register()


async def test_wrong_codes_per_address_are_limited(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(authorize_failures_per_address="2/hour")
    # Right codes never count.
    for _ in range(3):
        await Device(api, email("honest")).join()
    guesser = Device(api, email("guess"))
    await guesser.register()
    right = guesser.codes()
    wrong = [f"{(int(right[0]) + 1) % 10**6:06d}"]
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as miss:
            await guesser.authorize(wrong)
        assert reason(miss.value) == "CODE_INVALID"
    # Out of budget: refused before the code is even looked at, right or not.
    await refused(guesser.authorize(right), "ADDRESS_RATE_LIMITED")
    registration = await api.store.get_registration(guesser.device_id)
    assert registration is not None and registration.attempts == 2
    assert not registration.completed
    # Another registration from the same address is refused too.
    other = Device(api, email("other"))
    await other.register()
    await refused(other.authorize(), "ADDRESS_RATE_LIMITED")


async def test_a_bad_signature_counts_as_a_wrong_code(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(authorize_failures_per_address="1/hour")
    device = Device(api, email("sig"))
    await device.register()
    request = device.authorize_request()
    request.signature = bytes(64)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await device.public("Authorize", request, pb.AuthorizeResponse)
    assert reason(bad.value) == "BAD_SIGNATURE"
    await refused(device.authorize(), "ADDRESS_RATE_LIMITED")


# -- the address key, the check, the documentation ------------------------------------


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:203.0.113.7:50123", "203.0.113.7"),
        # gRPC percent-encodes the brackets of IPv6 peers.
        ("ipv6:%5B2001:db8:1:2:aaaa:bbbb:cccc:dddd%5D:443", "2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2::1]:443", "2001:db8:1:2::/64"),
        ("ipv6:%5B::ffff:203.0.113.7%5D:443", "203.0.113.7"),  # dual-stack listener
        ("unix:/run/rossby.sock", "unix:/run/rossby.sock"),
        ("ipv4:not-an-ip:1", "ipv4:not-an-ip:1"),
    ],
)
def test_client_address_keys(peer: str, key: str) -> None:
    assert client_address(peer) == key


def test_one_host_cannot_rotate_through_its_ipv6_prefix() -> None:
    one = client_address("ipv6:%5B2001:db8:5:6::1%5D:1")
    assert one == client_address("ipv6:%5B2001:db8:5:6:ffff:ffff:ffff:fffe%5D:2")
    assert one != client_address("ipv6:%5B2001:db8:5:7::1%5D:1")


async def test_check_counts_nothing() -> None:
    limit = RateLimit("t", "2/hour", reason="ADDRESS_RATE_LIMITED")
    for _ in range(5):
        await limit.check("k")
    await limit.hit("k")
    await limit.hit("k")
    with pytest.raises(ResourceExhausted) as full:
        await limit.check("k")
    assert full.value.reason == "ADDRESS_RATE_LIMITED"
    assert int(full.value.metadata["retry_after_seconds"]) >= 1
    await limit.check("other")


def test_reasons_are_in_the_api_reason_table() -> None:
    table = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for name in ("CONTACT_RATE_LIMITED", "ADDRESS_RATE_LIMITED"):
        assert f"| RESOURCE_EXHAUSTED | `{name}` |" in table
    assert "| UNAVAILABLE | `ATTEMPT_CONTENDED` |" in table


# -- off -------------------------------------------------------------------------------


async def test_zero_turns_each_limit_off(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(
        register_contact_limit=0,
        register_contact_ceiling=0,
        register_rate_per_address="0",
        authorize_failures_per_address="0",
        code_attempts=100,
        resend_interval=0.001,
    )
    # More than each default: 5 codes per contact, 30 Registers and 30 wrong
    # codes per address an hour.
    victim = email("victim")
    for _ in range(7):
        await Device(api, victim).register()
    device = Device(api, email("many"))
    for _ in range(25):
        await device.register()  # resends
    right = device.codes()
    wrong = [f"{(int(right[0]) + 1) % 10**6:06d}"]
    for _ in range(31):
        with pytest.raises(grpc.aio.AioRpcError) as miss:
            await device.authorize(wrong)
        assert reason(miss.value) == "CODE_INVALID"
    await device.authorize(right)
    assert device.box_id is not None and isinstance(device.box_id, uuid.UUID)
