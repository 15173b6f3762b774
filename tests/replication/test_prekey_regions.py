"""Prekey claims from two regions at once (issue 18, "Done when"): on the
two-datacenter cluster, stores in dc1 and dc2 (two each: two processes per
region) claim one device's pools concurrently. No key id may be handed out
twice, every uploaded key must be handed out exactly once, and a region
answers the last-resort key only once its own share is spent.

Each region claims only its own share (docs/store.md, "Prekeys"), so the
shares the regions hand out must be disjoint and together the whole upload.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from rossby.crypto.prekeys import MLKEM768_PUBLIC_BYTES, X25519_PUBLIC_BYTES
from rossby.store import StoreOptions, open_store
from rossby.store.cassandra import CassandraStore
from rossby.store.prekeys import ClaimedPrekeys, Prekey, PrekeyCounts, PrekeyUpload
from tests.replication.conftest import Regions

pytestmark = pytest.mark.cassandra

KEYS = 40  # of each one-time kind: 20 per region
CLAIMS_PER_STORE = 25  # 4 stores: 100 claims for 40 keys


@pytest.fixture
async def stores(regions: Regions) -> AsyncIterator[Callable[[str], CassandraStore]]:
    opened: list[CassandraStore] = []

    def make(dc: str) -> CassandraStore:
        store = open_store(regions.url(dc), StoreOptions())
        assert isinstance(store, CassandraStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def _upload() -> PrekeyUpload:
    return PrekeyUpload(
        signed_prekey=Prekey(1, os.urandom(X25519_PUBLIC_BYTES), os.urandom(64)),
        one_time_prekeys=[Prekey(i, os.urandom(X25519_PUBLIC_BYTES)) for i in range(KEYS)],
        one_time_kem_prekeys=[
            Prekey(i, os.urandom(MLKEM768_PUBLIC_BYTES), os.urandom(64)) for i in range(KEYS)
        ],
        last_resort_kem_prekey=Prekey(999, os.urandom(MLKEM768_PUBLIC_BYTES), os.urandom(64)),
        uploaded_at_ms=1,
    )


async def _replicated(store: CassandraStore, box: uuid.UUID, device: uuid.UUID) -> PrekeyCounts:
    """The counts as ``store``'s region sees them once the upload (written in
    dc1) has replicated there; bounded: 200 reads, about 10 s."""
    counts = await store.prekey_counts(box, device)
    for _ in range(200):
        if (counts.one_time_prekeys, counts.one_time_kem_prekeys) == (KEYS, KEYS):
            return counts
        await asyncio.sleep(0.05)
        counts = await store.prekey_counts(box, device)
    pytest.fail(f"the upload did not replicate to the other region: {counts}")


async def test_two_regions_claiming_one_device_hand_out_every_key_exactly_once(
    stores: Callable[[str], CassandraStore],
) -> None:
    by_region = {"dc1": [stores("dc1"), stores("dc1")], "dc2": [stores("dc2"), stores("dc2")]}
    box, device = uuid.uuid4(), uuid.uuid4()
    upload = _upload()
    await by_region["dc1"][0].put_prekeys(box, device, upload, pool_max=200)
    counts = await _replicated(by_region["dc2"][0], box, device)
    assert (counts.lowest_one_time_prekeys, counts.lowest_one_time_kem_prekeys) == (20, 20)
    rng = random.Random(18)

    async def claim(store: CassandraStore, delay: float) -> ClaimedPrekeys:
        await asyncio.sleep(delay)
        [bundle] = await store.claim_prekeys(box, [device])
        return bundle

    calls = [
        (region, claim(store, rng.uniform(0, 0.01)))
        for region, pair in by_region.items()
        for store in pair
        for _ in range(CLAIMS_PER_STORE)
    ]
    answers = await asyncio.gather(*(call for _, call in calls))
    handed: dict[str, dict[str, list[int]]] = {
        region: {"one_time": [], "kem": [], "last_resort": []} for region in by_region
    }
    for (region, _), bundle in zip(calls, answers, strict=True):
        assert bundle.signed_prekey == upload.signed_prekey
        if bundle.one_time_prekey is not None:
            handed[region]["one_time"].append(bundle.one_time_prekey.key_id)
            assert bundle.one_time_prekey in upload.one_time_prekeys  # the bytes uploaded
        if bundle.kem_last_resort:
            assert bundle.kem_prekey == upload.last_resort_kem_prekey
            handed[region]["last_resort"].append(bundle.kem_prekey.key_id)
        else:
            assert bundle.kem_prekey in upload.one_time_kem_prekeys
            handed[region]["kem"].append(bundle.kem_prekey.key_id)
    for pool in ("one_time", "kem"):
        everywhere = handed["dc1"][pool] + handed["dc2"][pool]
        # At most once: no id twice, within a region or across the two.
        assert len(everywhere) == len(set(everywhere)), sorted(everywhere)
        # Exactly once: all 40 were handed out, each region its own 20.
        assert sorted(everywhere) == list(range(KEYS))
        assert len(handed["dc1"][pool]) == len(handed["dc2"][pool]) == KEYS // 2
    for region in by_region:
        # The last-resort key only after the region's share ran out: 50
        # claims per region, 20 keys in its share, 30 last-resort answers.
        assert len(handed[region]["last_resort"]) == 2 * CLAIMS_PER_STORE - KEYS // 2
    for region, pair in by_region.items():
        after = await pair[1].prekey_counts(box, device)
        assert after.lowest_one_time_prekeys == 0, region
        assert after.lowest_one_time_kem_prekeys == 0, region
