"""The Hawk nonce clause of the Store contract (``claim_nonce``), on every backend.

``claim_nonce`` is what makes a signed request acceptable once per
deployment (rossby.server.replay): the tests below are the ones that would
catch a backend answering True twice for one nonce, whether the claims come
one after another, from two store sessions (two processes), or all at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

from rossby.store import Store
from tests.store.conftest import Clock, new_id

TTL = 120.0


async def test_the_first_claim_wins_and_every_later_one_loses(store: Store) -> None:
    box, device, nonce = new_id(), new_id(), os.urandom(16)
    assert await store.claim_nonce(box, device, nonce, TTL) is True
    assert await store.claim_nonce(box, device, nonce, TTL) is False
    assert await store.claim_nonce(box, device, nonce, TTL) is False


async def test_a_nonce_is_claimed_per_device(store: Store) -> None:
    box, device, nonce = new_id(), new_id(), os.urandom(16)
    assert await store.claim_nonce(box, device, nonce, TTL) is True
    assert await store.claim_nonce(box, new_id(), nonce, TTL) is True  # another device
    assert await store.claim_nonce(new_id(), device, nonce, TTL) is True  # another box
    assert await store.claim_nonce(box, device, os.urandom(16), TTL) is True


async def test_a_claim_is_seen_by_another_store_session(
    make_store: Callable[..., Store],
) -> None:
    """Two sessions on one database are two server processes."""
    one, two = make_store(), make_store()
    box, device, nonce = new_id(), new_id(), os.urandom(16)
    assert await one.claim_nonce(box, device, nonce, TTL) is True
    assert await two.claim_nonce(box, device, nonce, TTL) is False


async def test_of_concurrent_claims_at_most_one_wins(make_store: Callable[..., Store]) -> None:
    """Claims racing from four sessions, many nonces: never two winners.

    The racers start up to a few milliseconds apart, so every kind of
    overlap occurs. A backend may let all racers of a nonce lose (only
    replays race, so that refuses nothing legitimate): the bound is "at
    most one". A backend that reads before it writes fails this test.
    """
    sessions = [make_store() for _ in range(4)]
    box, device = new_id(), new_id()
    rng = random.Random(7)

    async def racer(session: Store, nonce: bytes, delay: float) -> bool:
        await asyncio.sleep(delay)
        return await session.claim_nonce(box, device, nonce, TTL)

    winners_per_nonce: list[int] = []
    for _ in range(40):
        nonce = os.urandom(16)
        answers = await asyncio.gather(
            *(racer(s, nonce, rng.uniform(0, 0.004)) for s in sessions for _ in range(2))
        )
        winners_per_nonce.append(sum(answers))
    assert max(winners_per_nonce) <= 1, winners_per_nonce


async def test_a_claim_is_forgotten_after_its_ttl(store: Store, clock: Clock) -> None:
    box, device, nonce = new_id(), new_id(), os.urandom(16)
    assert await store.claim_nonce(box, device, nonce, 1.0) is True
    assert await store.claim_nonce(box, device, nonce, 1.0) is False
    clock.advance(2.5)
    await asyncio.sleep(2.5)  # Cassandra's TTL runs on the server's own clock
    assert await store.claim_nonce(box, device, nonce, 1.0) is True


async def test_a_short_claim_is_remembered_across_a_second_boundary(store: Store) -> None:
    """Cassandra counts TTLs in whole seconds from the write's second: a
    1-second TTL written late in a second is gone a few milliseconds later,
    before the claim's own read. Claim just before a boundary and re-claim
    just after it: the nonce must still be taken."""
    box, device, nonce = new_id(), new_id(), os.urandom(16)
    await asyncio.sleep((0.93 - time.time() % 1.0) % 1.0)
    boundary = float(int(time.time()) + 1)
    assert await store.claim_nonce(box, device, nonce, 1.0) is True
    await asyncio.sleep(max(0.0, boundary + 0.05 - time.time()))
    assert await store.claim_nonce(box, device, nonce, 1.0) is False


async def test_housekeeping_removes_expired_claims_only(store: Store, clock: Clock) -> None:
    box, device = new_id(), new_id()
    old, young = os.urandom(16), os.urandom(16)
    assert await store.claim_nonce(box, device, old, 1.0) is True
    assert await store.claim_nonce(box, device, young, TTL) is True
    clock.advance(2.0)
    await store.purge_expired()
    assert await store.claim_nonce(box, device, young, TTL) is False
