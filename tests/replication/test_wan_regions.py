"""Three Rossby regions on the three-region WAN cluster, with one region down.

The cluster is the package's ``wan_cluster`` (tests/replication/conftest.py),
the one test_wan.py uses: one start for both modules. A keyspace replicated
``dc1:1,dc2:1,dc3:1`` (migrated once) and one ``rossby serve`` per region
(``--region dcN``, its own DC's node), reached over real gRPC channels.

dc2 goes down by **stopping its node** (the launcher's ``stop_node``,
SIGTERM), not by stalling its WAN links: the links carry only the nodes'
traffic between DCs, while every Rossby server's driver talks CQL to every
DC's node directly. Under a stall the dc1 server would still reach dc2's
node, which alone makes ``LOCAL_QUORUM`` in dc2, so dc2-homed boxes would
keep working from dc1: a cut between the DCs' storage, not a region down.
A stopped node is also cheaper: it gossips its shutdown, so requests routed
to it fail at once instead of waiting out request timeouts.

The tests of ``TestDc2Down`` run inside one outage (a class fixture stops
dc2 and always restarts it); the test after them checks the healed region.
A second keyspace, replicated ``dc1:1,dc2:1`` only, with its own dc1 server,
shows what the third DC buys: there, registration stops while dc2 is down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2

from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import migrate_in_thread
from tests.api.device import Device, email
from tests.ops.helpers import SERVING, async_wait_for, health_is
from tests.replication.conftest import (
    Region,
    Regions,
    WanCluster,
    joined,
    log,
    serve_regions,
    via,
)
from tests.serverproc import health_status

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

THREE = "dc1:1,dc2:1,dc3:1"
TWO = "dc1:1,dc2:1"
QUEUED = (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]  # google.rpc.Code 14


@dataclass
class World:
    """The servers and the module's long-lived contacts: alice homed in dc1,
    bob in dc2, carol in dc3, registered while every region was up. ``acked``
    is every message id a Send answered QUEUED (or DUPLICATE), per box: what
    must be fetched exactly once in the end; ``refused`` the ids refused
    while dc2 was down, to retry after heal with the same id."""

    three: dict[str, Region]
    two_dc1: Region  # a dc1 server on the keyspace replicated to dc1 and dc2 only
    alice: Device
    bob: Device
    carol: Device
    acked: dict[uuid.UUID, set[str]] = field(default_factory=dict)
    refused: list[tuple[Device, uuid.UUID, str]] = field(default_factory=list)

    async def send(self, sender: Device, *boxes: uuid.UUID) -> list[pb.SendResult]:
        """One Send with a message per box; records what was acknowledged."""
        items = [(box, b"to " + str(box).encode(), uuid.uuid4()) for box in boxes]
        reply = await sender.send(*items)
        assert len(reply.results) == len(items)
        for (box, _, mid), result in zip(items, reply.results, strict=True):
            assert result.message_id == str(mid)
            if result.outcome in QUEUED:
                self.acked.setdefault(box, set()).add(str(mid))
            else:
                self.refused.append((sender, box, str(mid)))
        return list(reply.results)


@pytest.fixture(scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, wan_cluster: WanCluster
) -> AsyncIterator[World]:
    cluster = wan_cluster.cassandra
    three = Regions(cluster, "rossby_three", THREE)
    two = Regions(cluster, "rossby_three_two", TWO)
    t0 = time.monotonic()
    # Both at once: DDL over the WAN waits on schema agreement, not on the CPU.
    await asyncio.gather(
        *(asyncio.to_thread(migrate_in_thread, keyspace.url("dc1")) for keyspace in (three, two))
    )
    log(f"migrated in {time.monotonic() - t0:.1f}s")
    workdir = tmp_path_factory.mktemp("three")
    (workdir / "two").mkdir()
    async with (
        serve_regions(workdir, three) as servers,
        serve_regions(workdir / "two", two, ("dc1",)) as two_servers,
    ):
        log(f"servers up at {time.monotonic() - t0:.1f}s")
        (alice, _), (bob, _), (carol, _) = await asyncio.gather(
            joined(servers["dc1"], "alice"),
            joined(servers["dc2"], "bob"),
            joined(servers["dc3"], "carol"),
        )
        w = World(servers, two_servers["dc1"], alice, bob, carol)
        # Traffic into every box while all regions are up: acked, to be fetched in the end.
        for results in await asyncio.gather(
            w.send(alice, bob.box_id, carol.box_id),
            w.send(carol, alice.box_id, bob.box_id),
            w.send(bob, alice.box_id, carol.box_id),
        ):
            assert all(r.outcome == pb.SEND_OUTCOME_QUEUED for r in results), results
        log(f"world ready at {time.monotonic() - t0:.1f}s")
        yield w


@pytest.fixture(scope="class")
def dc2_down(world: World, wan_cluster: WanCluster) -> Iterator[World]:
    """dc2's node stopped for the class's tests, restarted (and UP with its
    peers) afterwards, whatever happened."""
    cluster = wan_cluster.cassandra
    cluster.stop_dc("dc2")
    log("dc2 stopped")
    try:
        yield world
    finally:
        cluster.start_dc("dc2")
        log("dc2 restarted")


def _reason(result: pb.SendResult) -> tuple[int, int, str]:
    return (result.outcome, result.code, result.reason)


REFUSED = (pb.SEND_OUTCOME_REJECTED, UNAVAILABLE, "HOME_REGION_UNAVAILABLE")


async def test_a_cut_off_dc2_still_serves_its_boxes_to_dc1(
    world: World, wan_cluster: WanCluster
) -> None:
    """dc2's WAN links stalled (a cut between the DCs' storage, every node
    up): the dc1 server still reaches dc2's node by CQL, which coordinates
    bob's queue at LOCAL_QUORUM on its own replica, so a Send from dc1 into
    bob's box is queued and bob reads it through dc1; registration in dc1
    has 2 of 3 Paxos replicas, in dc2 only 1 (refused STORE_UNAVAILABLE once
    the request times out). Why the outage tests below stop the node: a
    cut off DC is not a region down for the other regions' servers."""
    wan_cluster.links.partition("dc2")
    try:
        dave, reply = await joined(world.three["dc1"], "dave")
        assert reply.home_region == "dc1"
        (result,) = await world.send(dave, world.bob.box_id)
        assert result.outcome == pb.SEND_OUTCOME_QUEUED, result
        page = await via(world.bob, world.three["dc1"]).fetch()
        assert result.message_id in {m.message_id for m in page.messages}
        t0 = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await Device(world.three["dc2"].api, email("cut")).register()
        info = error_info(refused.value)
        log(
            f"Register in the cut-off dc2: {refused.value.code().name} "
            f"{info.reason if info else ''} after {time.monotonic() - t0:.1f}s"
        )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        assert info is not None and info.reason == "STORE_UNAVAILABLE", info
    finally:
        wan_cluster.links.heal("dc2")


@pytest.mark.usefixtures("dc2_down")
class TestDc2Down:
    async def test_register_and_authorize_in_dc1_and_dc3(self, world: World) -> None:
        """Contact claims and registrations are SERIAL: Paxos over all three
        replicas, which needs 2 of 3, so dc1 and dc3 register without dc2;
        and the new boxes, homed where they registered, exchange messages."""
        (dave, in_dc1), (erin, in_dc3) = await asyncio.gather(
            joined(world.three["dc1"], "dave"), joined(world.three["dc3"], "erin")
        )
        assert (in_dc1.home_region, in_dc3.home_region) == ("dc1", "dc3")
        await world.send(dave, erin.box_id)
        await world.send(erin, dave.box_id)
        assert not world.refused, world.refused
        assert [m.ciphertext for m in await erin.drain()] == [b"to " + str(erin.box_id).encode()]
        assert [m.ciphertext for m in await dave.drain()] == [b"to " + str(dave.box_id).encode()]

    async def test_two_dc_keyspace_stops_registration(self, world: World) -> None:
        """The same Register in dc1, on a keyspace replicated to dc1 and dc2
        only: SERIAL then needs both replicas, so it is refused UNAVAILABLE
        (the two-region rule in docs/replication.md)."""
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await Device(world.two_dc1.api, email("newcomer")).register()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value

    async def test_sends_between_live_regions_are_fetched(self, world: World) -> None:
        """dc1 into a dc3-homed box and back: coordinated in the home DC,
        which is up; dc2's replica gets hints."""
        alice, carol = world.alice, world.carol
        await world.send(alice, carol.box_id)
        await world.send(carol, alice.box_id)
        await world.send(via(carol, world.three["dc1"]), alice.box_id)
        assert not world.refused, world.refused
        # Fetch in the home and through the other live region: both see the queue.
        page = await via(carol, world.three["dc1"]).fetch()
        assert set(world.acked[carol.box_id]) <= {m.message_id for m in page.messages}
        page = await via(alice, world.three["dc3"]).fetch()
        assert set(world.acked[alice.box_id]) <= {m.message_id for m in page.messages}

    async def test_request_key_of_a_dc2_box_works_from_dc1(self, world: World) -> None:
        """Keys and box lookups are local (LOCAL_QUORUM in dc1)."""
        key = await world.alice.request_key(world.bob.contacts[0])
        assert key.box_id == str(world.bob.box_id)
        assert key.home_region == "dc2"

    async def test_a_dc2_box_answers_home_region_unavailable(self, world: World) -> None:
        """Send from dc1 (and dc3) into bob's box is refused per message,
        the message beside it to carol is queued; bob's Fetch and Ack
        through dc1 fail UNAVAILABLE with the same reason; dc2's own server
        is NOT_SERVING, the others SERVING."""
        bob, carol = world.bob, world.carol
        first, second = await world.send(world.alice, bob.box_id, carol.box_id)
        assert _reason(first) == REFUSED, first
        assert second.outcome == pb.SEND_OUTCOME_QUEUED, second
        (third,) = await world.send(carol, bob.box_id)
        assert _reason(third) == REFUSED, third
        bob_dc1 = via(bob, world.three["dc1"])
        for call in (bob_dc1.fetch(), bob_dc1.ack(1)):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
            info = error_info(failed.value)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
            assert info is not None and info.reason == "HOME_REGION_UNAVAILABLE", info
            assert info.metadata["home_region"] == "dc2", info
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        dc2 = world.three["dc2"].server.target
        await async_wait_for(health_is(dc2, not_serving), 30, "region dc2 NOT_SERVING")
        for dc in ("dc1", "dc3"):
            assert await asyncio.to_thread(health_status, world.three[dc].server.target) == SERVING


async def test_after_heal_every_acked_message_is_fetched_exactly_once(world: World) -> None:
    """dc2 is back (the class fixture restarted it): its server serves
    again, the refused Sends succeed on retry with their ids, and every box
    hands out each acknowledged message once (one position per id)."""
    dc2 = world.three["dc2"]
    await async_wait_for(health_is(dc2.server.target, SERVING), 120, "region dc2 serving")
    assert world.refused, "nothing was refused while dc2 was down"
    for sender, box, mid in world.refused:
        for attempt in range(30):
            reply = await sender.send((box, b"retry", uuid.UUID(mid)))
            if reply.results[0].outcome in QUEUED:
                world.acked.setdefault(box, set()).add(mid)
                break
            log(f"retry {attempt} of {mid}: {reply.results[0].reason}")
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"{mid} to {box} still refused after heal")
    # bob reads in his own region again, and through dc1 (the reads below).
    page = await world.bob.fetch()
    assert {m.message_id for m in page.messages} == world.acked[world.bob.box_id]
    bob_dc1 = via(world.bob, world.three["dc1"])
    for device in (world.alice, world.bob, world.carol):
        positions: dict[str, set[int]] = {}
        reader = device if device is not world.bob else bob_dc1  # the home, through dc1
        await reader.fetch_positions(positions)
        doubled = {mid: p for mid, p in positions.items() if len(p) > 1}
        assert not doubled, f"queued twice: {doubled}"
        assert set(positions) == world.acked[device.box_id], device.contacts
