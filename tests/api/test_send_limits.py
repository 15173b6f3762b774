"""Per-device abuse limits on the signed RPCs, through a real channel on each
backend: ``send_rate_per_device`` (a Send costs its recipients) and
``account_rate_per_device``. docs/security.md, "Rate limits and abuse"."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.contacts import normalize
from rossby.server.notify import read_outbox_code
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, contact, email, reason
from tests.api.test_accounts import approve, complete, create_offer, join, link, revoke_request
from tests.support.grpc_errors import refused


async def people(api: Api, *names: str) -> list[Device]:
    return [await Device(api, email(name)).join() for name in names]


async def held(device: Device) -> set[str]:
    """The message ids waiting for ``device`` (deduplicated, acked)."""
    return {m.message_id for m in await device.drain()}


async def test_a_send_over_the_rate_is_refused_whole_and_writes_nothing(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(send_rate_per_device="5/minute", max_recipients=5)
    alice, bob, carol, dave = await people(api, "alice", "bob", "carol", "dave")
    first = [uuid.uuid4() for _ in range(3)]
    for mid in first:  # 3 of 5
        await alice.send((bob.box_id, b"hi", mid))
    # A group Send costs one per recipient: 3 + 3 > 5, so none of it goes.
    group = uuid.uuid4()
    meta = await refused(
        alice.send(
            (bob.box_id, b"g", group), (carol.box_id, b"g", group), (dave.box_id, b"g", group)
        ),
        "SEND_RATE_LIMITED",
    )
    assert meta["limit"] == "5 per 1 minute"
    assert 1 <= int(meta["retry_after_seconds"]) <= 60
    # An ephemeral Send fans out too, and counts the same.
    ephemeral = pb.SendRequest(
        ephemeral=True,
        messages=[
            pb.OutgoingMessage(
                recipient_box_id=str(b.box_id), message_id=str(group), ciphertext=b"t"
            )
            for b in (bob, carol, dave)
        ],
    )
    await refused(alice.call("Send", ephemeral, pb.SendResponse), "SEND_RATE_LIMITED")
    # Nothing of the refused Sends reached any recipient.
    assert await held(bob) == {str(m) for m in first}
    assert await held(carol) == set()
    assert await held(dave) == set()
    # What is left of the budget still goes, exactly: 3 + 2 = 5.
    reply = await alice.send((carol.box_id, b"g", group), (dave.box_id, b"g", group))
    assert [r.outcome for r in reply.results] == [pb.SEND_OUTCOME_QUEUED] * 2
    await refused(alice.send((bob.box_id, b"one more", None)), "SEND_RATE_LIMITED")
    # The limit is per device: bob's own budget is untouched by alice's.
    hey = uuid.uuid4()
    await bob.send((alice.box_id, b"reply", None), (carol.box_id, b"hey", hey))
    assert await held(carol) == {str(group), str(hey)}
    assert len(await held(alice)) == 1


async def test_an_invalid_send_is_refused_as_invalid_and_costs_nothing(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(send_rate_per_device="2/minute", max_recipients=2)
    alice, bob = await people(api, "alice", "bob")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.send((bob.box_id, b"", None))  # empty ciphertext
    assert reason(caught.value) == "EMPTY_MESSAGE"
    reply = await alice.send((bob.box_id, b"a", None), (bob.box_id, b"b", None))
    assert [r.outcome for r in reply.results] == [pb.SEND_OUTCOME_QUEUED] * 2


async def test_send_rate_zero_turns_the_limit_off(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(send_rate_per_device="0", max_recipients=20)
    alice, bob = await people(api, "alice", "bob")
    assert api.server.service is not None, "the server has started"
    limit = api.server.service.inbox.send_limit
    assert limit is not None and not limit.enabled
    sent: set[str] = set()
    for _ in range(3):  # 60 messages: a limit of 0 would have refused the first
        mids = [uuid.uuid4() for _ in range(20)]
        reply = await alice.send(*((bob.box_id, b"m", mid) for mid in mids))
        assert {r.outcome for r in reply.results} == {pb.SEND_OUTCOME_QUEUED}
        sent |= {str(m) for m in mids}
    assert await held(bob) == sent


async def test_account_changes_are_limited_per_device(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(account_rate_per_device="2/hour")
    alice, bob = await people(api, "alice", "bob")

    async def add_contact(device: Device, value: str) -> pb.AddContactResponse:
        return await device.call(
            "AddContact", pb.AddContactRequest(contact=contact(value)), pb.AddContactResponse
        )

    one, two, three = email("alice-2"), email("alice-3"), email("alice-4")
    await add_contact(alice, one)
    await add_contact(alice, two)
    meta = await refused(add_contact(alice, three), "ACCOUNT_RATE_LIMITED")
    assert meta["limit"] == "2 per 1 hour"
    assert 1 <= int(meta["retry_after_seconds"]) <= 3600
    # Refused before any work: no code went out for the third contact.
    assert read_outbox_code(api.outbox, normalize("email", one)) is not None
    assert read_outbox_code(api.outbox, normalize("email", three)) is None
    # Calls outside the limit still work for alice; bob has his own budget.
    profile = await alice.call(
        "UpdateProfile", pb.UpdateProfileRequest(display_name="Alice"), pb.UpdateProfileResponse
    )
    assert profile.profile.display_name == "Alice"
    await add_contact(bob, email("bob-2"))


async def test_a_device_id_clone_in_another_box_cannot_spend_the_victims_budgets(
    make_api: Callable[..., Any],
) -> None:
    """Device ids are unique only within a box (docs/security.md, "Device ids
    and per-device keys"): an attacker links into its own box a device with a
    victim's device id, read from RequestKey, and exhausts that device's send
    and account budgets. The victim's calls must still go through."""
    api: Api = await make_api(
        send_rate_per_device="3/minute", max_recipients=3, account_rate_per_device="2/hour"
    )
    victim, attacker, friend = await people(api, "victim", "attacker", "friend")
    victim_tablet = await link(api, victim)  # 1 of the victim's 2 account calls
    seen = await attacker.request_key(victim.contacts[0])
    assert str(victim.device_id) in {d.device_id for d in seen.devices}

    clone = Device(api, name="clone")
    clone.device_id = victim.device_id
    offer = await create_offer(attacker)
    await join(clone, offer)
    await approve(attacker, offer, clone.device_id)
    await complete(clone, offer)
    assert clone.box_id == attacker.box_id != victim.box_id

    # The clone spends "its" budgets to the last unit.
    for i in range(2):
        await clone.call(
            "AddContact",
            pb.AddContactRequest(contact=contact(email(f"clone-{i}"))),
            pb.AddContactResponse,
        )
    await refused(
        clone.call(
            "AddContact",
            pb.AddContactRequest(contact=contact(email("clone-x"))),
            pb.AddContactResponse,
        ),
        "ACCOUNT_RATE_LIMITED",
    )
    await clone.send(*((friend.box_id, b"m", None) for _ in range(3)))
    await refused(clone.send((friend.box_id, b"m", None)), "SEND_RATE_LIMITED")

    # The victim's own budgets are untouched.
    reply = await victim.send((friend.box_id, b"hi", None), (friend.box_id, b"again", None))
    assert {r.outcome for r in reply.results} == {pb.SEND_OUTCOME_QUEUED}
    revoked = await victim.call(
        "RevokeDevice", revoke_request(victim, victim_tablet), pb.RevokeDeviceResponse
    )
    assert revoked.entry.kind == pb.KEY_CHANGE_KIND_REVOKE
