"""Attempt reservations under a concurrent burst, on every backend (issue 16,
finding 3): of many racing reservations from several store instances (so on
Cassandra several lock domains, i.e. processes, duel in Paxos), exactly
``limit`` are granted, each a different number, the counter ends at
``limit``, and every other caller is refused. A caller told
``AttemptContended`` was not granted and retries, as the server's clients
do, so no reservation is lost or invented under contention."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace

import grpc

from rossby.status import status_code
from rossby.store import AttemptContended, Store
from rossby.store.accounts import ContactChallenge, LinkOffer
from rossby.store.cassandra.attempts import ROUNDS, reserve
from tests.store.conftest import Clock, new_id
from tests.store.test_contract import make_registration

LIMIT = 5
BURST = 40
STORES = 3


async def burst(reserve: Callable[[int], Awaitable[int]]) -> tuple[list[int], int]:
    """BURST racing reservations (caller i on store i % STORES); answers the
    granted numbers and how often a round was contended."""
    contended = 0

    async def one(i: int) -> int:
        nonlocal contended
        for _ in range(100):
            try:
                return await reserve(i)
            except AttemptContended:
                contended += 1
                await asyncio.sleep(0.01)
        raise AssertionError("a reservation stayed contended for 100 tries")

    answers = await asyncio.gather(*(one(i) for i in range(BURST)))
    return sorted(a for a in answers if a), contended


async def test_a_burst_of_registration_attempts_grants_exactly_the_limit(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(STORES)]
    registration = make_registration(clock)
    await stores[0].put_registration(registration)
    granted, _ = await burst(
        lambda i: stores[i % STORES].reserve_attempt(
            registration.device_id, expires_at=registration.expires_at, limit=LIMIT
        )
    )
    assert granted == list(range(1, LIMIT + 1))
    stored = await stores[1].get_registration(registration.device_id)
    assert stored is not None and stored.attempts == LIMIT


async def test_a_burst_of_link_attempts_grants_exactly_the_limit(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(STORES)]
    offer = LinkOffer(
        offer_id=new_id(),
        box_id=new_id(),
        creator_device_id=new_id(),
        verifier=os.urandom(32),
        created_at=clock.now,
        expires_at=clock.now + 600,
        keep_until=clock.now + 4200,
    )
    await stores[0].create_link_offer(offer)
    granted, _ = await burst(
        lambda i: stores[i % STORES].reserve_link_attempt(offer.offer_id, limit=LIMIT)
    )
    assert granted == list(range(1, LIMIT + 1))
    stored = await stores[2].get_link_offer(offer.offer_id)
    assert stored is not None and stored.attempts == LIMIT


async def test_a_burst_of_contact_attempts_grants_exactly_the_limit(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(STORES)]
    box, h = new_id(), os.urandom(32)
    challenge = ContactChallenge(
        box, h, os.urandom(32), clock.now, clock.now + 600, clock.now + 4200
    )
    await stores[0].put_contact_challenge(challenge)
    granted, _ = await burst(
        lambda i: stores[i % STORES].reserve_contact_attempt(
            box, h, sent_at=challenge.sent_at, limit=LIMIT
        )
    )
    assert granted == list(range(1, LIMIT + 1))
    stored = await stores[1].get_contact_challenge(box, h)
    assert stored is not None and stored.attempts == LIMIT
    # A resend is a new challenge: its own count, and the old one's callers
    # are told it is gone rather than reserving on the new code.
    resent = replace(challenge, code_hash=os.urandom(32), sent_at=clock.now + 30, attempts=0)
    await stores[0].put_contact_challenge(resent)
    assert await stores[2].reserve_contact_attempt(box, h, sent_at=resent.sent_at, limit=LIMIT) == 1


async def test_a_reservation_that_keeps_losing_is_refused_not_granted() -> None:
    """The bounded loop on Cassandra: every round lost to another process
    (whose attempts stay below the limit) ends in AttemptContended, a
    retryable UNAVAILABLE, never in a grant the store did not record."""
    rounds = 0

    async def always_loses(attempts: int, version: object) -> dict[str, object]:
        nonlocal rounds
        rounds += 1
        return {"[applied]": False, "attempts": 0, "v": version}

    try:
        await reserve(0, 1.0, always_loses, limit=LIMIT, version_column="v", what="test")
    except AttemptContended as err:
        assert err.reason == "ATTEMPT_CONTENDED"
        assert status_code(err) is grpc.StatusCode.UNAVAILABLE
    else:
        raise AssertionError("a lost reservation was granted")
    assert rounds == ROUNDS
