"""When Acks compact their box (``compact_interval``, rossby/server/compaction.py),
through the real API on each backend, counted by the compaction metric."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.ops.helpers import metric, scrape_registry

RUNS = "rossby_compaction_runs_total"


def compactions(api: Api) -> float:
    return metric(scrape_registry(api.server.metrics.registry), RUNS)


async def three_acks(api: Api) -> Device:
    """Bob acks three messages one by one; answers bob's box."""
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    for i in range(3):
        await alice.send((bob.box_id, b"m%d" % i, uuid.uuid4()))
    page = await bob.fetch()
    assert len(page.messages) == 3
    await bob.ack(page.messages[0].position)
    assert compactions(api) == 1  # the first Ack compacts before it answers
    for m in page.messages[1:]:
        await bob.ack(m.position)
    return bob


async def test_acks_within_the_interval_share_one_trailing_compaction(
    make_api: Callable[..., Any],
) -> None:
    api: Api = await make_api(compact_interval=5)
    bob = await three_acks(api)
    assert compactions(api) == 1  # the next two answered without compacting
    for _ in range(200):  # the trailing compaction, once the interval is over
        if compactions(api) == 2:
            break
        await asyncio.sleep(0.1)
    assert compactions(api) == 2
    if api.store.capabilities.counts_compacted_rows.supported:  # nothing acked is left
        assert await api.store.pending_count(bob.box_id) == 0
    await asyncio.sleep(0.5)
    assert compactions(api) == 2  # one trailing run, not one per Ack


async def test_compact_interval_zero_compacts_on_every_ack(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(compact_interval=0)
    await three_acks(api)
    assert compactions(api) == 3
