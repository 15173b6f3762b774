"""How Subscribe streams end: heartbeats on an idle stream, SLOW_CONSUMER for
a stuck transport, ``stream_max_age``, and HTTP/2 keepalive closing the
stream of a client that vanished. Real server, real channels (through a
TCP proxy that can be cut or frozen), on each store backend.
docs/realtime.md, "Stream lifetime and dead connections"."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from rossby.client.channel import make_channel
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import SERVICE, Device, reason
from tests.api.test_realtime import SLOW_POLL, Subscription, pair
from tests.api.test_realtime import subs as subs  # the fixture
from tests.ops.tcpproxy import TcpProxy

WAIT = 30.0  # seconds to wait for something that must happen


async def eventually(check: Callable[[], bool], what: str, wait: float = WAIT) -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait}s: {what}")
        await asyncio.sleep(0.05)


def streams_of(api: Api, device: Device) -> int:
    assert api.server.service is not None and device.box_id is not None
    return api.server.service.realtime.hub.streams_of(device.box_id, device.device_id)


def counter(api: Api, name: str) -> float:
    assert api.server.service is not None
    metric = getattr(api.server.service.realtime.metrics, name)
    return float(metric._value.get())


def raw_subscribe(channel: grpc.aio.Channel, device: Device) -> Any:
    """A Subscribe call the test reads (or does not read) itself."""
    assert device.signer is not None
    path = SERVICE + "Subscribe"
    payload = pb.SubscribeRequest().SerializeToString()
    return channel.unary_stream(
        path, request_serializer=None, response_deserializer=pb.SubscribeEvent.FromString
    )(payload, metadata=device.signer.sign(path, payload))


async def read_to_live(call: Any) -> None:
    while (await call.read()).WhichOneof("event") != "live":
        pass


async def test_an_idle_stream_gets_heartbeats(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_heartbeat=0.2, stream_poll=SLOW_POLL)
    _alice, bob = await pair(api)
    sub = subs(bob)
    await sub.until("live")
    for _ in range(3):  # nothing is sent, so only heartbeats come, each with the server time
        event = await sub.next()
        assert isinstance(event, pb.SubscribeEvent)
        assert event.WhichOneof("event") == "heartbeat"
        assert abs(event.heartbeat.server_time_ms / 1000 - time.time()) < 60


async def test_a_stream_whose_writes_stall_ends_with_slow_consumer(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api(
        stream_buffer=4, stream_stall=0.5, stream_write_timeout=1, stream_poll=SLOW_POLL
    )
    alice, bob = await pair(api)
    call = raw_subscribe(api.channel, bob)
    await read_to_live(call)
    # The client stops reading; large messages fill the HTTP/2 windows, so a
    # write stalls: first the stream falls behind, then the write times out.
    sent = []
    for i in range(120):
        mid = uuid.uuid4()
        sent.append(str(mid))
        await alice.send((bob.box_id, bytes([i % 256]) * 60_000, mid))
    await eventually(lambda: counter(api, "stream_slow_aborts") >= 1, "SLOW_CONSUMER")
    await eventually(lambda: streams_of(api, bob) == 0, "the stream slot freed")
    # Reading again: what the transport held, then RESOURCE_EXHAUSTED.
    got: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while (event := await call.read()) is not grpc.aio.EOF:
            if event.WhichOneof("event") == "message":
                got.append(event.message.message_id)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(caught.value) == "SLOW_CONSUMER"
    assert got == sent[: len(got)] and len(got) < len(sent)
    # Nothing lost (small pages: 100 of these would pass gRPC's 4 MiB message limit).
    fetched: set[str] = set()
    after, more = 0, True
    while more:
        page = await bob.fetch(after=after, limit=20)
        fetched |= {m.message_id for m in page.messages}
        after, more = page.next_after, page.more
    assert fetched == set(sent)


async def test_max_age_ends_a_stream_with_ok_and_a_new_one_resumes(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_max_age=1, stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    first = subs(bob)
    opening = await first.until("live")
    before = uuid.uuid4()
    await alice.send((bob.box_id, b"before", before))
    pushed = await first.messages(1)
    assert pushed[0].message_id == str(before)
    end = await first.next()
    while isinstance(end, pb.SubscribeEvent):  # heartbeats at most; never a catch-up
        assert end.WhichOneof("event") == "heartbeat"
        end = await first.next()
    assert end is None  # the iterator finished: status OK
    assert counter(api, "stream_max_age_ends") == 1
    await eventually(lambda: streams_of(api, bob) == 0, "the stream slot freed")
    # Sent while no stream was open; the next stream resumes and finds it.
    after = uuid.uuid4()
    await alice.send((bob.box_id, b"after", after))
    second = subs(bob, after=pushed[0].position)
    resumed = await second.until("live")
    got = [e.message.message_id for e in resumed if e.WhichOneof("event") == "message"]
    assert str(after) in got
    assert opening[-1].WhichOneof("event") == "live"


@pytest.fixture
async def proxy(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[Api], TcpProxy]]:
    made: list[TcpProxy] = []

    def start(api: Api) -> TcpProxy:
        p = TcpProxy("127.0.0.1", api.server.port)
        p.resume()
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()


@pytest.mark.parametrize("how", ["reset", "vanish"])
async def test_a_dead_connection_frees_its_stream_slot(
    make_api: Callable[..., Any],
    subs: Callable[..., Subscription],
    proxy: Callable[[Api], TcpProxy],
    how: str,
) -> None:
    """``reset``: the connection is closed with RST. ``vanish``: packets stop
    and nothing is closed (a phone out of coverage); only the server's
    keepalive ping, unanswered for ``keepalive_timeout``, can tell."""
    api = await make_api(
        stream_limit=1, keepalive_time=1, keepalive_timeout=1, stream_poll=SLOW_POLL
    )
    _alice, bob = await pair(api)
    link = proxy(api)
    far = grpc.aio.insecure_channel(f"127.0.0.1:{link.port}")
    try:
        call = raw_subscribe(far, bob)
        await read_to_live(call)
        assert streams_of(api, bob) == 1
        refused = subs(bob)  # a second stream, directly: over the limit
        end = await refused.next()
        assert isinstance(end, grpc.aio.AioRpcError)
        assert reason(end) == "STREAM_LIMIT"
        if how == "reset":
            link.stop()
        else:
            link.freeze()
        await eventually(lambda: streams_of(api, bob) == 0, "the dead stream's slot freed")
        await subs(bob).until("live")  # the device can stream again
        call.cancel()
    finally:
        await far.close()


async def test_sdk_keepalive_within_the_servers_ping_policy_keeps_the_stream(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """The SDK's keepalive options (``rossby.client.channel``), scaled down:
    pinging no faster than ``keepalive_min_interval`` on a stream that only
    receives (no heartbeat in the window, so no data resets the count)."""
    api = await make_api(keepalive_min_interval=1, stream_heartbeat=600, stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    channel = make_channel(api.target, options=[("grpc.keepalive_time_ms", 1500)])
    try:
        call = raw_subscribe(channel, bob)
        await read_to_live(call)
        await asyncio.sleep(6)  # four pings or so
        mid = uuid.uuid4()
        await alice.send((bob.box_id, b"still here", mid))
        event = await asyncio.wait_for(call.read(), WAIT)
        assert event.message.message_id == str(mid)  # the same stream, still open
        call.cancel()
    finally:
        await channel.close()


async def test_pings_faster_than_the_servers_policy_end_the_connection(
    make_api: Callable[..., Any],
) -> None:
    """Why the SDK's interval must stay at or above ``keepalive_min_interval``:
    the third ping too soon is answered with GOAWAY "too_many_pings"."""
    api = await make_api(keepalive_min_interval=30, stream_heartbeat=600, stream_poll=SLOW_POLL)
    _alice, bob = await pair(api)
    channel = make_channel(api.target, options=[("grpc.keepalive_time_ms", 1000)])
    try:
        call = raw_subscribe(channel, bob)
        await read_to_live(call)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), WAIT)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value) is None  # the transport, not the server, said so
        assert "ping" in (caught.value.details() or "").lower()
    finally:
        await channel.close()
