"""Disappearing messages through a real channel: Send's per-recipient
``expire_after_seconds``, ``QueuedMessage.expires_at_ms``, and that neither
Fetch nor a Subscribe stream hands a message out after it expired (the
server's clock is moved; the signer follows it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api, MakeApi
from tests.api.device import SERVICE, Device, email

TTL = 3600


def outgoing(box: uuid.UUID, body: bytes, expire_after: int = 0) -> pb.OutgoingMessage:
    return pb.OutgoingMessage(
        recipient_box_id=str(box),
        message_id=str(uuid.uuid4()),
        ciphertext=body,
        expire_after_seconds=expire_after,
    )


async def send(alice: Device, *messages: pb.OutgoingMessage) -> pb.SendResponse:
    return await alice.call("Send", pb.SendRequest(messages=messages), pb.SendResponse)


async def pair(api: Api) -> tuple[Device, Device]:
    return await Device(api, email("alice")).join(), await Device(api, email("bob")).join()


async def test_expire_after_above_the_ttl_is_rejected_for_that_recipient_only(
    make_api: MakeApi,
) -> None:
    api = await make_api(message_ttl=TTL)
    alice, bob = await pair(api)
    carol = await Device(api, email("carol")).join()
    reply = await send(
        alice,
        outgoing(bob.box_id, b"too long", TTL + 1),
        outgoing(carol.box_id, b"at the ttl", TTL),
        outgoing(bob.box_id, b"short", 30),
    )
    over, at_ttl, brief = reply.results
    assert (over.outcome, over.code, over.reason) == (
        pb.SEND_OUTCOME_REJECTED,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "EXPIRE_AFTER_INVALID",
    )
    assert at_ttl.outcome == brief.outcome == pb.SEND_OUTCOME_QUEUED
    assert [m.ciphertext for m in await bob.drain()] == [b"short"]
    assert [m.ciphertext for m in await carol.drain()] == [b"at the ttl"]


async def test_expires_at_ms_is_set_and_honoured_by_fetch(make_api: MakeApi) -> None:
    api = await make_api(message_ttl=TTL)
    alice, bob = await pair(api)
    short = outgoing(bob.box_id, b"gone in 30 s", 30)
    normal = outgoing(bob.box_id, b"stays")
    first = await send(alice, short, normal)
    assert [r.outcome for r in first.results] == [pb.SEND_OUTCOME_QUEUED] * 2
    page = await bob.fetch()
    got = {m.ciphertext: m for m in page.messages}
    for m, lifetime in ((got[b"gone in 30 s"], 30), (got[b"stays"], TTL)):
        assert abs(m.expires_at_ms - (m.received_at_ms + lifetime * 1000)) <= 5, m
    api.clock.advance(31)
    assert [m.ciphertext for m in (await bob.fetch()).messages] == [b"stays"]
    # A retry of the expired message is a duplicate: nothing queued again.
    retry = await send(alice, short)
    assert retry.results[0].outcome == pb.SEND_OUTCOME_DUPLICATE
    assert retry.results[0].position == first.results[0].position
    assert [m.ciphertext for m in await bob.drain()] == [b"stays"]


async def test_an_ephemeral_send_ignores_expire_after(api: Api) -> None:
    alice, bob = await pair(api)
    reply = await alice.call(
        "Send",
        pb.SendRequest(messages=[outgoing(bob.box_id, b"typing", 10**9)], ephemeral=True),
        pb.SendResponse,
    )
    assert reply.results[0].outcome == pb.SEND_OUTCOME_EPHEMERAL


async def test_a_stream_drops_a_message_that_expired_in_its_queue(
    make_api: Callable[..., Any],
) -> None:
    """A short-lived message already read from the store waits in a
    stream's queue (the client is not reading); the server's clock then
    passes its expiry. Once the client reads, everything arrives except it.

    The messages are queued before the stream opens, so its first read
    holds them all; the queue reaching its bound proves the stream's writes
    are blocked, and the short-lived one (second to last) still unwritten."""
    bound = 4
    api = await make_api(
        message_ttl=TTL,
        stream_buffer=bound,
        stream_stall=300,
        stream_write_timeout=300,
        stream_poll=600,
    )
    alice, bob = await pair(api)
    realtime = api.server.service.realtime
    big = 60_000  # fills the HTTP/2 flow-control windows, then the queue
    for i in range(100):
        await send(alice, outgoing(bob.box_id, bytes([i % 256]) * big))
    short = outgoing(bob.box_id, b"short-lived", 30)
    marker = outgoing(bob.box_id, b"marker")
    await send(alice, short)
    await send(alice, marker)
    assert bob.signer is not None
    path = SERVICE + "Subscribe"
    payload = pb.SubscribeRequest(limit=200).SerializeToString()
    call = bob.stub_channel.unary_stream(
        path, request_serializer=None, response_deserializer=pb.SubscribeEvent.FromString
    )(payload, metadata=bob.signer.sign(path, payload))
    for _ in range(200):
        if realtime.metrics.buffer_peak >= bound:
            break
        await asyncio.sleep(0.05)
    assert realtime.metrics.buffer_peak >= bound, "the stream's queue never filled"
    api.clock.advance(31)
    got: list[bytes] = []
    for _ in range(1000):
        event = await asyncio.wait_for(call.read(), 30)
        assert event is not grpc.aio.EOF, "the stream ended early"
        if event.WhichOneof("event") == "message":
            got.append(event.message.ciphertext)
            if event.message.message_id == marker.message_id:
                break
    call.cancel()
    assert len(got) == 101 and got[-1] == b"marker"
    assert b"short-lived" not in got
