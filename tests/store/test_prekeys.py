"""The prekey clause of the Store contract (``PrekeyStore``), on every backend.

The promise that matters is the pools': a one-time key is handed out at most
once, whichever store sessions (server processes) claim at once. The tests
below would catch a backend that reads a key and deletes it in two steps
(the race test), that lets a refused upload write part of itself, or that
spends a key of a device it leaves out of the answer.

The store keeps bytes and never looks inside them, so the keys here are
random bytes of the right sizes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable

import pytest

from rossby.crypto.prekeys import MLKEM768_PUBLIC_BYTES, X25519_PUBLIC_BYTES, PrekeyKind
from rossby.store import Store
from rossby.store.prekeypools import SPENT_HOLD
from rossby.store.prekeys import ClaimedPrekeys, PoolFull, Prekey, PrekeyCounts, PrekeyUpload
from tests.store.conftest import Clock, new_id

MakeStore = Callable[..., Store]

POOL_MAX = 200


# -- builders -------------------------------------------------------------------


def x25519(key_id: int) -> Prekey:
    return Prekey(key_id, os.urandom(X25519_PUBLIC_BYTES))


def signed(key_id: int) -> Prekey:
    return Prekey(key_id, os.urandom(X25519_PUBLIC_BYTES), os.urandom(64))


def kem(key_id: int) -> Prekey:
    return Prekey(key_id, os.urandom(MLKEM768_PUBLIC_BYTES), os.urandom(64))


def full_upload(
    one_time: range = range(0), kems: range = range(0), *, at_ms: int = 1_000
) -> PrekeyUpload:
    return PrekeyUpload(
        signed_prekey=signed(1),
        one_time_prekeys=[x25519(i) for i in one_time],
        one_time_kem_prekeys=[kem(i) for i in kems],
        last_resort_kem_prekey=kem(9_999),
        uploaded_at_ms=at_ms,
    )


async def put(
    store: Store, box: uuid.UUID, device: uuid.UUID, upload: PrekeyUpload
) -> PrekeyCounts:
    return await store.put_prekeys(box, device, upload, pool_max=POOL_MAX)


async def claim_one(store: Store, box: uuid.UUID, device: uuid.UUID) -> ClaimedPrekeys:
    [bundle] = await store.claim_prekeys(box, [device])
    return bundle


# -- upload and counts ------------------------------------------------------------


async def test_an_upload_is_counted_and_claimed_back_byte_for_byte(store: Store) -> None:
    box, device = new_id(), new_id()
    upload = full_upload(range(10, 13), range(20, 22), at_ms=123_456)
    after = await put(store, box, device, upload)
    assert after == PrekeyCounts(
        one_time_prekeys=3,
        one_time_kem_prekeys=2,
        lowest_one_time_prekeys=3,
        lowest_one_time_kem_prekeys=2,
        signed_prekey_id=1,
        signed_prekey_uploaded_at_ms=123_456,
        last_resort_kem_prekey_id=9_999,
    )
    assert await store.prekey_counts(box, device) == after
    bundle = await claim_one(store, box, device)
    assert bundle.device_id == device
    assert upload.signed_prekey is not None
    assert bundle.signed_prekey == upload.signed_prekey
    assert bundle.signed_prekey.signature == upload.signed_prekey.signature
    assert bundle.one_time_prekey in upload.one_time_prekeys
    assert bundle.one_time_prekey is not None and bundle.one_time_prekey.signature == b""
    assert bundle.kem_prekey in upload.one_time_kem_prekeys
    assert bundle.kem_last_resort is False


async def test_a_device_that_never_uploaded_has_zero_counts(store: Store) -> None:
    assert await store.prekey_counts(new_id(), new_id()) == PrekeyCounts(0, 0, 0, 0, None, 0, None)


async def test_the_replaceable_keys_are_replaced_and_the_pools_added_to(store: Store) -> None:
    box, device = new_id(), new_id()
    await put(store, box, device, full_upload(range(0, 3), range(0, 3)))
    newer_signed, newer_last = signed(2), kem(10_000)
    after = await put(
        store,
        box,
        device,
        PrekeyUpload(
            signed_prekey=newer_signed,
            one_time_prekeys=[x25519(i) for i in range(3, 5)],
            last_resort_kem_prekey=newer_last,
            uploaded_at_ms=2_000,
        ),
    )
    assert (after.one_time_prekeys, after.one_time_kem_prekeys) == (5, 3)
    assert after.signed_prekey_id == 2 and after.signed_prekey_uploaded_at_ms == 2_000
    assert after.last_resort_kem_prekey_id == 10_000
    bundle = await claim_one(store, box, device)
    assert bundle.signed_prekey == newer_signed


async def test_an_upload_without_replaceable_keys_keeps_the_stored_ones(store: Store) -> None:
    box, device = new_id(), new_id()
    first = full_upload(at_ms=5_000)
    await put(store, box, device, first)
    after = await put(
        store, box, device, PrekeyUpload(one_time_prekeys=[x25519(7)], uploaded_at_ms=9)
    )
    assert after.signed_prekey_id == 1 and after.signed_prekey_uploaded_at_ms == 5_000
    assert after.one_time_prekeys == 1
    assert (await claim_one(store, box, device)).signed_prekey == first.signed_prekey


async def test_a_repeated_key_id_replaces_so_a_retried_upload_stores_nothing_twice(
    store: Store,
) -> None:
    box, device = new_id(), new_id()
    upload = full_upload(range(0, 4), range(0, 4))
    await put(store, box, device, upload)
    again = await put(store, box, device, upload)
    assert (again.one_time_prekeys, again.one_time_kem_prekeys) == (4, 4)
    replaced = x25519(2)
    after = await put(store, box, device, PrekeyUpload(one_time_prekeys=[replaced]))
    assert after.one_time_prekeys == 4
    handed: dict[int, Prekey] = {}
    for _ in range(4):
        one = (await claim_one(store, box, device)).one_time_prekey
        assert one is not None and one.key_id not in handed
        handed[one.key_id] = one
    assert handed[2] == replaced
    assert (await claim_one(store, box, device)).one_time_prekey is None


async def test_replace_pools_drops_both_pools_first(store: Store) -> None:
    box, device = new_id(), new_id()
    await put(store, box, device, full_upload(range(0, 5), range(0, 5)))
    fresh = [x25519(i) for i in range(100, 102)]
    after = await put(store, box, device, PrekeyUpload(one_time_prekeys=fresh, replace_pools=True))
    assert (after.one_time_prekeys, after.one_time_kem_prekeys) == (2, 0)
    assert after.signed_prekey_id == 1  # the replaceable keys are not pools
    bundle = await claim_one(store, box, device)
    assert bundle.one_time_prekey in fresh
    assert bundle.kem_last_resort is True


@pytest.mark.parametrize("pool", ["one_time_prekeys", "one_time_kem_prekeys"])
async def test_an_upload_overfilling_a_pool_is_refused_and_writes_nothing(
    store: Store, pool: str
) -> None:
    box, device = new_id(), new_id()
    before = await store.put_prekeys(box, device, full_upload(range(0, 3), range(0, 3)), pool_max=5)
    build = x25519 if pool == "one_time_prekeys" else kem
    too_many = PrekeyUpload(
        signed_prekey=signed(77),
        last_resort_kem_prekey=kem(78),
        uploaded_at_ms=99_999,
        # 2 of these ids are already stored (they replace), 3 are new: 6 > 5.
        **{pool: [build(i) for i in range(1, 6)]},  # type: ignore[arg-type]
    )
    with pytest.raises(PoolFull) as refused:
        await store.put_prekeys(box, device, too_many, pool_max=5)
    assert (refused.value.have, refused.value.limit) == (6, 5)
    expected = None if pool == "one_time_prekeys" else PrekeyKind.ONE_TIME_KEM
    assert refused.value.kind is expected
    # Nothing of it landed: not the pool keys, not the replaceable ones.
    assert await store.prekey_counts(box, device) == before
    # Exactly at the limit is allowed (the replaced ids are not counted twice).
    fits = PrekeyUpload(**{pool: [build(i) for i in range(1, 4)]})  # type: ignore[arg-type]
    after = await store.put_prekeys(box, device, fits, pool_max=5)
    assert getattr(after, pool) == 4


async def test_replace_pools_refused_for_size_keeps_the_old_pools(store: Store) -> None:
    box, device = new_id(), new_id()
    before = await store.put_prekeys(box, device, full_upload(range(0, 3)), pool_max=4)
    refused = PrekeyUpload(one_time_prekeys=[x25519(i) for i in range(50, 55)], replace_pools=True)
    with pytest.raises(PoolFull):
        await store.put_prekeys(box, device, refused, pool_max=4)
    assert await store.prekey_counts(box, device) == before


# -- claims -----------------------------------------------------------------------


async def test_a_claim_removes_the_key_and_last_resort_follows_an_empty_pool(
    store: Store,
) -> None:
    box, device = new_id(), new_id()
    upload = full_upload(range(0, 3), range(0, 2))
    await put(store, box, device, upload)
    one_times: list[int] = []
    kems: list[int] = []
    for expected_left in (2, 1, 0):
        bundle = await claim_one(store, box, device)
        assert bundle.one_time_prekey is not None
        one_times.append(bundle.one_time_prekey.key_id)
        if not bundle.kem_last_resort:
            kems.append(bundle.kem_prekey.key_id)
        assert (await store.prekey_counts(box, device)).one_time_prekeys == expected_left
    assert sorted(one_times) == [0, 1, 2]
    assert sorted(kems) == [0, 1]
    drained = await claim_one(store, box, device)
    assert drained.one_time_prekey is None
    assert drained.kem_last_resort is True
    assert drained.kem_prekey == upload.last_resort_kem_prekey
    assert drained.signed_prekey == upload.signed_prekey
    # The last-resort key is not spent: it keeps answering.
    assert (await claim_one(store, box, device)).kem_prekey == upload.last_resort_kem_prekey
    counts = await store.prekey_counts(box, device)
    assert (counts.one_time_prekeys, counts.one_time_kem_prekeys) == (0, 0)
    assert counts.last_resort_kem_prekey_id == 9_999


async def test_devices_without_a_signed_or_last_resort_key_are_left_out_untouched(
    store: Store,
) -> None:
    box = new_id()
    complete, no_signed, no_last, never = new_id(), new_id(), new_id(), new_id()
    await put(store, box, complete, full_upload(range(0, 2), range(0, 2)))
    await put(
        store,
        box,
        no_signed,
        PrekeyUpload(
            one_time_prekeys=[x25519(0)],
            one_time_kem_prekeys=[kem(0)],
            last_resort_kem_prekey=kem(5),
        ),
    )
    await put(
        store,
        box,
        no_last,
        PrekeyUpload(
            signed_prekey=signed(1), one_time_prekeys=[x25519(0)], one_time_kem_prekeys=[kem(0)]
        ),
    )
    bundles = await store.claim_prekeys(box, [no_signed, complete, no_last, never, complete])
    assert [b.device_id for b in bundles] == [complete]
    # Leaving a device out spends none of its keys.
    for device in (no_signed, no_last):
        counts = await store.prekey_counts(box, device)
        assert (counts.one_time_prekeys, counts.one_time_kem_prekeys) == (1, 1)
    # Naming a device twice spent one key of it, not two.
    assert (await store.prekey_counts(box, complete)).one_time_prekeys == 1


async def test_a_claim_answers_every_device_of_the_box_it_names(store: Store) -> None:
    box = new_id()
    devices = [new_id() for _ in range(3)]
    for device in devices:
        await put(store, box, device, full_upload(range(0, 2), range(0, 2)))
    bundles = await store.claim_prekeys(box, devices)
    assert sorted(b.device_id for b in bundles) == sorted(devices)
    assert all(not b.kem_last_resort and b.one_time_prekey is not None for b in bundles)
    assert await store.claim_prekeys(box, []) == []
    # Another box's claim does not see these devices.
    assert await store.claim_prekeys(new_id(), devices) == []


async def test_delete_forgets_every_prekey_and_is_idempotent(store: Store) -> None:
    box, device, other = new_id(), new_id(), new_id()
    await put(store, box, device, full_upload(range(0, 3), range(0, 3)))
    await put(store, box, other, full_upload(range(0, 3), range(0, 3)))
    await store.delete_prekeys(box, device)
    await store.delete_prekeys(box, device)
    assert await store.prekey_counts(box, device) == PrekeyCounts(0, 0, 0, 0, None, 0, None)
    assert await store.claim_prekeys(box, [device]) == []
    assert (await store.prekey_counts(box, other)).one_time_prekeys == 3  # untouched
    # A device can publish again after a delete (after rotating its keys).
    after = await put(store, box, device, full_upload(range(0, 2), range(0, 2)))
    assert after.one_time_prekeys == 2


async def test_concurrent_claims_from_two_sessions_hand_out_every_key_at_most_once(
    make_store: MakeStore,
) -> None:
    """50 claims at once over two store sessions (two processes) on one
    database, for a pool of 30 keys of each kind: every key goes to one
    claimer, and claims after the pool ran dry get the last-resort key."""
    one, two = make_store(), make_store()
    box, device = new_id(), new_id()
    await put(one, box, device, full_upload(range(0, 30), range(0, 30)))
    results = await asyncio.gather(
        *(claim_one(one if i % 2 else two, box, device) for i in range(50))
    )
    one_times = [r.one_time_prekey.key_id for r in results if r.one_time_prekey is not None]
    kems = [r.kem_prekey.key_id for r in results if not r.kem_last_resort]
    assert len(one_times) == len(set(one_times)), sorted(one_times)
    assert len(kems) == len(set(kems)), sorted(kems)
    # One region: the pool empties completely before any last-resort answer.
    assert sorted(one_times) == list(range(30))
    assert sorted(kems) == list(range(30))
    assert sum(r.kem_last_resort for r in results) == 20
    counts = await two.prekey_counts(box, device)
    assert (counts.one_time_prekeys, counts.one_time_kem_prekeys) == (0, 0)


async def test_a_key_handed_out_never_comes_back_not_even_by_a_retried_upload(
    store: Store,
) -> None:
    """A client retrying an upload after one of its keys was claimed (the
    first attempt landed, the answer was lost) must not put that key back:
    a second sender would get it. Nor may ``replace_pools`` or a
    ``delete_prekeys`` followed by the same upload."""
    box, device = new_id(), new_id()
    upload = full_upload(range(0, 2), range(0, 2))
    await put(store, box, device, upload)
    first = [await claim_one(store, box, device) for _ in range(2)]
    assert all(b.one_time_prekey is not None and not b.kem_last_resort for b in first)
    retried = await put(store, box, device, upload)
    assert (retried.one_time_prekeys, retried.one_time_kem_prekeys) == (0, 0)
    replaced = await put(store, box, device, dataclasses.replace(upload, replace_pools=True))
    assert (replaced.one_time_prekeys, replaced.one_time_kem_prekeys) == (0, 0)
    await store.delete_prekeys(box, device)
    again = await put(store, box, device, upload)
    assert (again.one_time_prekeys, again.one_time_kem_prekeys) == (0, 0)
    after = await claim_one(store, box, device)
    assert after.one_time_prekey is None and after.kem_last_resort is True
    # Fresh ids are welcome as ever.
    fresh = await put(store, box, device, PrekeyUpload(one_time_prekeys=[x25519(2)]))
    assert fresh.one_time_prekeys == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_spent_ids_are_purged_after_the_hold(store: Store, clock: Clock) -> None:
    """SQLite keeps a spent row for SPENT_HOLD, then housekeeping deletes it
    (Cassandra's marker is the claim's tombstone, gone after gc_grace)."""
    box, device = new_id(), new_id()
    await put(store, box, device, full_upload(range(0, 1)))
    await claim_one(store, box, device)
    clock.advance(SPENT_HOLD - 1)
    await store.purge_expired()
    assert (await put(store, box, device, full_upload(range(0, 1)))).one_time_prekeys == 0
    clock.advance(2)
    await store.purge_expired()
    assert (await put(store, box, device, full_upload(range(0, 1)))).one_time_prekeys == 1


async def test_a_spent_key_stays_spent_when_the_servers_clock_runs_ahead(
    store: Store, clock: Clock
) -> None:
    """The server's clock a minute ahead of the database's: on Cassandra a
    plain write stamped from it would outrank the claim's tombstone (stamped
    by the nodes' clocks) and revive the key; plain prekey writes are
    stamped in milliseconds so that cannot happen (rossby/store/cassandra/
    writeclock.py)."""
    clock.advance(60.0)
    box, device = new_id(), new_id()
    upload = full_upload(range(0, 1), range(0, 1))
    await put(store, box, device, upload)
    taken = await claim_one(store, box, device)
    assert taken.one_time_prekey is not None and not taken.kem_last_resort
    retried = await put(store, box, device, upload)
    assert (retried.one_time_prekeys, retried.one_time_kem_prekeys) == (0, 0)
    again = await claim_one(store, box, device)
    assert again.one_time_prekey is None and again.kem_last_resort is True
