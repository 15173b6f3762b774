"""ClaimPrekeys' two rate limits through a real channel on each backend:
per requesting device and per target box (docs/security.md, "Prekey
claims"). Each claim takes a one-time key from every device of the box, so
these limits are what makes draining someone's pools slow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.api.prekeys import claim, full_upload, status, upload
from tests.api.test_accounts import set_rule
from tests.support.grpc_errors import expect, refused

REASON = "PREKEY_CLAIM_RATE_LIMITED"


async def devices(api: Api, *names: str) -> list[Device]:
    return [await Device(api, email(n)).join() for n in names]


async def test_one_device_claims_at_most_its_rate_over_all_boxes(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(prekey_claim_rate_per_device="3/hour", prekey_claim_rate_per_box=0)
    alice, carol, bob, dave = await devices(api, "alice", "carol", "bob", "dave")
    for target in (alice, carol):
        await upload(target, full_upload(target, one_time_count=5, kem_count=5))
    for target in (alice, alice, carol):
        assert len((await claim(bob, target.box_id)).bundles) == 1
    for target in (alice, carol):
        metadata = await refused(claim(bob, target.box_id), REASON)
        assert metadata["limit"] == "3 per 1 hour"
        assert int(metadata["retry_after_seconds"]) == 1200  # one call of 3 an hour
    # A refused claim took nothing, and other requesters have budgets of their own.
    assert (await status(alice)).one_time_prekeys == 3
    assert len((await claim(dave, alice.box_id)).bundles) == 1


async def test_one_box_is_claimed_at_most_its_rate_by_everyone_together(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(prekey_claim_rate_per_device=0, prekey_claim_rate_per_box="3/hour")
    alice, carol, bob, dave, erin = await devices(api, "alice", "carol", "bob", "dave", "erin")
    for target in (alice, carol):
        await upload(target, full_upload(target, one_time_count=5, kem_count=5))
    for requester in (bob, bob, dave):
        await claim(requester, alice.box_id)
    metadata = await refused(claim(erin, alice.box_id), REASON)
    assert metadata["limit"] == "3 per 1 hour"
    assert (await status(alice)).one_time_prekeys == 2
    # Another box has its own budget.
    assert len((await claim(erin, carol.box_id)).bundles) == 1


async def test_draining_as_fast_as_the_limit_allows_reaches_the_last_resort_then_stops(
    make_api: Callable[..., Any],
) -> None:
    """Fresh requesters each time (no per-device limit helps the victim):
    the box limit alone bounds the drain, and the box stays reachable
    through its last-resort key until the limit refuses."""
    api: Api = await make_api(prekey_claim_rate_per_box="5/hour", prekey_low_water=1)
    (alice,) = await devices(api, "alice")
    sent = full_upload(alice, one_time_count=3, kem_count=3)
    await upload(alice, sent)
    handed: list[pb.PrekeyBundle] = []
    for i in range(5):
        (requester,) = await devices(api, f"drainer{i}")
        (bundle,) = (await claim(requester, alice.box_id)).bundles
        handed.append(bundle)
    one_time = [b for b in handed if not b.kem_last_resort]
    assert len({b.one_time_prekey.key_id for b in one_time}) == 3  # each key once
    assert len({b.kem_prekey.key_id for b in one_time}) == 3
    for b in handed[3:]:
        assert b.kem_last_resort and not b.HasField("one_time_prekey")
        assert b.kem_prekey == sent.last_resort_kem_prekey
    (late,) = await devices(api, "drainer5")
    await refused(claim(late, alice.box_id), REASON)
    drained = await status(alice)
    assert (drained.one_time_prekeys, drained.one_time_kem_prekeys) == (0, 0) and drained.low


async def test_claims_on_a_box_hidden_from_the_caller_spend_none_of_its_budget(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(prekey_claim_rate_per_box="1/hour", prekey_claim_rate_per_device=0)
    alice, mallory, bob = await devices(api, "alice", "mallory", "bob")
    await upload(alice, full_upload(alice, one_time_count=2, kem_count=2))
    await set_rule(alice, mallory.box_id, pb.SENDER_RULE_BLOCKED)
    for _ in range(3):  # as for a box that does not exist
        await expect(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", claim(mallory, alice.box_id))
    assert len((await claim(bob, alice.box_id)).bundles) == 1


async def test_a_claim_the_box_limit_refuses_still_costs_the_caller(
    make_api: Callable[..., Any],
) -> None:
    """Hammering a box whose budget is spent is not free: each refusal
    spends the caller's own unit (docs/security.md, "Prekey claims")."""
    api: Api = await make_api(
        prekey_claim_rate_per_device="2/hour", prekey_claim_rate_per_box="1/hour"
    )
    alice, carol, bob = await devices(api, "alice", "carol", "bob")
    for target in (alice, carol):
        await upload(target, full_upload(target, one_time_count=2, kem_count=2))
    await claim(bob, alice.box_id)
    box = await refused(claim(bob, alice.box_id), REASON)
    assert box["limit"] == "1 per 1 hour"  # the box's limit refused
    device = await refused(claim(bob, carol.box_id), REASON)
    assert device["limit"] == "2 per 1 hour"  # and bob's own budget is spent
    assert (await status(carol)).one_time_prekeys == 2
