"""A third party cannot block someone's sign-up (issue 16, finding 6),
through real channels on each backend.

* Codes per contact are counted per requester (a client address for
  Register) with a higher ceiling for everyone: the abuser's Registers of
  the victim's contact use up the abuser's share, and the owner, from
  another address, still registers and authorizes. The server listens on
  both loopbacks, so 127.0.0.1 and ::1 are two requesters.
* Wrong codes are limited per registration; the per-address ceiling is high
  enough for a carrier NAT: an abuser behind the owner's address spending
  every attempt of several registrations (30 wrong codes, the old per-address
  budget) does not stop the owner behind the same address.
* The limits still bite the abuser.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email, reason


@pytest.fixture
async def dual(make_api: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start a server on [::] and answer (the API over 127.0.0.1, the same
    API over ::1): two client addresses on one machine."""
    opened: list[grpc.aio.Channel] = []

    async def make(**settings: Any) -> tuple[Api, Api]:
        api: Api = await make_api(listen="[::]:0", **settings)
        v6 = copy.copy(api)
        v6.channel = grpc.aio.insecure_channel(f"[::1]:{api.server.port}")
        opened.append(v6.channel)
        return api, v6

    yield make
    for channel in opened:
        await channel.close()


async def refused_with(call: Any, want: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert reason(err.value) == want, err.value.details()


async def test_a_third_partys_registers_do_not_lock_the_owner_out(
    dual: Callable[..., Any],
) -> None:
    abuser_api, owner_api = await dual(register_contact_limit=5)
    victim = email("victim")
    for _ in range(5):  # the old lock-out: five codes to the victim in an hour
        await Device(abuser_api, victim).register()
    # The limit bites the abuser ...
    await refused_with(Device(abuser_api, victim).register(), "CONTACT_RATE_LIMITED")
    # ... not the owner, from another address.
    owner = Device(owner_api, victim)
    await owner.register()
    await owner.authorize()
    assert owner.box_id is not None


async def test_the_ceiling_for_one_contact_still_holds_for_everyone(
    dual: Callable[..., Any],
) -> None:
    one, two = await dual(register_contact_limit=3, register_contact_ceiling=5)
    victim = email("bombed")
    for _ in range(3):
        await Device(one, victim).register()
    await refused_with(Device(one, victim).register(), "CONTACT_RATE_LIMITED")
    for _ in range(2):
        await Device(two, victim).register()
    # Five codes from anyone: the ceiling refuses both addresses now.
    await refused_with(Device(two, victim).register(), "CONTACT_RATE_LIMITED")
    await refused_with(Device(one, victim).register(), "CONTACT_RATE_LIMITED")


async def test_wrong_codes_behind_one_nat_address_do_not_block_the_owner(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api()  # the defaults; every client is 127.0.0.1
    spent = []
    for _ in range(6):  # 6 x 5 = 30 wrong codes: the old per-address budget
        abuser = Device(api, email("abuser"))
        await abuser.register()
        right = abuser.codes()[0]
        wrong = f"{(int(right) + 1) % 10**6:06d}"
        for _ in range(5):
            await refused_with(abuser.authorize([wrong]), "CODE_INVALID")
        spent.append((abuser, right))
    # Each of the abuser's registrations is spent, even for its right code.
    for abuser, right in spent:
        await refused_with(abuser.authorize([right]), "TOO_MANY_ATTEMPTS")
    # The owner behind the same address signs up all the same.
    owner = Device(api, email("owner"))
    await owner.register()
    await owner.authorize()
    profile = await owner.call("GetProfile", pb.GetProfileRequest(), pb.GetProfileResponse)
    assert profile.contact_count == 1


async def test_the_requester_share_holds_with_the_ceiling_off(dual: Callable[..., Any]) -> None:
    abuser_api, owner_api = await dual(register_contact_limit=2, register_contact_ceiling=0)
    victim = email("victim")
    for _ in range(2):
        await Device(abuser_api, victim).register()
    await refused_with(Device(abuser_api, victim).register(), "CONTACT_RATE_LIMITED")
    for _ in range(2):
        await Device(owner_api, victim).register()
    await refused_with(Device(owner_api, victim).register(), "CONTACT_RATE_LIMITED")
