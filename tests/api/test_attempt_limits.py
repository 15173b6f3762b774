"""Wrong-code limits are exact under a concurrent burst, through real gRPC
channels to two server processes sharing one store, on each backend (issue
16, finding 3).

A compared code is observable: a wrong one answers CODE_INVALID (or
LINK_PROOF_INVALID) with ``attempts_left``, down to 0, and a call with no
attempt left answers TOO_MANY_ATTEMPTS without comparing. So each test
counts the compared guesses of a burst and checks they never exceed
``code_attempts``, and that the store counted every one of them (no
reservation lost under contention). Before the fix, every guess of a burst
passed the check before any was counted: the store's counter ran past the
limit (SQLite) or gave up under contention (Cassandra).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest

from rossby.client.hawk import HawkSigner
from rossby.contacts import normalize
from rossby.crypto.link import derive_link_keys, new_passphrase
from rossby.server.notify import read_outbox_code
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, contact, email, reason
from tests.api.test_accounts import create_offer, join_request

LIMIT = 5
BURST = 40
#: Answers that say the guess was not compared (retryable ones included).
NOT_COMPARED = {"TOO_MANY_ATTEMPTS", "ATTEMPT_CONTENDED", "STORE_UNAVAILABLE"}


async def servers(make_api: Callable[..., Any]) -> list[Api]:
    """Two serving processes on one store; no per-address limit (this is
    about the per-registration one)."""
    settings = {"code_attempts": LIMIT, "authorize_failures_per_address": "0"}
    return [await make_api(**settings), await make_api(**settings)]


def on(dev: Device, api: Api) -> Device:
    """The same registered device, talking to another server."""
    assert dev.signer is not None
    clone = copy.copy(dev)
    clone.api = api
    clone.signer = HawkSigner(
        dev.signer.credentials_id, dev.hawk_key, "127.0.0.1", api.server.port, clock=api.clock
    )
    return clone


async def tally(calls: Sequence[Awaitable[object]], wrong: str) -> dict[str, int]:
    """Run ``calls`` at once; count the answers by reason ("OK" for success)."""
    counts: dict[str, int] = {}
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, grpc.aio.AioRpcError):
            key = reason(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            key = "OK"
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) <= {wrong, "OK"} | NOT_COMPARED, counts
    return counts


async def test_a_burst_of_wrong_codes_compares_at_most_the_limit(
    make_api: Callable[..., Any],
) -> None:
    apis = await servers(make_api)
    dev = Device(apis[0], email("burst"))
    await dev.register()
    right = dev.codes()[0]
    calls = []
    for i in range(BURST):
        guess = f"{(int(right) + 1 + i) % 10**6:06d}"
        calls.append(on_public(dev, apis[i % 2], dev.authorize_request([guess])))
    counts = await tally(calls, "CODE_INVALID")
    compared = counts.get("CODE_INVALID", 0)
    registration = await apis[1].store.get_registration(dev.device_id)
    assert registration is not None
    assert registration.attempts <= LIMIT, (registration.attempts, counts)
    assert compared <= LIMIT, counts
    assert registration.attempts >= compared  # every compared guess was counted
    # The registration is spent: even the right code waits for a new Register.
    with pytest.raises(grpc.aio.AioRpcError) as spent:
        await dev.authorize([right])
    assert reason(spent.value) == "TOO_MANY_ATTEMPTS"


async def on_public(dev: Device, api: Api, request: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
    return await on_unsigned(dev, api).public("Authorize", request, pb.AuthorizeResponse)


def on_unsigned(dev: Device, api: Api) -> Device:
    clone = copy.copy(dev)
    clone.api = api
    return clone


async def test_the_right_code_as_the_last_attempt_still_succeeds(
    make_api: Callable[..., Any],
) -> None:
    apis = await servers(make_api)
    dev = Device(apis[0], email("last"))
    await dev.register()
    right = dev.codes()[0]
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(LIMIT - 1):
        with pytest.raises(grpc.aio.AioRpcError) as miss:
            await dev.authorize([wrong])
        assert reason(miss.value) == "CODE_INVALID"
    await dev.authorize([right])  # the fifth reserved attempt, and right
    # A retry of the success costs nothing and answers the same box.
    box = dev.box_id
    await dev.authorize([right])
    assert dev.box_id == box
    # On the completed registration a wrong code or a bad signature is
    # refused as before, and neither completes anything anew.
    with pytest.raises(grpc.aio.AioRpcError) as miss:
        await dev.authorize([wrong])
    assert reason(miss.value) == "CODE_INVALID"
    unsigned = dev.authorize_request([right])
    unsigned.signature = bytes(64)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await dev.public("Authorize", unsigned, pb.AuthorizeResponse)
    assert reason(bad.value) == "BAD_SIGNATURE"


async def test_a_burst_of_wrong_contact_codes_compares_at_most_the_limit(
    make_api: Callable[..., Any],
) -> None:
    apis = await servers(make_api)
    alice = await Device(apis[0], email("alice")).join()
    new = email("alice-new")
    await alice.call(
        "AddContact", pb.AddContactRequest(contact=contact(new)), pb.AddContactResponse
    )
    right = read_outbox_code(apis[0].outbox, normalize("email", new))
    assert right is not None
    devices = [alice, on(alice, apis[1])]
    calls = [
        devices[i % 2].call(
            "VerifyContact",
            pb.VerifyContactRequest(
                contact=contact(new), code=f"{(int(right) + 1 + i) % 10**6:06d}"
            ),
            pb.VerifyContactResponse,
        )
        for i in range(BURST)
    ]
    counts = await tally(calls, "CODE_INVALID")
    compared = counts.get("CODE_INVALID", 0)
    assert alice.box_id is not None
    service = apis[0].server.service
    assert service is not None
    contact_hash = service.registrar.hasher.hash(normalize("email", new))
    challenge = await apis[1].store.get_contact_challenge(alice.box_id, contact_hash)
    assert challenge is not None
    assert challenge.attempts <= LIMIT, (challenge.attempts, counts)
    assert challenge.attempts >= compared
    assert compared <= LIMIT, counts


async def test_a_burst_of_wrong_link_proofs_compares_at_most_the_limit(
    make_api: Callable[..., Any],
) -> None:
    apis = await servers(make_api)
    phone = await Device(apis[0], email("alice")).join()
    offer = await create_offer(phone)
    bad = derive_link_keys(new_passphrase(), offer.offer_id)
    thieves = [Device(apis[i % 2]) for i in range(BURST)]
    calls = [
        t.public("JoinLink", join_request(t, offer.offer_id, bad), pb.JoinLinkResponse)
        for t in thieves
    ]
    counts = await tally(calls, "LINK_PROOF_INVALID")
    compared = counts.get("LINK_PROOF_INVALID", 0)
    stored = await apis[1].store.get_link_offer(offer.offer_id)
    assert stored is not None
    assert stored.attempts <= LIMIT, (stored.attempts, counts)
    assert compared <= LIMIT, counts
    assert stored.attempts >= compared
