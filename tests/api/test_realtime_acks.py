"""How far a Subscribe client may ack, against real servers on each store
backend (tests/api/conftest.py): the stream reads with ``after``, so a
message that lands below what it already sent is only delivered by a later
re-read below it, and the client's acks must not start that re-read above it
(docs/store.md, "Long sweeps")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from rossby.client import ReceivedMessage, RossbyClient, UpToDate
from tests.api.conftest import Join
from tests.api.device import Device, email
from tests.api.test_client_live import Listener, contact_of
from tests.api.test_realtime import Subscription

SLOW_POLL = 600  # seconds: the stream never re-reads on its own within the test
WAIT = 20.0


class Scene:
    """Bob listens on server ``a``; a message from a writer whose clock is
    behind (server ``b``) lands below one bob's stream already sent, and its
    wake-up is lost (``a`` advertises a peer address that refuses, as a
    process that died); then the stream goes on for longer than the settle
    window. On SQLite (positions in commit order) nothing lands late and
    no clock moves."""

    def __init__(self, a: Any, b: Any, bob: RossbyClient, alice: RossbyClient, carol: RossbyClient):
        self.a, self.b, self.bob, self.alice, self.carol = a, b, bob, alice, carol

    @classmethod
    async def start(cls, make_api: Callable[..., Any], clients: Join, poll: float) -> Scene:
        a = await make_api(
            stream_poll=poll,
            presence_cache_ttl=0,  # no resync read a moment after the stream opens
            peer_listen="127.0.0.1:0",
            peer_address="127.0.0.1:9",  # nothing listens: b's Notify is refused
        )
        b = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=0)
        bob, carol = await clients(a, "bob"), await clients(a, "carol")
        alice = await clients(b, "alice")
        for contact in (contact_of(alice), contact_of(carol)):
            await bob.resolve(contact)
        # alice's session with bob is set up beforehand, so her late Send is
        # one quick call; bob fetches (and acks) this first message.
        await alice.send([contact_of(bob)], "hello")
        got = [e.text async for e in bob.fetch_messages() if isinstance(e, ReceivedMessage)]
        assert got == ["hello"]
        return cls(a, b, bob, alice, carol)

    async def play(self, **options: Any) -> tuple[list[str], Listener]:
        """Send "first", "late" and "last" around bob's ``listen(**options)``;
        answer what it received before "late" was sent, and the listener."""
        clocked = not self.a.store.capabilities.ordered_visibility.supported
        before = self.a.clock()
        await self.carol.send([contact_of(self.bob)], "first")
        listener = Listener(self.bob, **options)
        texts = [(await listener.next_of(ReceivedMessage)).text]
        await listener.next_of(UpToDate)
        if clocked:
            # b's clock now reads a second before "first" was queued, within
            # the skew the settle window tolerates: "late" lands below it.
            self.b.clock.advance(before - 1.0 - self.b.clock())
        await self.alice.send([contact_of(self.bob)], "late")
        if clocked:
            self.a.clock.advance(6.0)  # the stream goes on past the settle window
        await self.carol.send([contact_of(self.bob)], "last")
        return texts, listener


async def test_a_stream_never_lets_its_client_ack_past_a_message_it_read_over(
    make_api: Callable[..., Any], clients: Join
) -> None:
    """The stream does not re-read on its own here (no poll) and bob's client
    acks what it processed. Had it acked the highest position, the next read
    (from the cursor less the settle window) would start above the late
    message and it would never be delivered."""
    scene = await Scene.start(make_api, clients, poll=SLOW_POLL)
    texts, listener = await scene.play(max_messages=2)  # acks, then returns, after two
    await asyncio.wait_for(listener.task, WAIT)  # flushed its acks
    while not listener.events.empty():
        event = listener.events.get_nowait()
        if isinstance(event, ReceivedMessage):
            texts.append(event.text or "")
    async for event in scene.bob.fetch_messages():
        if isinstance(event, ReceivedMessage):
            texts.append(event.text or "")
    assert sorted(texts) == ["first", "last", "late"]


async def test_the_streams_poll_rereads_below_what_its_client_may_ack(
    make_api: Callable[..., Any], clients: Join
) -> None:
    """With its poll on, the stream itself delivers the late message: the
    poll re-reads a settle window below the ack limit, not below the highest
    position sent (which is more than the window above the late message)."""
    scene = await Scene.start(make_api, clients, poll=1.0)
    texts, listener = await scene.play()
    while len(texts) < 3:
        texts.append((await listener.next_of(ReceivedMessage)).text)
    await listener.stop()
    assert sorted(texts) == ["first", "last", "late"]


async def test_events_carry_how_far_the_client_may_ack(make_api: Callable[..., Any]) -> None:
    """``SubscribeEvent.ack_limit``: 0 (no limit) with ordered visibility.
    Otherwise, while the first drain reads a backlog, each message may be
    acked a settle window past its own position (everything below it was
    read); ``live`` up to the store's head when the drain began. A message
    pushed to the idle stream is read from below that limit less the window,
    so it may be acked in full; one pushed right after is read from above
    (from the position sent last) and raises nothing."""
    api = await make_api(stream_poll=SLOW_POLL, presence_cache_ttl=0)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    clocked = not api.store.capabilities.ordered_visibility.supported
    backlog = []
    for i in range(3):
        reply = await alice.send((bob.box_id, f"m{i}".encode(), uuid.uuid4()))
        backlog.append(reply.results[0].position)
        api.clock.advance(1.0 if clocked else 0.0)
    settle = api.store.settle_window
    if clocked:
        api.clock.advance(20.0)  # the backlog lies well over a window below the head
    sub = Subscription(bob, limit=1).start()  # one message per read
    pushed: list[tuple[int, int]] = []
    try:
        events = await sub.until("live")
        got = [(e.message.position, e.ack_limit) for e in events if e.HasField("message")]
        live = events[-1].ack_limit
        for body in (b"idle", b"right after"):
            await alice.send((bob.box_id, body, uuid.uuid4()))
            (event,) = [e for e in await sub.until("message") if e.HasField("message")]
            pushed.append((event.message.position, event.ack_limit))
    finally:
        await sub.close()
    limits = [limit for _, limit in got + pushed] + [live]
    if not clocked:
        assert limits == [0] * 6
        return
    assert got == [(p, p + settle) for p in backlog]
    assert backlog[-1] + settle < live
    (idle, idle_limit), (after, after_limit) = pushed
    assert live <= idle <= idle_limit < after
    assert after_limit == idle_limit
