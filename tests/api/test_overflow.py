"""Per-device overflow through the real gRPC channel, on each store backend
(docs/api.md "FetchResponse.gap", docs/realtime.md "Gaps"), and what the
client SDK and CLI make of it (docs/client.md "MessagesDropped").

Bob's phone reads everything; his tablet never comes back. With pending_cap
5 the box keeps accepting Alice's mail, the tablet's next Fetch or Subscribe
says what it missed, and PENDING_CAP comes only once the phone, the most
advanced device, is 5 behind.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from rossby.client import MessagesDropped, ReceivedMessage, RossbyClient, UpToDate
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import FAST, PASS, Api, Join, MakeApi, migrate_in_thread
from tests.api.device import Device, email
from tests.api.test_accounts import link
from tests.api.test_client_sdk import add_second_device, contact_of, drain, received
from tests.api.test_realtime import Subscription
from tests.conftest import cassandra_url
from tests.ops.helpers import metric, scrape_registry
from tests.serverproc import FAST_KEYFILE, rossby

CAP = 5
#: A settle window short enough to wait out (Cassandra; SQLite has none):
#: a laggard is never trimmed into what the phone may still re-read. Its
#: request timeout is half of it, the production default of 2 s: with 1 s
#: (0.5 s statements) a loaded 2-core run timed out an UploadPrekeys.
SETTLE_MS = 4000


@pytest.fixture(scope="module")
def cassandra_api_url(cassandra_hosts: list[str]) -> str:
    """The session's API keyspace, opened with a short settle window."""
    url = cassandra_url(
        cassandra_hosts,
        "rossby_api",
        replication="dc1:1",
        settle_ms=str(SETTLE_MS),
        request_timeout_ms=str(SETTLE_MS // 2),
    )
    migrate_in_thread(url)
    return url


async def read_along(alice: Device, phone: Device, count: int) -> list[int]:
    """Alice sends ``count`` messages; the phone reads and acks each."""
    positions = []
    for i in range(count):
        reply = await alice.send((phone.box_id, f"m{i}".encode(), None))
        assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED, reply.results[0].reason
        got = await phone.drain()
        positions.append(got[-1].position)
    return positions


async def lagging(make_api: MakeApi) -> tuple[Device, Device, Device, int, list[int]]:
    """(alice, bob's phone, bob's tablet, the tablet's first cursor, the
    positions of 12 messages: 7 the tablet will miss, then 5 it keeps)."""
    api = await make_api(pending_cap=CAP)
    alice = await Device(api, email("alice")).join()
    phone = await Device(api, email("bob")).join()
    tablet = await link(api, phone)
    start = (await tablet.fetch()).cursor
    positions = await read_along(alice, phone, 7)
    await asyncio.sleep(SETTLE_MS / 1000 + 0.2)
    positions += await read_along(alice, phone, CAP)
    return alice, phone, tablet, start, positions


def gap_of(reply: pb.FetchResponse) -> tuple[int, int, int] | None:
    return (reply.gap.missed, reply.gap.after, reply.gap.through) if reply.HasField("gap") else None


async def test_fetch_reports_the_gap_until_the_device_acks_past_it(make_api: MakeApi) -> None:
    _, phone, tablet, start, positions = await lagging(make_api)
    reply = await tablet.fetch()
    assert gap_of(reply) == (7, start, positions[6])
    assert [m.position for m in reply.messages if m.position > positions[6]] == positions[7:]
    assert [m.ciphertext for m in reply.messages][-CAP:] == [f"m{i}".encode() for i in range(CAP)]
    # Fetched again (the client crashed before acking): the same gap.
    assert gap_of(await tablet.fetch()) == (7, start, positions[6])
    # Counted once, when dropped.
    api = tablet.api
    dropped = metric(
        scrape_registry(api.server.metrics.registry), "rossby_overflow_dropped_messages_total"
    )
    assert dropped == 7
    await tablet.ack(positions[-1])
    assert gap_of(await tablet.fetch()) is None
    # The phone never saw a gap.
    assert gap_of(await phone.fetch()) is None


async def test_subscribe_sends_the_gap_before_the_messages_above_it(make_api: MakeApi) -> None:
    _, _, tablet, start, positions = await lagging(make_api)
    sub = Subscription(tablet).start()
    try:
        events = await sub.until("live")
    finally:
        await sub.close()
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "gap", kinds
    first = events[0].gap
    assert (first.missed, first.after, first.through) == (7, start, positions[6])
    assert kinds.count("gap") == 1
    above = [e.message.position for e in events if e.WhichOneof("event") == "message"]
    assert [p for p in above if p > positions[6]] == positions[7:]


async def test_pending_cap_refuses_only_for_the_most_advanced_device(make_api: MakeApi) -> None:
    alice, phone, tablet, _, _ = await lagging(make_api)
    # The tablet is 12 behind and the box still accepts; the phone now
    # stops reading, and the box fills for it.
    for i in range(CAP):
        reply = await alice.send((phone.box_id, f"late{i}".encode(), None))
        assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED
    over = await alice.send((phone.box_id, b"one too many", None))
    assert (over.results[0].outcome, over.results[0].reason) == (
        pb.SEND_OUTCOME_REJECTED,
        "PENDING_CAP",
    )
    # Nothing the phone waits for was dropped for the tablet either.
    got = [m.ciphertext for m in await tablet.drain()]
    assert got[-CAP:] == [f"late{i}".encode() for i in range(CAP)]


# -- the client SDK and CLI ------------------------------------------------------


async def sdk_lagging(
    api: Api, clients: Join, tmp_path: Path
) -> tuple[RossbyClient, RossbyClient, Path]:
    """(alice, bob's phone, the home of bob's tablet, linked and then left
    behind: 7 messages it will miss, then 5 it keeps)."""
    alice, phone = await clients(api, "alice"), await clients(api, "bob")
    async with AsyncExitStack() as tablet_stack:
        tablet = await add_second_device(api, phone, tmp_path / "tablet", tablet_stack)
        await tablet.resolve(contact_of(alice))
        assert await drain(tablet) == []
    await phone.resolve(contact_of(alice))
    await sdk_read_along(alice, phone, 7)
    await asyncio.sleep(SETTLE_MS / 1000 + 0.2)
    await sdk_read_along(alice, phone, CAP)
    return alice, phone, tmp_path / "tablet"


async def sdk_read_along(alice: RossbyClient, phone: RossbyClient, count: int) -> None:
    for i in range(count):
        report = await alice.send([contact_of(phone)], f"m{i}")
        assert report.ok, report.results
        assert [m.text for m in received(await drain(phone))] == [f"m{i}"]


async def test_the_sdk_yields_messages_dropped_from_fetch_and_listen(
    make_api: MakeApi, clients: Join, tmp_path: Path
) -> None:
    api = await make_api(pending_cap=CAP)
    async with AsyncExitStack() as stack:
        alice, phone, home = await sdk_lagging(api, clients, tmp_path)
        tablet = await stack.enter_async_context(RossbyClient.open(home, PASS, scrypt_n=FAST))
        events = await drain(tablet)
        assert isinstance(events[0], MessagesDropped), events
        assert events[0].missed == 7 and events[0].through > events[0].after
        assert [m.text for m in received(events)] == [f"m{i}" for i in range(CAP)]
        # Acked past: the next fetch has no gap, and nothing else either.
        assert await drain(tablet) == []

        # The same through a Subscribe stream.
        await sdk_read_along(alice, phone, 7)
        await asyncio.sleep(SETTLE_MS / 1000 + 0.2)
        await sdk_read_along(alice, phone, CAP)
        live: list[object] = []
        async for event in tablet.listen(reconnect=False):
            live.append(event)
            if isinstance(event, UpToDate):
                break
        assert isinstance(live[0], MessagesDropped) and live[0].missed == 7, live
        texts = [e.text for e in live if isinstance(e, ReceivedMessage)]
        assert texts == [f"m{i}" for i in range(CAP)]
        assert await drain(tablet) == []  # listen acked past the gap too


async def test_the_cli_prints_one_warning_line(
    make_api: MakeApi, clients: Join, tmp_path: Path
) -> None:
    api = await make_api(pending_cap=CAP)
    _, _, home = await sdk_lagging(api, clients, tmp_path)
    env = {"ROSSBY_PASSPHRASE": PASS, **FAST_KEYFILE}
    # In a thread: the server answering it runs on this event loop.
    done = await asyncio.to_thread(rossby, "client", "--home", str(home), "fetch", env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 7 messages were dropped for this device (it fell more than the box's "
        "pending cap behind its other devices); ask the senders to resend"
    ], done.stderr
    assert done.stdout.count("m") >= CAP
