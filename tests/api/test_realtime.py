"""Subscribe, ephemeral Send, back-pressure and the stream limit, against a
real server in this process, on each store backend (tests/api/conftest.py).

Servers here run with a long safety-net poll (``stream_poll``), so a message
that arrives within the waits below arrived through the hub or a peer
notify, not through the poll.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from rossby.client.hawk import stream_signed
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import SERVICE, Device, email, reason
from tests.api.test_accounts import approve, complete, create_offer, join, revoke_request

SLOW_POLL = 600  # seconds: never within a test
WAIT = 20.0  # seconds to wait for an event that must come


class Subscription:
    """One Subscribe stream read by a background task into a queue."""

    def __init__(self, device: Device, after: int = 0, limit: int = 0) -> None:
        assert device.signer is not None
        self.device = device
        self.events: asyncio.Queue[pb.SubscribeEvent | BaseException | None] = asyncio.Queue()
        self._iter: AsyncIterator[pb.SubscribeEvent] = stream_signed(
            device.stub_channel,
            device.signer,
            SERVICE + "Subscribe",
            pb.SubscribeRequest(after=after, limit=limit),
            pb.SubscribeEvent,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Subscription:
        self.task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        try:
            async for event in self._iter:
                await self.events.put(event)
        except BaseException as exc:  # the stream's end, for the test to see
            await self.events.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        await self.events.put(None)

    async def next(self, wait: float = WAIT) -> pb.SubscribeEvent | BaseException | None:
        return await asyncio.wait_for(self.events.get(), wait)

    async def until(
        self, kind: str, wait: float = WAIT, *, skip_heartbeats: bool = True
    ) -> list[pb.SubscribeEvent]:
        """Events up to and including the first of ``kind``."""
        out: list[pb.SubscribeEvent] = []
        while True:
            event = await self.next(wait)
            if not isinstance(event, pb.SubscribeEvent):
                raise AssertionError(f"stream ended ({event!r}) before a {kind} event")
            if skip_heartbeats and event.WhichOneof("event") == "heartbeat":
                continue
            out.append(event)
            if event.WhichOneof("event") == kind:
                return out

    async def messages(self, n: int, wait: float = WAIT) -> list[pb.QueuedMessage]:
        out: list[pb.QueuedMessage] = []
        while len(out) < n:
            event = await self.next(wait)
            if not isinstance(event, pb.SubscribeEvent):
                raise AssertionError(f"stream ended ({event!r}) after {len(out)} of {n}")
            if event.WhichOneof("event") == "message":
                out.append(event.message)
        return out

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def subs() -> AsyncIterator[Callable[..., Subscription]]:
    opened: list[Subscription] = []

    def subscribe(device: Device, after: int = 0, limit: int = 0) -> Subscription:
        sub = Subscription(device, after, limit).start()
        opened.append(sub)
        return sub

    yield subscribe
    for sub in opened:
        await sub.close()


async def pair(api: Api) -> tuple[Device, Device]:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    return alice, bob


def ids(messages: list[pb.QueuedMessage]) -> list[str]:
    return [m.message_id for m in messages]


async def test_subscribe_drains_pending_in_pages_then_pushes_in_order(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    before = [uuid.uuid4() for _ in range(5)]
    for mid in before:
        await alice.send((bob.box_id, b"old " + mid.bytes, mid))
    sub = subs(bob, limit=2)  # five pending messages: three pages
    opening = await sub.until("live")
    assert ids([e.message for e in opening[:-1]]) == [str(m) for m in before]
    assert opening[-1].live.after == opening[-2].message.position
    after = [uuid.uuid4() for _ in range(4)]
    for mid in after:
        await alice.send((bob.box_id, b"new", mid))
    pushed = await sub.messages(4)
    assert ids(pushed) == [str(m) for m in after]
    positions = [m.position for m in pushed]
    assert positions == sorted(positions)
    assert min(positions) > opening[-2].message.position
    # Acks still go through Ack and move the cursor.
    reply = await bob.ack(positions[-1])
    assert reply.cursor == positions[-1]
    ordered = api.store.capabilities.ordered_visibility.supported
    assert not (await bob.fetch()).messages or not ordered


async def test_resume_after_disconnect_loses_nothing(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    sent = [uuid.uuid4() for _ in range(12)]
    first = subs(bob)
    await first.until("live")
    for mid in sent[:6]:
        await alice.send((bob.box_id, b"x", mid))
    got = await first.messages(4)  # processed four of six, then the link drops
    await bob.ack(got[1].position)  # and acked only two of those
    await first.close()
    for mid in sent[6:]:
        await alice.send((bob.box_id, b"y", mid))
    second = subs(bob, after=got[-1].position)
    opening = await second.until("live")
    seen = {m.message_id for m in got}
    for event in opening[:-1]:
        seen.add(event.message.message_id)
    assert seen == {str(m) for m in sent}
    # Without the resume point the stream starts at the cursor: still whole.
    await second.close()
    third = subs(bob)
    replay = [e.message.message_id for e in (await third.until("live"))[:-1]]
    assert set(replay) | {m.message_id for m in got[:2]} == {str(m) for m in sent}


async def test_ephemeral_reaches_only_streaming_devices_and_is_never_stored(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    carol = await Device(api, email("carol")).join()  # never streams
    sub = subs(bob)
    await sub.until("live")
    mid = uuid.uuid4()
    reply = await alice.call(
        "Send",
        pb.SendRequest(
            ephemeral=True,
            messages=[
                pb.OutgoingMessage(
                    recipient_box_id=str(bob.box_id), message_id=str(mid), ciphertext=b"typing"
                ),
                pb.OutgoingMessage(
                    recipient_box_id=str(carol.box_id), message_id=str(mid), ciphertext=b"typing"
                ),
                pb.OutgoingMessage(
                    recipient_box_id=str(uuid.uuid4()), message_id=str(mid), ciphertext=b"x"
                ),
            ],
        ),
        pb.SendResponse,
    )
    outcomes = [r.outcome for r in reply.results]
    assert outcomes[:2] == [pb.SEND_OUTCOME_EPHEMERAL, pb.SEND_OUTCOME_EPHEMERAL]
    assert (outcomes[2], reply.results[2].reason) == (pb.SEND_OUTCOME_REJECTED, "NOT_FOUND")
    assert all(r.position == 0 for r in reply.results)
    event = (await sub.until("ephemeral"))[-1].ephemeral
    assert (event.message_id, event.ciphertext, event.position) == (str(mid), b"typing", 0)
    assert event.sender_box_id == str(alice.box_id)
    # Nothing was stored: not for the online device, not for the offline one.
    assert list((await bob.fetch()).messages) == []
    assert list((await carol.fetch()).messages) == []
    late = subs(carol)
    opening = await late.until("live")
    assert [e.WhichOneof("event") for e in opening] == ["live"]
    # A stored message after it still arrives normally.
    await alice.send((bob.box_id, b"stored", None))
    assert (await sub.messages(1))[0].ciphertext == b"stored"


async def test_stream_limit_per_device(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_limit=2, stream_poll=SLOW_POLL)
    _alice, bob = await pair(api)
    one, two = subs(bob), subs(bob)
    await one.until("live")
    await two.until("live")
    third = subs(bob)
    end = await third.next()
    assert isinstance(end, grpc.aio.AioRpcError)
    assert end.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(end) == "STREAM_LIMIT"
    await one.close()
    for _ in range(100):  # the server notices the cancelled stream
        if api.server.service.realtime.hub.streams_of(bob.box_id, bob.device_id) < 2:
            break
        await asyncio.sleep(0.05)
    await subs(bob).until("live")


async def test_subscribe_needs_hawk(api: Api) -> None:
    call = api.channel.unary_stream(
        SERVICE + "Subscribe",
        request_serializer=pb.SubscribeRequest.SerializeToString,
        response_deserializer=pb.SubscribeEvent.FromString,
    )(pb.SubscribeRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(caught.value) == "HAWK_MISSING"


async def test_a_stream_that_stops_reading_is_bounded_and_told_to_catch_up(
    make_api: Callable[..., Any],
) -> None:
    bound = 4
    api = await make_api(stream_buffer=bound, stream_stall=0.5, stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    realtime = api.server.service.realtime
    assert bob.signer is not None
    path = SERVICE + "Subscribe"
    payload = pb.SubscribeRequest().SerializeToString()
    call = bob.stub_channel.unary_stream(
        path, request_serializer=None, response_deserializer=pb.SubscribeEvent.FromString
    )(payload, metadata=bob.signer.sign(path, payload))
    while (await call.read()).WhichOneof("event") != "live":
        pass
    # From here the client stops reading; the call stays open.
    big = 60_000  # large messages fill HTTP/2 flow-control windows quickly
    sent = []
    for i in range(120):
        mid = uuid.uuid4()
        sent.append(str(mid))
        await alice.send((bob.box_id, bytes([i % 256]) * big, mid))
        if realtime.metrics.buffer_peak >= bound and i % 10 == 0:
            await asyncio.sleep(0)  # let the stream notice
    for _ in range(200):
        if _catch_ups(realtime) >= 1:
            break
        await asyncio.sleep(0.05)
    assert _catch_ups(realtime) == 1
    assert realtime.metrics.buffer_peak == bound  # filled to its bound, never past it
    # The client reads again: what the transport held, then catch-up, then OK.
    got: list[str] = []
    highest = 0
    while (event := await call.read()) is not grpc.aio.EOF:
        kind = event.WhichOneof("event")
        if kind == "message":
            got.append(event.message.message_id)
            highest = max(highest, event.message.position)
        elif kind == "catch_up":
            assert event.catch_up.reason == "SLOW_CONSUMER"
            assert event.catch_up.after == highest
            break
    else:
        raise AssertionError("the stream ended without a catch-up event")
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert got == sent[: len(got)] and len(got) < len(sent)
    # Catching up with Fetch finds everything (small pages: the messages are big).
    fetched: list[str] = []
    after = 0
    while True:
        page = await bob.fetch(after=after, limit=20)
        fetched += [m.message_id for m in page.messages if m.message_id not in fetched]
        after = page.next_after
        if not page.more:
            break
    assert fetched == sent


def _catch_ups(realtime: Any) -> float:
    return float(realtime.metrics.stream_catch_ups._value.get())


async def test_two_servers_on_one_store_wake_each_other(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """Presence + peer notify, in-process: bob streams from one server,
    alice sends through another over the same database."""
    here = await make_api(stream_poll=SLOW_POLL)
    there = await make_api(stream_poll=SLOW_POLL)
    bob = await Device(here, email("bob")).join()
    alice = await Device(there, email("alice")).join()
    sub = subs(bob)
    await sub.until("live")
    rows = await here.store.list_presence(bob.box_id)
    assert [(r.device_id, r.server_id) for r in rows] == [
        (bob.device_id, here.server.service.realtime.server_id)
    ]
    mids = [uuid.uuid4() for _ in range(3)]
    for mid in mids:
        await alice.send((bob.box_id, b"across", mid))
    assert ids(await sub.messages(3)) == [str(m) for m in mids]
    # Ephemeral messages cross too.
    reply = await alice.call(
        "Send",
        pb.SendRequest(
            ephemeral=True,
            messages=[
                pb.OutgoingMessage(
                    recipient_box_id=str(bob.box_id),
                    message_id=str(uuid.uuid4()),
                    ciphertext=b"typing",
                )
            ],
        ),
        pb.SendResponse,
    )
    assert reply.results[0].outcome == pb.SEND_OUTCOME_EPHEMERAL
    assert (await sub.until("ephemeral"))[-1].ephemeral.ciphertext == b"typing"
    # The stream's end removes the presence row.
    await sub.close()
    for _ in range(100):
        if not await here.store.list_presence(bob.box_id):
            break
        await asyncio.sleep(0.05)
    assert await here.store.list_presence(bob.box_id) == []


def _lookups(api: Api, source: str) -> float:
    assert api.server.service is not None, "the server has started"
    counter = api.server.service.realtime.metrics.presence_lookups
    return float(counter.labels(source)._value.get())


async def test_a_stream_opened_behind_a_cached_presence_read_still_gets_the_message(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """The sending server fans a message out against the box's presence
    read of a moment ago, taken before bob's stream existed, so it notifies
    nobody; bob's stream re-reads the store ``presence_cache_ttl`` after it
    opened (the resync) and gets the message. The poll is 600 s: nothing
    else would deliver it within the wait."""
    ttl = 3.0
    here = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=ttl)
    there = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=ttl)
    bob = await Device(here, email("bob")).join()
    alice = await Device(there, email("alice")).join()
    before, after = uuid.uuid4(), uuid.uuid4()
    await alice.send((bob.box_id, b"before", before))
    for _ in range(200):
        if _lookups(there, "store") == 1:
            break
        await asyncio.sleep(0.01)
    assert _lookups(there, "store") == 1  # the read that the next Send reuses
    sub = subs(bob)
    opening = await sub.until("live")
    assert [e.message.message_id for e in opening if e.HasField("message")] == [str(before)]
    await alice.send((bob.box_id, b"after", after))
    assert ids(await sub.messages(1)) == [str(after)]
    # The wake-up really went by on the cached read (no notify reached bob).
    assert (_lookups(there, "cache"), _lookups(there, "store")) == (1, 1)


async def test_an_ephemeral_reads_presence_afresh_past_the_cache(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """An ephemeral cannot be re-read later, so its fan-out never trusts the
    cache: a stream opened after the cached read still gets it at once."""
    here = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=5)
    there = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=5)
    bob = await Device(here, email("bob")).join()
    alice = await Device(there, email("alice")).join()
    await alice.send((bob.box_id, b"before", uuid.uuid4()))
    sub = subs(bob)
    await sub.until("live")
    reply = await alice.call("Send", ephemeral_to(bob.box_id, b"typing"), pb.SendResponse)
    assert reply.results[0].outcome == pb.SEND_OUTCOME_EPHEMERAL
    # The resync reads only the store, so only a fresh presence read explains it.
    assert (await sub.until("ephemeral"))[-1].ephemeral.ciphertext == b"typing"
    assert _lookups(there, "cache") == 0


async def test_stopping_server_ends_streams_with_ok(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    _alice, bob = await pair(api)
    sub = subs(bob)
    await sub.until("live")
    await api.server.stop(5)
    end = await sub.next()
    while isinstance(end, pb.SubscribeEvent):
        end = await sub.next()
    assert end is None  # the iterator finished: status OK


def ephemeral_to(box_id: uuid.UUID | None, body: bytes) -> pb.SendRequest:
    return pb.SendRequest(
        ephemeral=True,
        messages=[
            pb.OutgoingMessage(
                recipient_box_id=str(box_id), message_id=str(uuid.uuid4()), ciphertext=body
            )
        ],
    )


async def test_an_ephemeral_from_a_device_id_clone_in_another_box_is_delivered(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """A stream skips ephemerals its own device sent, and "its own" is the
    (box, device) pair: a device of another box that happens to carry (or
    copied) the same device id is someone else, whose messages arrive."""
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await pair(api)
    clone = Device(api, name="clone")
    clone.device_id = bob.device_id
    offer = await create_offer(alice)
    await join(clone, offer)
    await approve(alice, offer, clone.device_id)
    await complete(clone, offer)
    sub = subs(bob)
    await sub.until("live")
    await clone.call("Send", ephemeral_to(bob.box_id, b"from the clone"), pb.SendResponse)
    event = (await sub.until("ephemeral"))[-1].ephemeral
    assert (event.sender_box_id, event.ciphertext) == (str(alice.box_id), b"from the clone")


async def stream_end(sub: Subscription) -> grpc.aio.AioRpcError:
    """The next thing the stream yields other than heartbeats: must be its error."""
    while True:
        event = await sub.next()
        if isinstance(event, pb.SubscribeEvent) and event.WhichOneof("event") == "heartbeat":
            continue
        assert isinstance(event, grpc.aio.AioRpcError), f"got {event!r}, not the stream's end"
        return event


async def linked_on(api: Api, owner: Device) -> Device:
    """A second device of ``owner``'s box whose calls go to ``api``."""
    offer = await create_offer(owner)
    new = Device(api, name="tablet")
    await join(new, offer)
    await approve(owner, offer, new.device_id)
    await complete(new, offer)
    return new


async def test_revoking_a_device_ends_its_stream_at_once(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    phone, bob = await pair(api)
    tablet = await linked_on(api, phone)
    sub = subs(tablet)
    await sub.until("live")
    await phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse)
    await bob.call("Send", ephemeral_to(phone.box_id, b"after the revocation"), pb.SendResponse)
    err = await stream_end(sub)
    assert (err.code(), reason(err)) == (grpc.StatusCode.UNAUTHENTICATED, "HAWK_UNKNOWN_ID")


async def test_a_revocation_elsewhere_stops_the_stream_within_the_cache_bound(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """The stream lives on another process than the revocation: once
    ``auth_cache_ttl`` has passed, nothing more reaches it."""
    here = await make_api(stream_poll=SLOW_POLL)
    there = await make_api(stream_poll=SLOW_POLL, auth_cache_ttl=1)
    phone = await Device(here, email("alice")).join()
    bob = await Device(there, email("bob")).join()
    tablet = await linked_on(there, phone)
    sub = subs(tablet)
    await sub.until("live")
    await bob.call("Send", ephemeral_to(phone.box_id, b"before"), pb.SendResponse)
    assert (await sub.until("ephemeral"))[-1].ephemeral.ciphertext == b"before"
    await phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse)
    await asyncio.sleep(1.1)  # the bound: auth_cache_ttl on the stream's server
    await bob.call("Send", ephemeral_to(phone.box_id, b"after"), pb.SendResponse)
    err = await stream_end(sub)
    assert (err.code(), reason(err)) == (grpc.StatusCode.UNAUTHENTICATED, "HAWK_UNKNOWN_ID")


async def test_a_burst_of_large_ephemerals_crosses_to_another_server_whole(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    """A peer batches ephemeral messages by bytes, so a burst larger than
    what one Notify may carry (rossby.server.sizes) goes in several calls
    instead of one the receiver refuses."""
    settings = {"stream_poll": SLOW_POLL, "max_recipients": 16, "max_message_bytes": 65536}
    here = await make_api(**settings)
    there = await make_api(**settings)
    bob = await Device(here, email("bob")).join()
    alice = await Device(there, email("alice")).join()
    sub = subs(bob)
    await sub.until("live")
    bodies = [bytes([i]) * 65536 for i in range(16)]
    reply = await alice.call(
        "Send",
        pb.SendRequest(
            ephemeral=True,
            messages=[
                pb.OutgoingMessage(
                    recipient_box_id=str(bob.box_id), message_id=str(uuid.uuid4()), ciphertext=b
                )
                for b in bodies
            ],
        ),
        pb.SendResponse,
    )
    assert {r.outcome for r in reply.results} == {pb.SEND_OUTCOME_EPHEMERAL}
    got = []
    for _ in bodies:
        got.append((await sub.until("ephemeral"))[-1].ephemeral.ciphertext)
    assert got == bodies
