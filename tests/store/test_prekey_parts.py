"""The pieces of the Cassandra prekey claim that a race cannot reach on
purpose: the compare-and-set loop's refusal after lost rounds (a race test
makes it rare, not certain), where the pool regions come from, and the
write clock that keeps plain writes below Paxos timestamps. The loop is
driven with plain functions standing in for the two statements, as
tests/store/test_attempts.py drives the attempt counter's loop; the real
statements run in tests/store/test_prekeys.py and tests/replication/."""

from __future__ import annotations

import random

import grpc
import pytest

from rossby.errors import FailedPrecondition
from rossby.status import status_code
from rossby.store.cassandra.prekeytake import CANDIDATES, ROUNDS, take
from rossby.store.cassandra.regions import KeyspaceRegions, replicated_dcs
from rossby.store.cassandra.writeclock import MillisClock
from rossby.store.prekeys import Prekey, PrekeyClaimContended


def _keys(n: int) -> list[Prekey]:
    return [Prekey(i, bytes([i]) * 32) for i in range(n)]


async def test_a_claim_that_loses_every_round_is_refused_not_answered() -> None:
    """Other processes win every row, round after round: the claim fails
    with a retryable UNAVAILABLE rather than falling back to the
    last-resort key while the pool still has keys."""
    reads = tries = 0

    async def read(limit: int) -> list[Prekey]:
        nonlocal reads
        reads += 1
        return _keys(limit)

    async def loses(key: Prekey) -> bool:
        nonlocal tries
        tries += 1
        return False

    with pytest.raises(PrekeyClaimContended) as refused:
        await take(read, loses, rng=random.Random(1))
    assert refused.value.reason == "PREKEY_CLAIM_CONTENDED"
    assert status_code(refused.value) is grpc.StatusCode.UNAVAILABLE
    assert refused.value.applied is None  # another pool's key may be spent
    assert (reads, tries) == (ROUNDS, ROUNDS * CANDIDATES)


async def test_a_lost_row_moves_on_to_the_next_candidate() -> None:
    won: list[int] = []

    async def read(limit: int) -> list[Prekey]:
        return _keys(limit)

    async def only_key_2(key: Prekey) -> bool:
        won.append(key.key_id)
        return key.key_id == 2

    got = await take(read, only_key_2, rng=random.Random(3))
    assert got is not None and got.key_id == 2
    assert won[-1] == 2 and won.count(2) == 1


async def test_an_empty_share_answers_none_without_a_compare_and_set() -> None:
    async def read(limit: int) -> list[Prekey]:
        return []

    async def never(key: Prekey) -> bool:
        raise AssertionError("no row to claim")

    assert await take(read, never) is None


def test_the_regions_are_the_replicated_dcs() -> None:
    replication = {"class": "NetworkTopologyStrategy", "dc2": "1", "dc1": "3", "dc3": "0"}
    assert replicated_dcs(replication) == ("dc1", "dc2")


async def test_a_keyspace_replicated_nowhere_is_a_missing_schema() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(FailedPrecondition) as refused:
        await KeyspaceRegions(nothing).get()
    assert refused.value.reason == "SCHEMA_MISSING"


async def test_the_regions_are_read_once() -> None:
    reads = 0

    async def replication() -> dict[str, str]:
        nonlocal reads
        reads += 1
        return {"class": "NetworkTopologyStrategy", "dc1": "1"}

    regions = KeyspaceRegions(replication)
    assert await regions.get() == ("dc1",)
    assert await regions.get() == ("dc1",)
    assert reads == 1


def test_write_stamps_are_milliseconds_and_strictly_increase() -> None:
    now = 1_765_000_000.0
    stamps = MillisClock(lambda: now)
    first, second = stamps.next(), stamps.next()
    assert first == 1_765_000_000_000  # ms: 1000x below a Paxos ballot's microseconds
    assert second == first + 1  # same millisecond, still ordered
