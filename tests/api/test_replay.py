"""A signed request is accepted once by the whole deployment (docs/security.md,
"Replays across processes").

Two servers on one store stand for two worker processes or two servers of a
region: they sign for the same public host and port (``public_port``), as
the processes behind one address do, and each has its own in-memory nonce
cache. Before requests were claimed in the store, each of these replays was
answered OK by the second server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.client.hawk import HawkSigner
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import SERVICE, Device, email
from tests.serverproc import free_port
from tests.support.grpc_errors import expect

C = grpc.StatusCode
Metadata = list[tuple[str, str]]


async def servers(make_api: Callable[..., Any], **settings: Any) -> tuple[Api, Api, int]:
    """Two servers behind one public address (the port both sign for)."""
    public = free_port()
    a = await make_api(public_port=public, **settings)
    b = await make_api(public_port=public, **settings)
    return a, b, public


async def joined(api: Api, public_port: int, name: str) -> Device:
    device = await Device(api, email(name)).join()
    assert device.signer is not None and device.box_id is not None
    device.signer = HawkSigner(
        f"{device.box_id}.{device.device_id}",
        device.hawk_key,
        "127.0.0.1",
        public_port,
        clock=api.clock,
    )
    return device


def signed(device: Device, method: str, request: Any) -> tuple[bytes, Metadata]:
    """One captured request: its exact bytes and Hawk header."""
    assert device.signer is not None
    payload = request.SerializeToString()
    return payload, list(device.signer.sign(SERVICE + method, payload))


async def deliver(api: Api, method: str, captured: tuple[bytes, Metadata]) -> bytes:
    payload, metadata = captured
    call = api.channel.unary_unary(
        SERVICE + method, request_serializer=None, response_deserializer=None
    )
    return await call(payload, metadata=metadata, timeout=30)  # type: ignore[no-any-return]  # grpc is untyped


async def outcome(api: Api, method: str, captured: tuple[bytes, Metadata]) -> str:
    """``OK`` or the refusal's ErrorInfo reason."""
    try:
        await deliver(api, method, captured)
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        return str(info.reason) if info is not None else str(exc.code().name)
    return "OK"


async def test_a_fetch_replayed_to_another_server_is_refused(
    make_api: Callable[..., Any],
) -> None:
    a, b, public = await servers(make_api)
    alice = await joined(a, public, "alice")
    captured = signed(alice, "Fetch", pb.FetchRequest(limit=5))
    assert await outcome(a, "Fetch", captured) == "OK"
    assert await outcome(b, "Fetch", captured) == "HAWK_REPLAY"
    assert await outcome(a, "Fetch", captured) == "HAWK_REPLAY"


async def test_a_replayed_sender_rule_does_not_undo_a_later_one(
    make_api: Callable[..., Any],
) -> None:
    """The issue's attack: replay an old "block" after the user unblocked."""
    a, b, public = await servers(make_api)
    alice = await joined(a, public, "alice")
    mallory = await joined(a, public, "mallory")
    block = signed(
        alice,
        "SetSenderRule",
        pb.SetSenderRuleRequest(box_id=str(mallory.box_id), rule=pb.SENDER_RULE_BLOCKED),
    )
    assert await outcome(a, "SetSenderRule", block) == "OK"
    await alice.call(
        "SetSenderRule",
        pb.SetSenderRuleRequest(box_id=str(mallory.box_id), rule=pb.SENDER_RULE_NONE),
        pb.SetSenderRuleResponse,
    )
    await expect(C.UNAUTHENTICATED, "HAWK_REPLAY", deliver(b, "SetSenderRule", block))
    blocked = await alice.call(
        "ListSenderRules",
        pb.ListSenderRulesRequest(rule=pb.SENDER_RULE_BLOCKED),
        pb.ListSenderRulesResponse,
    )
    assert str(mallory.box_id) not in blocked.box_ids


async def test_a_replayed_send_is_refused_and_stores_nothing_more(
    make_api: Callable[..., Any],
) -> None:
    """Send runs alongside its claim (it is idempotent): the replay is still
    refused, and the recipient sees the message once."""
    a, b, public = await servers(make_api)
    alice = await joined(a, public, "alice")
    bob = await joined(a, public, "bob")
    message = pb.OutgoingMessage(
        recipient_box_id=str(bob.box_id), ciphertext=b"once", message_id=str(uuid.uuid4())
    )
    captured = signed(alice, "Send", pb.SendRequest(messages=[message]))
    assert await outcome(a, "Send", captured) == "OK"
    assert await outcome(b, "Send", captured) == "HAWK_REPLAY"
    page = await bob.fetch()
    assert [m.ciphertext for m in page.messages] == [b"once"]


@pytest.mark.parametrize("method", ["Fetch", "UpdateProfile"])
async def test_of_a_request_raced_to_two_servers_at_most_one_is_answered(
    make_api: Callable[..., Any], method: str
) -> None:
    """Concurrent copies: a read (handler alongside the claim) and a write
    (claim first). Several captured requests, each raced three times to each
    server; a request may be refused everywhere, never accepted twice (only
    replays race: a client signs each attempt afresh)."""
    a, b, public = await servers(make_api)
    alice = await joined(a, public, "alice")
    request: Any = (
        pb.FetchRequest(limit=1)
        if method == "Fetch"
        else pb.UpdateProfileRequest(discoverable=True)
    )
    accepted: list[int] = []
    for _ in range(10):
        captured = signed(alice, method, request)
        answers = await asyncio.gather(
            *(outcome(api, method, captured) for api in (a, b, a, b, a, b))
        )
        assert set(answers) <= {"OK", "HAWK_REPLAY"}, answers
        accepted.append(answers.count("OK"))
    assert max(accepted) <= 1, accepted
    # Racing copies may all be refused (Cassandra's claims then all see each
    # other); a request sent once is still accepted on either server.
    for api in (a, b):
        assert await outcome(api, method, signed(alice, method, request)) == "OK"


async def test_a_request_signed_for_another_region_does_not_verify(
    make_api: Callable[..., Any],
) -> None:
    """Regions sign different public host names, so a request captured in one
    fails the MAC in another before any nonce is looked at."""
    public = free_port()
    here = await make_api(public_host="rossby-dc1.example.org", public_port=public)
    there = await make_api(public_host="rossby-dc2.example.org", public_port=public)
    alice = await Device(here, email("alice")).join()
    assert alice.box_id is not None
    alice.signer = HawkSigner(
        f"{alice.box_id}.{alice.device_id}",
        alice.hawk_key,
        "rossby-dc1.example.org",
        public,
        clock=here.clock,
    )
    captured = signed(alice, "Fetch", pb.FetchRequest(limit=1))
    assert await outcome(here, "Fetch", captured) == "OK"
    assert await outcome(there, "Fetch", captured) == "HAWK_BAD_MAC"
