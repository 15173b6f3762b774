"""The in-process abuse limits (rossby/server/ratelimit.py) on their own.

The API tests (tests/api/test_send_limits.py, test_abuse_limits.py) check the
limits through real calls; these pin down the bucket's rules and that a hit
costs only its own O(1) work: no background task, no pass over other keys
(the ``limits`` memory storage used before started one per burst of hits,
with a thread hop per key).
"""

from __future__ import annotations

import asyncio

import pytest

from rossby.errors import ResourceExhausted
from rossby.server.ratelimit import RateLimit


def retry_after(exc: pytest.ExceptionInfo[ResourceExhausted]) -> int:
    return int(exc.value.metadata["retry_after_seconds"])


async def test_a_burst_of_the_amount_passes_and_the_next_call_is_refused() -> None:
    limit = RateLimit("send", "5/minute", reason="SEND_RATE_LIMITED")
    for _ in range(5):
        await limit.hit("device-a")
    with pytest.raises(ResourceExhausted) as refused:
        await limit.hit("device-a")
    assert refused.value.reason == "SEND_RATE_LIMITED"
    assert retry_after(refused) == 12  # one call drains in 60 s / 5
    await limit.hit("device-b")  # keys are independent


async def test_a_refused_call_counts_nothing_and_the_bucket_drains() -> None:
    limit = RateLimit("send", "4/second", reason="SEND_RATE_LIMITED")
    await limit.hit("k", cost=4)
    for _ in range(20):  # hammering while refused does not deepen the debt
        with pytest.raises(ResourceExhausted):
            await limit.hit("k")
    await asyncio.sleep(0.3)  # >= 0.25 s: at least one call has drained
    await limit.hit("k")


async def test_a_call_costing_more_than_the_amount_is_refused_outright() -> None:
    limit = RateLimit("send", "10/minute", reason="SEND_RATE_LIMITED")
    with pytest.raises(ResourceExhausted, match="at most 10"):
        await limit.hit("k", cost=11)
    await limit.hit("k", cost=10)  # and it counted nothing


async def test_check_counts_nothing() -> None:
    limit = RateLimit("failures", "2/hour", reason="ADDRESS_RATE_LIMITED")
    for _ in range(10):
        await limit.check("10.0.0.1")
    await limit.hit("10.0.0.1", cost=2)
    with pytest.raises(ResourceExhausted):
        await limit.check("10.0.0.1")


async def test_off_limits_never_refuse() -> None:
    for spec in ("", "0", "off"):
        limit = RateLimit("send", spec, reason="SEND_RATE_LIMITED")
        assert not limit.enabled
        await limit.hit("k", cost=10**6)


async def test_hits_start_no_background_work() -> None:
    limit = RateLimit("send", "1000/second", reason="SEND_RATE_LIMITED")
    before = asyncio.all_tasks()
    for i in range(2000):
        await limit.hit(f"device-{i % 200}")
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before


async def test_memory_is_bounded_by_max_keys() -> None:
    limit = RateLimit("send", "1/hour", reason="SEND_RATE_LIMITED", max_keys=100)
    for i in range(1000):
        await limit.hit(f"device-{i}")
    assert limit.keys_tracked == 100
