"""Two regions, each a real ``rossby serve`` on its own datacenter.

Region A: a server with ``local_dc=dc1`` (Cassandra on 127.0.0.1); region
B: ``local_dc=dc2`` (127.0.0.2). One keyspace replicated dc1:1,dc2:1, one
shared state dir (the secrets every region must share).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email
from tests.api.prekeys import claim, full_upload, status, upload
from tests.ops.helpers import SERVING, async_wait_for, health_is
from tests.replication.conftest import Region, Regions, joined, serve_regions, via
from tests.serverproc import rossby

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

QUEUED = (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE)


@pytest.fixture
async def two(tmp_path: Path, regions: Regions) -> AsyncIterator[dict[str, Region]]:
    async with serve_regions(tmp_path, regions) as out:
        yield out


async def test_register_in_a_send_from_b_fetch_in_a(two: dict[str, Region]) -> None:
    a, b = two["dc1"], two["dc2"]
    alice, reply = await joined(a, "alice")
    assert reply.home_region == "dc1"
    bob, reply = await joined(b, "bob")
    assert reply.home_region == "dc2"

    # B finds alice (registered in A) and learns her home region.
    key = await bob.request_key(alice.contacts[0])
    assert key.box_id == str(alice.box_id) and key.home_region == "dc1"

    mid = uuid.uuid4()
    sent = await bob.send((alice.box_id, b"hello from B", mid))
    assert sent.results[0].outcome == pb.SEND_OUTCOME_QUEUED
    # Alice reads in A at once: the message was queued in her home (dc1).
    page = await alice.fetch()
    assert [m.message_id for m in page.messages] == [str(mid)]
    assert page.messages[0].ciphertext == b"hello from B"

    # And the other way round; bob may also read through A.
    back = uuid.uuid4()
    await alice.send((bob.box_id, b"hi from A", back))
    assert [m.message_id for m in (await bob.fetch()).messages] == [str(back)]
    assert [m.message_id for m in (await via(bob, a).fetch()).messages] == [str(back)]


async def test_contact_claim_race_across_regions_has_exactly_one_winner(
    two: dict[str, Region],
) -> None:
    a, b = two["dc1"], two["dc2"]
    for _ in range(3):
        contact = email("shared")
        first, second = Device(a.api, contact), Device(b.api, contact)
        await first.register()
        first_codes = first.codes()
        await second.register()
        second_codes = second.codes()
        results = await asyncio.gather(
            first.authorize(first_codes), second.authorize(second_codes), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, pb.AuthorizeResponse)]
        lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, results
        info = error_info(lost[0])
        assert lost[0].code() == grpc.StatusCode.ALREADY_EXISTS
        assert info is not None and info.reason == "CONTACT_TAKEN"
        winner = first if results[0] is won[0] else second
        # Both regions answer the same owner.
        for region in (a, b):
            key = await via(winner, region).request_key(contact)
            assert key.box_id == str(winner.box_id)


async def test_prekeys_claimed_in_both_regions_at_once_are_each_handed_out_once(
    two: dict[str, Region],
) -> None:
    """The issue's acceptance check through the API: a device's one-time
    keys, claimed concurrently through both regions' servers, each reach
    exactly one requester; then both regions answer the last-resort key."""
    a, b = two["dc1"], two["dc2"]
    alice, _ = await joined(a, "alice")
    sent = full_upload(alice, one_time_count=10, kem_count=10)
    await upload(alice, sent)
    requesters = [(await joined(region, f"r{i}"))[0] for i, region in enumerate((a, b) * 4)]
    replies = await asyncio.gather(*(claim(r, alice.box_id) for r in requesters))
    handed = [b for reply in replies for b in reply.bundles]
    # Then each region until its share is spent (replication may have
    # delayed a share's rows a moment; the loop is bounded).
    for region in (a, b):
        for _ in range(12):
            (bundle,) = (await claim(via(requesters[0], region), alice.box_id)).bundles
            if bundle.kem_last_resort:
                assert bundle.kem_prekey == sent.last_resort_kem_prekey
                break
            handed.append(bundle)
        else:
            raise AssertionError(f"{region.name} never ran out of one-time keys")
    fresh = [h for h in handed if not h.kem_last_resort]
    assert sorted(h.kem_prekey.key_id for h in fresh) == list(range(1, 11))
    one_time = sorted(h.one_time_prekey.key_id for h in handed if h.HasField("one_time_prekey"))
    assert one_time == list(range(1, 11))
    assert (await status(alice)).low


async def _drain_exactly_once(device: Device) -> dict[str, int]:
    """Fetch everything (several rounds, like a client), ack, and check no
    message id was ever stored at two positions. Answers id -> position."""
    positions: dict[str, set[int]] = {}
    for _ in range(3):
        await device.fetch_positions(positions)
    doubled = {mid: p for mid, p in positions.items() if len(p) > 1}
    assert not doubled, f"queued twice: {doubled}"
    return {mid: next(iter(p)) for mid, p in positions.items()}


@pytest.mark.timeout(900)
async def test_dc2_outage_under_traffic_delivers_every_message_exactly_once(
    two: dict[str, Region], regions: Regions
) -> None:
    a, b = two["dc1"], two["dc2"]
    cluster = regions.cluster
    alice, _ = await joined(a, "alice")  # home dc1
    carol, _ = await joined(a, "carol")  # sender, home dc1
    bob, _ = await joined(b, "bob")  # home dc2
    assert alice.box_id and bob.box_id
    intended: dict[uuid.UUID, set[str]] = {alice.box_id: set(), bob.box_id: set()}
    accepted: set[str] = set()
    pending: list[tuple[Device, uuid.UUID, str]] = []
    rejected: dict[str, list[str]] = {}  # "A->box" / "B->box" -> reasons
    outage = asyncio.Event()

    async def send(sender: Device, box: uuid.UUID, mid: str) -> bool:
        intended[box].add(mid)
        route = f"{'A' if sender.api is a.api else 'B'}->{box}"
        try:
            reply = await sender.send((box, f"m {mid}".encode(), uuid.UUID(mid)))
        except grpc.aio.AioRpcError as exc:  # B's whole server while dc2 is down
            rejected.setdefault(route, []).append(exc.code().name)
            return False
        result = reply.results[0]
        if result.outcome in QUEUED:
            accepted.add(mid)
            return True
        rejected.setdefault(route, []).append(result.reason)
        return False

    stop = asyncio.Event()

    async def traffic() -> None:
        carol_b = via(carol, b)
        while not stop.is_set():
            routes = ((carol, alice.box_id), (carol, bob.box_id), (carol_b, alice.box_id))
            for sender, box in routes:
                if outage.is_set() and sender is carol_b:
                    continue  # region B has no datacenter now
                mid = str(uuid.uuid4())
                if not await send(sender, box, mid):
                    pending.append((sender, box, mid))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(2)
        assert not pending, rejected
        outage.set()  # from now on only region A takes traffic
        await asyncio.to_thread(cluster.stop_dc, "dc2")
        await asyncio.sleep(4)
        # Region A keeps serving boxes homed in dc1; Send to a box homed in
        # the dead DC is refused per message, retryable.
        assert f"A->{bob.box_id}" in rejected
        assert set(rejected[f"A->{bob.box_id}"]) == {"HOME_REGION_UNAVAILABLE"}, rejected
        assert f"A->{alice.box_id}" not in rejected, rejected
        page = await alice.fetch()  # reading a dc1 box works
        assert page.messages
        # Registration needs a global Paxos quorum (SERIAL): refused.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await Device(a.api, email("newcomer")).register()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # Failover: the operator lists the boxes homed in the dead DC ...
        listed = await asyncio.to_thread(
            rossby, "admin", "--store", regions.url("dc1"), "--log-format", "json",
            "boxes", "--home", "dc2",
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert str(bob.box_id) in listed.stdout.split()
        # ... and moves bob's home to dc1.
        moved = await asyncio.to_thread(
            rossby, "admin", "--store", regions.url("dc1"), "--log-format", "json",
            "move-home", str(bob.box_id), "dc1", "--force",
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert "home=dc1" in moved.stdout
        await asyncio.sleep(3)
        retry = [p for p in pending if p[1] == bob.box_id]
        for sender, box, mid in retry:
            assert await send(sender, box, mid), rejected
        before = len(rejected.get(f"A->{bob.box_id}", []))
        await asyncio.sleep(2)
        assert len(rejected.get(f"A->{bob.box_id}", [])) == before  # bob is served again
        # Bob reads through A while his old home is down.
        assert (await via(bob, a).fetch()).messages

        await asyncio.to_thread(cluster.start_dc, "dc2")  # returns once the node is UP
        await async_wait_for(health_is(b.server.target, SERVING), 120, "region B serving")
        outage.clear()  # region B takes traffic again
        await asyncio.sleep(2)
    finally:
        stop.set()
        try:
            await task
        finally:
            # Whatever happened, dc2 is running again (and UP) when we leave.
            await asyncio.to_thread(cluster.start_dc, "dc2")

    # Anything still refused is retried with its message id, as a client would.
    for sender, box, mid in pending:
        if mid not in accepted:
            for _ in range(20):
                if await send(sender, box, mid):
                    break
                await asyncio.sleep(1)
    assert accepted == intended[alice.box_id] | intended[bob.box_id]

    done = await asyncio.to_thread(
        rossby, "admin", "--store", regions.url("dc1"), "--log-format", "json",
        "reconcile", str(bob.box_id),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "recovery ended" in done.stdout

    got_alice = await _drain_exactly_once(alice)
    got_bob = await _drain_exactly_once(via(bob, a))
    assert set(got_alice) == intended[alice.box_id]
    assert set(got_bob) == intended[bob.box_id]
