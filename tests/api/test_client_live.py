"""``RossbyClient.listen``, typing and read receipts against a real server,
on each store backend. Servers run with a long safety-net poll, so what
arrives here arrived because the server pushed it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rossby import errors
from rossby.client import (
    LiveEvent,
    ReadReceipt,
    ReceivedMessage,
    Reconnecting,
    RossbyClient,
    Typing,
    UpToDate,
)
from tests.api.conftest import Join

SLOW_POLL = 600
WAIT = 20.0


class Listener:
    """``client.listen(...)`` consumed by a task into a queue."""

    def __init__(self, client: RossbyClient, **options: Any) -> None:
        self.events: asyncio.Queue[LiveEvent | BaseException] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(client, options))

    async def _run(self, client: RossbyClient, options: dict[str, Any]) -> None:
        try:
            async for event in client.listen(**options):
                await self.events.put(event)
        except Exception as exc:
            await self.events.put(exc)

    async def next_of(self, kind: type[Any], wait: float = WAIT) -> Any:
        while True:
            event = await asyncio.wait_for(self.events.get(), wait)
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, kind):
                return event

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def listeners() -> AsyncIterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def listen(client: RossbyClient, **options: Any) -> Listener:
        listener = Listener(client, **options)
        made.append(listener)
        return listener

    yield listen
    for listener in made:
        await listener.stop()


def contact_of(client: RossbyClient) -> str:
    return client.whoami().contacts[0]


async def test_listen_decrypts_pushes_and_acks(
    make_api: Callable[..., Any], clients: Join, listeners: Callable[..., Listener]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    await bob.resolve(contact_of(alice))  # so bob knows alice by her contact
    await alice.send([contact_of(bob)], "before")
    listener = listeners(bob)
    first = await listener.next_of(ReceivedMessage)
    assert (first.text, first.sender_contact) == ("before", contact_of(alice))
    await listener.next_of(UpToDate)
    for text in ("one", "two", "three"):
        await alice.send([contact_of(bob)], text)
    got = [(await listener.next_of(ReceivedMessage)).text for _ in range(3)]
    assert got == ["one", "two", "three"]
    # Processed messages were acked: the cursor passed them.
    for _ in range(100):
        if bob.stats.acked_through >= first.position:
            break
        await asyncio.sleep(0.05)
    await listener.stop()
    assert [e async for e in bob.fetch_messages()] == []


async def test_typing_reaches_a_listening_contact_and_is_not_stored(
    make_api: Callable[..., Any], clients: Join, listeners: Callable[..., Listener]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    carol = await clients(api, "carol")  # offline
    await bob.resolve(contact_of(alice))
    listener = listeners(bob)
    await listener.next_of(UpToDate)
    report = await alice.typing(contact_of(bob))
    assert [r.outcome for r in report.results] == ["ephemeral"]
    typing = await listener.next_of(Typing)
    assert (typing.active, typing.sender_contact) == (True, contact_of(alice))
    await alice.typing(contact_of(bob), active=False)
    assert (await listener.next_of(Typing)).active is False
    offline = await alice.typing(contact_of(carol))
    assert [r.outcome for r in offline.results] == ["ephemeral"]
    assert [e async for e in carol.fetch_messages()] == []
    await listener.stop()
    assert [e async for e in bob.fetch_messages()] == []


async def test_read_receipts_flow_back_to_the_sender(
    make_api: Callable[..., Any], clients: Join, listeners: Callable[..., Listener]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    await bob.resolve(contact_of(alice))
    bob_side = listeners(bob, receipts=True)
    alice_side = listeners(alice)
    await bob_side.next_of(UpToDate)
    await alice_side.next_of(UpToDate)
    report = await alice.send([contact_of(bob)], "did you read this?")
    assert (await bob_side.next_of(ReceivedMessage)).text == "did you read this?"
    receipt = await alice_side.next_of(ReadReceipt)
    assert receipt.message_ids == (report.message_id,)
    assert receipt.reader_box == bob.box_id
    assert receipt.reader_contact == contact_of(bob)


async def test_listen_resumes_after_the_server_restarts(
    make_api: Callable[..., Any], clients: Join, listeners: Callable[..., Listener]
) -> None:
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    listener = listeners(bob, min_backoff=0.05, max_backoff=0.2)
    await listener.next_of(UpToDate)
    await alice.send([contact_of(bob)], "one")
    assert (await listener.next_of(ReceivedMessage)).text == "one"
    port = api.server.port
    await api.server.stop(1)
    assert isinstance(await listener.next_of(Reconnecting), Reconnecting)
    again = await make_api(stream_poll=SLOW_POLL, listen=f"127.0.0.1:{port}")
    assert again.server.port == port
    for text in ("two", "three"):
        for _ in range(100):  # alice's channel reconnects with its own back-off
            try:
                await alice.send([contact_of(bob)], text)
                break
            except errors.Unavailable:
                await asyncio.sleep(0.1)
    texts: list[str] = []
    while len(texts) < 2:
        texts.append((await listener.next_of(ReceivedMessage)).text)
    assert texts == ["two", "three"]
    # Exactly once: nothing more is waiting, not even a repeat.
    with pytest.raises(TimeoutError):
        await listener.next_of(ReceivedMessage, wait=1.0)


async def test_a_message_id_is_never_shown_twice_across_reconnects(
    make_api: Callable[..., Any], clients: Join, listeners: Callable[..., Listener]
) -> None:
    """The stream is cut while messages flow; the resumed stream repeats
    nothing the consumer saw and misses nothing it did not."""
    api = await make_api(stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    seen: list[uuid.UUID] = []
    sent: list[uuid.UUID] = []

    async def consume(limit: int) -> None:
        async for event in bob.listen(min_backoff=0.05):
            if isinstance(event, ReceivedMessage):
                seen.append(event.message_id)
                if len(seen) >= limit:
                    return

    first = asyncio.create_task(consume(5))
    for i in range(10):
        sent.append((await alice.send([contact_of(bob)], f"m{i}")).message_id)
    await asyncio.wait_for(first, WAIT)
    for i in range(10, 15):
        sent.append((await alice.send([contact_of(bob)], f"m{i}")).message_id)
    await asyncio.wait_for(consume(len(sent)), WAIT)
    assert seen == sent


async def test_listen_rides_over_stream_max_age_without_loss_or_repeats(
    make_api: Callable[..., Any], clients: Join
) -> None:
    """Streams (and connections) end every second here; the SDK resubscribes
    from what it processed each time, so the consumer sees every message
    exactly once, in order."""
    api = await make_api(stream_max_age=1, stream_poll=SLOW_POLL)
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    sent: list[uuid.UUID] = []
    seen: list[uuid.UUID] = []
    reasons: list[str] = []

    async def consume() -> None:
        async for event in bob.listen(min_backoff=0.05):
            if isinstance(event, Reconnecting):
                reasons.append(event.reason)
            elif isinstance(event, ReceivedMessage):
                seen.append(event.message_id)
                if len(seen) == 12:
                    return

    listening = asyncio.create_task(consume())
    for i in range(12):  # about four stream lifetimes
        sent.append((await alice.send([contact_of(bob)], f"m{i}")).message_id)
        await asyncio.sleep(0.3)
    await asyncio.wait_for(listening, WAIT)
    assert seen == sent
    assert len(reasons) >= 2 and set(reasons) == {"SERVER_CLOSED"}
    assert [e async for e in bob.fetch_messages()] == []  # all acked, none left over
