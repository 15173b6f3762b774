"""The prekey RPCs through a real channel on each backend: UploadPrekeys and
its typed refusals, GetPrekeyStatus, ClaimPrekeys (bundles, visibility,
last-resort fallback), prekeys_low on Fetch and Subscribe, and RotateKeys /
RevokeDevice voiding a device's prekeys. docs/api.md, "Prekeys".

Rate limits on claims are in test_prekey_limits.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.crypto import DeviceKeyPair
from rossby.crypto.keylog import ChangeKind, sign_change
from rossby.crypto.prekeys import PrekeyKind, verify_prekey_signature
from rossby.errors import StoreUnavailable
from rossby.status import error_info
from rossby.store.prekeys import PrekeyCounts
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.api.prekeys import (
    claim,
    full_upload,
    kem,
    mlkem_public,
    one_time,
    signed,
    status,
    upload,
)
from tests.api.test_accounts import link, revoke_request, set_rule, update_profile
from tests.api.test_realtime import SLOW_POLL, Subscription
from tests.api.test_realtime import subs as subs  # the fixture
from tests.support.grpc_errors import expect

C = grpc.StatusCode


async def pair(api: Api) -> tuple[Device, Device]:
    return await Device(api, email("alice")).join(), await Device(api, email("bob")).join()


async def counts(api: Api, dev: Device) -> PrekeyCounts:
    result: PrekeyCounts = await api.store.prekey_counts(dev.box_id, dev.device_id)
    return result


# -- upload and status -------------------------------------------------------------


async def test_a_device_that_never_uploaded_is_low(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_low_water=7, prekey_pool_max=50)
    alice = await Device(api, email("alice")).join()
    got = await status(alice)
    assert got == pb.PrekeyStatus(low=True, low_water=7, pool_max=50)


async def test_upload_then_status_counts(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_low_water=4)
    alice = await Device(api, email("alice")).join()
    before_ms = int(api.clock() * 1000)
    first = await upload(alice, full_upload(alice, one_time_count=5, kem_count=6))
    assert (first.one_time_prekeys, first.one_time_kem_prekeys) == (5, 6)
    assert (first.signed_prekey_id, first.last_resort_kem_prekey_id) == (1, 1)
    assert before_ms <= first.signed_prekey_uploaded_at_ms <= int(api.clock() * 1000)
    assert not first.low and (first.low_water, first.pool_max) == (4, 200)
    assert await status(alice) == first
    # Pools grow by upload; the signed prekey is replaced.
    more = pb.UploadPrekeysRequest(
        signed_prekey=signed(alice, PrekeyKind.SIGNED, 2),
        one_time_prekeys=one_time(100, 3),
    )
    second = await upload(alice, more)
    assert (second.one_time_prekeys, second.one_time_kem_prekeys) == (8, 6)
    assert (second.signed_prekey_id, second.last_resort_kem_prekey_id) == (2, 1)
    # replace_pools drops both pools before adding.
    third = await upload(
        alice, pb.UploadPrekeysRequest(replace_pools=True, one_time_kem_prekeys=kem(alice, 50, 1))
    )
    assert (third.one_time_prekeys, third.one_time_kem_prekeys) == (0, 1)
    assert third.low


def _bad(field: str) -> Callable[[Device], pb.UploadPrekeysRequest]:
    """Build a full upload and break ``field`` (see the cases below)."""

    def build(dev: Device) -> pb.UploadPrekeysRequest:
        r = full_upload(dev, one_time_count=3, kem_count=3)
        if field == "signed_prekey.public_key":
            r.signed_prekey.public_key = r.signed_prekey.public_key[:31]
        elif field == "signed_prekey.key_id":
            r.signed_prekey.CopyFrom(signed(dev, PrekeyKind.SIGNED, 0))
        elif field == "signed_prekey.signature":
            r.signed_prekey.signature = r.signed_prekey.signature[:63]
        elif field == "last_resort_kem_prekey.public_key":
            # The right length, but a coefficient >= q: not an ML-KEM-768 key.
            bad = b"\xff" * len(mlkem_public())
            r.last_resort_kem_prekey.CopyFrom(signed(dev, PrekeyKind.LAST_RESORT_KEM, 1, bad))
        elif field == "one_time_prekeys[1].public_key":
            r.one_time_prekeys[1].public_key = bytes(32)  # a low-order point
        elif field == "one_time_prekeys[2].key_id":
            r.one_time_prekeys[2].key_id = r.one_time_prekeys[0].key_id
        elif field == "one_time_kem_prekeys[2].key_id":
            r.one_time_kem_prekeys[2].CopyFrom(signed(dev, PrekeyKind.ONE_TIME_KEM, 1))
        elif field == "one_time_kem_prekeys[0].public_key":
            r.one_time_kem_prekeys[0].public_key = r.one_time_kem_prekeys[0].public_key[:-1]
        elif field == "":
            r = pb.UploadPrekeysRequest()
        else:
            raise AssertionError(field)
        return r

    return build


@pytest.mark.parametrize(
    "field",
    [
        "signed_prekey.public_key",
        "signed_prekey.key_id",
        "signed_prekey.signature",
        "last_resort_kem_prekey.public_key",
        "one_time_prekeys[1].public_key",
        "one_time_prekeys[2].key_id",
        "one_time_kem_prekeys[2].key_id",
        "one_time_kem_prekeys[0].public_key",
        "",
    ],
)
async def test_a_malformed_upload_is_refused_naming_the_field_and_writes_nothing(
    api: Api, field: str
) -> None:
    alice = await Device(api, email("alice")).join()
    err = await expect(C.INVALID_ARGUMENT, "PREKEY_INVALID", upload(alice, _bad(field)(alice)))
    info = error_info(err)
    assert info is not None and info.metadata["field"] == field
    assert await status(alice) == pb.PrekeyStatus(low=True, low_water=20, pool_max=200)


async def test_more_keys_than_a_pool_holds_is_too_many(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_pool_max=4, prekey_low_water=1)
    alice = await Device(api, email("alice")).join()
    for field, request in (
        ("one_time_prekeys", pb.UploadPrekeysRequest(one_time_prekeys=one_time(1, 5))),
        ("one_time_kem_prekeys", pb.UploadPrekeysRequest(one_time_kem_prekeys=kem(alice, 1, 5))),
    ):
        err = await expect(C.INVALID_ARGUMENT, "TOO_MANY", upload(alice, request))
        info = error_info(err)
        assert info is not None and dict(info.metadata) == {"field": field, "max": "4"}


async def test_a_full_pool_refuses_the_upload_whole(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_pool_max=4, prekey_low_water=1)
    alice = await Device(api, email("alice")).join()
    before = await upload(alice, full_upload(alice, one_time_count=3, kem_count=3))
    over = pb.UploadPrekeysRequest(
        signed_prekey=signed(alice, PrekeyKind.SIGNED, 9),
        one_time_prekeys=one_time(10, 1),
        one_time_kem_prekeys=kem(alice, 10, 2),
    )
    err = await expect(C.RESOURCE_EXHAUSTED, "PREKEY_POOL_FULL", upload(alice, over))
    info = error_info(err)
    assert info is not None
    assert dict(info.metadata) == {"field": "one_time_kem_prekeys", "max": "4", "have": "5"}
    # Nothing was written, not even the signed prekey or the pool that fitted.
    assert await status(alice) == before
    # A retried upload of ids already held replaces them: it fits.
    again = pb.UploadPrekeysRequest(one_time_kem_prekeys=kem(alice, 1, 3))
    assert (await upload(alice, again)).one_time_kem_prekeys == 3


@pytest.mark.parametrize("which", ["other key", "other device", "other kind", "other id"])
async def test_a_signature_not_made_by_this_device_for_this_key_is_refused(
    api: Api, which: str
) -> None:
    alice = await Device(api, email("alice")).join()
    r = full_upload(alice, one_time_count=1, kem_count=2)
    key = r.one_time_kem_prekeys[1]
    if which == "other key":
        forged = signed(
            alice,
            PrekeyKind.ONE_TIME_KEM,
            key.key_id,
            key.public_key,
            signing_private=DeviceKeyPair.generate().signing_private_bytes(),
        )
    elif which == "other device":
        other = Device(api)  # same signing key, another device id
        other.keys = alice.keys
        forged = signed(other, PrekeyKind.ONE_TIME_KEM, key.key_id, key.public_key)
    elif which == "other kind":  # a last-resort signature replayed as one-time
        forged = signed(alice, PrekeyKind.LAST_RESORT_KEM, key.key_id, key.public_key)
    else:
        forged = signed(alice, PrekeyKind.ONE_TIME_KEM, key.key_id + 1, key.public_key)
        forged.key_id = key.key_id
    key.signature = forged.signature
    err = await expect(C.INVALID_ARGUMENT, "PREKEY_SIGNATURE_INVALID", upload(alice, r))
    info = error_info(err)
    assert info is not None and info.metadata["field"] == "one_time_kem_prekeys[1].signature"
    assert (await status(alice)).signed_prekey_id == 0


# -- claims ------------------------------------------------------------------------


async def test_a_claim_answers_one_bundle_per_device_with_the_keys_requestkey_shows(
    api: Api,
) -> None:
    alice, bob = await pair(api)
    tablet = await link(api, alice)
    phone_up = full_upload(alice, one_time_count=3, kem_count=3)
    tablet_up = full_upload(tablet, one_time_count=3, kem_count=3)
    await upload(alice, phone_up)
    await upload(tablet, tablet_up)
    shown = await bob.call(
        "RequestKey", pb.RequestKeyRequest(box_id=str(alice.box_id)), pb.RequestKeyResponse
    )
    got = await claim(bob, alice.box_id)
    assert got.box_id == str(alice.box_id)
    assert list(got.devices_without_prekeys) == []
    assert got.key_log == shown.key_log and got.key_log.seq == 2
    by_device = {b.device.device_id: b for b in got.bundles}
    assert sorted(by_device) == sorted(d.device_id for d in shown.devices)
    for listed in shown.devices:
        assert by_device[listed.device_id].device == listed
    for dev, sent in ((alice, phone_up), (tablet, tablet_up)):
        bundle = by_device[str(dev.device_id)]
        assert bundle.signed_prekey == sent.signed_prekey
        assert bundle.one_time_prekey in sent.one_time_prekeys
        assert bundle.kem_prekey in sent.one_time_kem_prekeys and not bundle.kem_last_resort
        # What a sender checks: both signatures, under the key RequestKey showed.
        signing = bundle.device.keys.signing_key
        for kind, key in (
            (PrekeyKind.SIGNED, bundle.signed_prekey),
            (PrekeyKind.ONE_TIME_KEM, bundle.kem_prekey),
        ):
            assert verify_prekey_signature(
                signing, kind, dev.device_id, key.key_id, key.public_key, key.signature
            )
    # Each claim takes other one-time keys.
    again = await claim(bob, alice.box_id, [alice.device_id])
    (second,) = again.bundles
    first = by_device[str(alice.device_id)]
    assert second.one_time_prekey.key_id != first.one_time_prekey.key_id
    assert second.one_time_prekey.public_key != first.one_time_prekey.public_key
    assert second.kem_prekey.key_id != first.kem_prekey.key_id
    assert (await status(alice)).one_time_prekeys == 1


async def test_devices_without_prekeys_and_unknown_ids_are_listed_apart(api: Api) -> None:
    alice, bob = await pair(api)
    tablet = await link(api, alice)
    await upload(alice, full_upload(alice, one_time_count=1, kem_count=1))
    got = await claim(bob, alice.box_id)
    assert [b.device.device_id for b in got.bundles] == [str(alice.device_id)]
    assert list(got.devices_without_prekeys) == [str(tablet.device_id)]
    # A named id that is no active device of the box answers like a device
    # without prekeys (RequestKey already shows which devices are active).
    stranger = uuid.uuid4()
    named = await claim(bob, alice.box_id, [stranger, tablet.device_id, stranger])
    assert named.bundles == []
    assert list(named.devices_without_prekeys) == [str(stranger), str(tablet.device_id)]


async def test_a_box_claims_its_own_other_devices_but_not_the_caller(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    tablet = await link(api, alice)
    for dev in (alice, tablet):
        await upload(dev, full_upload(dev, one_time_count=1, kem_count=1))
    got = await claim(alice, alice.box_id)
    assert [b.device.device_id for b in got.bundles] == [str(tablet.device_id)]
    assert (await status(alice)).one_time_prekeys == 1  # the caller's pool is untouched


async def test_a_drained_pool_falls_back_to_the_last_resort_key(api: Api) -> None:
    alice, bob = await pair(api)
    sent = full_upload(alice, one_time_count=2, kem_count=2)
    await upload(alice, sent)
    one_time_ids, kem_ids = set(), set()
    for _ in range(2):
        (b,) = (await claim(bob, alice.box_id)).bundles
        assert not b.kem_last_resort and b.HasField("one_time_prekey")
        one_time_ids.add(b.one_time_prekey.key_id)
        kem_ids.add(b.kem_prekey.key_id)
    assert one_time_ids == {1, 2} and kem_ids == {1, 2}
    for _ in range(2):  # empty now, and it stays answerable
        (b,) = (await claim(bob, alice.box_id)).bundles
        assert b.kem_last_resort and not b.HasField("one_time_prekey")
        assert b.kem_prekey == sent.last_resort_kem_prekey
        assert b.signed_prekey == sent.signed_prekey
    drained = await status(alice)
    assert (drained.one_time_prekeys, drained.one_time_kem_prekeys) == (0, 0) and drained.low
    assert (await alice.fetch()).prekeys_low


async def test_concurrent_claims_through_two_servers_never_share_a_one_time_key(
    make_api: Callable[..., Any],
) -> None:
    """Two server processes on one store, sixteen requesters claiming at
    once: each of the ten one-time keys of each kind goes to exactly one of
    them, the other six get the last-resort key."""
    limits = {"prekey_claim_rate_per_device": 0, "prekey_claim_rate_per_box": 0}
    one: Api = await make_api(**limits)
    two: Api = await make_api(**limits)
    alice = await Device(one, email("alice")).join()
    await upload(alice, full_upload(alice, one_time_count=10, kem_count=10))
    requesters = [await Device((one, two)[i % 2], email(f"r{i}")).join() for i in range(16)]
    replies = await asyncio.gather(*(claim(r, alice.box_id) for r in requesters))
    bundles = [b for reply in replies for b in reply.bundles]
    assert len(bundles) == 16
    fresh = [b for b in bundles if not b.kem_last_resort]
    assert sorted(b.kem_prekey.key_id for b in fresh) == list(range(1, 11))
    assert sorted(b.one_time_prekey.key_id for b in bundles if b.HasField("one_time_prekey")) == (
        list(range(1, 11))
    )
    assert len(bundles) - len(fresh) == 6


async def test_hidden_boxes_are_not_found_and_lose_no_keys(api: Api) -> None:
    alice, bob = await pair(api)
    carol = await Device(api, email("carol")).join()
    await upload(alice, full_upload(alice, one_time_count=2, kem_count=2))
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_BLOCKED)
    await expect(C.NOT_FOUND, "NOT_FOUND", claim(bob, alice.box_id))
    await update_profile(alice, accept_from=pb.ACCEPT_FROM_CONTACTS_ONLY)
    await expect(C.NOT_FOUND, "NOT_FOUND", claim(carol, alice.box_id))
    await expect(C.NOT_FOUND, "NOT_FOUND", claim(carol, uuid.uuid4()))
    assert (await counts(api, alice)).one_time_prekeys == 2
    # Not discoverable hides a box from contact lookups only, as for RequestKey.
    await update_profile(alice, accept_from=pb.ACCEPT_FROM_ANYONE, discoverable=False)
    assert len((await claim(carol, alice.box_id)).bundles) == 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ClaimPrekeysRequest(box_id="nope"), "box_id"),
        (pb.ClaimPrekeysRequest(box_id=str(uuid.uuid4()).upper()), "box_id"),
        (pb.ClaimPrekeysRequest(box_id=str(uuid.uuid4()), device_ids=["x"]), "device_ids[0]"),
    ],
)
async def test_a_claim_with_a_malformed_id_is_refused(
    api: Api, request_: pb.ClaimPrekeysRequest, field: str
) -> None:
    bob = await Device(api, email("bob")).join()
    err = await expect(
        C.INVALID_ARGUMENT,
        "MALFORMED_ID",
        bob.call("ClaimPrekeys", request_, pb.ClaimPrekeysResponse),
    )
    info = error_info(err)
    assert info is not None and info.metadata["field"] == field


async def test_a_claim_naming_too_many_devices_is_refused(api: Api) -> None:
    alice, bob = await pair(api)
    err = await expect(
        C.INVALID_ARGUMENT,
        "TOO_MANY",
        claim(bob, alice.box_id, [uuid.uuid4() for _ in range(101)]),
    )
    info = error_info(err)
    assert info is not None and dict(info.metadata) == {"field": "device_ids", "max": "100"}


# -- prekeys_low on Fetch and Subscribe ------------------------------------------------


async def test_fetch_says_when_the_pools_run_low(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_low_water=2)
    alice, bob = await pair(api)
    assert (await alice.fetch()).prekeys_low  # nothing uploaded
    await upload(alice, full_upload(alice, one_time_count=3, kem_count=3))
    assert not (await alice.fetch()).prekeys_low  # the upload refreshed it at once
    await bob.send((alice.box_id, b"hello", None))
    await claim(bob, alice.box_id)
    page = await alice.fetch()
    assert not page.prekeys_low and len(page.messages) == 1
    await claim(bob, alice.box_id)  # one key of each left: below 2
    assert (await alice.fetch()).prekeys_low  # read beside the page
    assert (await alice.fetch()).prekeys_low  # and now from the cache
    assert (await bob.fetch()).prekeys_low  # bob never uploaded


async def test_a_store_that_cannot_count_still_serves_fetch(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await pair(api)
    await bob.send((alice.box_id, b"hello", None))

    async def down(*args: object) -> PrekeyCounts:
        raise StoreUnavailable("injected", reason="STORE_UNAVAILABLE")

    monkeypatch.setattr(api.store, "prekey_counts", down)
    page = await alice.fetch()
    assert len(page.messages) == 1 and not page.prekeys_low
    await expect(C.UNAVAILABLE, "STORE_UNAVAILABLE", status(alice))


async def test_subscribe_carries_prekeys_low_on_live_and_heartbeats(
    make_api: Callable[..., Any], subs: Callable[..., Subscription]
) -> None:
    api: Api = await make_api(prekey_low_water=1, stream_heartbeat=0.2, stream_poll=SLOW_POLL)
    alice = await Device(api, email("alice")).join()
    sub = subs(alice)
    (live,) = await sub.until("live")
    assert live.live.prekeys_low
    beat = await sub.next()
    assert isinstance(beat, pb.SubscribeEvent) and beat.heartbeat.prekeys_low
    await upload(alice, full_upload(alice, one_time_count=2, kem_count=2))
    # The next heartbeat after the upload says so (one may have been on its way).
    for _ in range(3):
        beat = await sub.next()
        assert isinstance(beat, pb.SubscribeEvent) and beat.WhichOneof("event") == "heartbeat"
        if not beat.heartbeat.prekeys_low:
            break
    assert not beat.heartbeat.prekeys_low
    late = subs(alice)
    (live,) = await late.until("live")
    assert not live.live.prekeys_low


# -- rotation and revocation void prekeys ------------------------------------------------


def rotate_request(dev: Device, new: DeviceKeyPair) -> pb.RotateKeysRequest:
    pub = new.public()
    return pb.RotateKeysRequest(
        keys=pb.DeviceKeys(
            encryption_key=pub.encryption_public,
            signing_key=pub.signing_public,
            key_signature=new.key_signature(dev.device_id),
        ),
        signature=sign_change(
            dev.keys.signing_private,
            ChangeKind.ROTATE,
            dev.box_id,
            dev.device_id,
            pub.encryption_public,
            pub.signing_public,
        ),
    )


async def test_rotating_keys_drops_the_prekeys_their_old_key_signed(api: Api) -> None:
    alice, bob = await pair(api)
    await upload(alice, full_upload(alice, one_time_count=2, kem_count=2))
    new = DeviceKeyPair.generate()
    await alice.call("RotateKeys", rotate_request(alice, new), pb.RotateKeysResponse)
    assert await status(alice) == pb.PrekeyStatus(low=True, low_water=20, pool_max=200)
    got = await claim(bob, alice.box_id)
    assert got.bundles == [] and list(got.devices_without_prekeys) == [str(alice.device_id)]
    # Keys signed by the old key no longer upload; by the new one they do.
    old = alice.keys
    await expect(
        C.INVALID_ARGUMENT,
        "PREKEY_SIGNATURE_INVALID",
        upload(alice, full_upload(alice, one_time_count=1, kem_count=1)),
    )
    alice.keys = new
    assert (await upload(alice, full_upload(alice))).low  # 5 keys, below 20
    (bundle,) = (await claim(bob, alice.box_id)).bundles
    assert (
        bundle.device.keys.signing_key
        == new.public().signing_public
        != (old.public().signing_public)
    )


async def test_a_rotation_retried_after_its_delete_failed_still_drops_the_prekeys(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await pair(api)
    await upload(alice, full_upload(alice, one_time_count=2, kem_count=2))
    store = api.store
    real_delete = store.delete_prekeys
    failures = [StoreUnavailable("injected", reason="STORE_UNAVAILABLE")]

    async def delete_once_down(*args: Any) -> None:
        if failures:
            raise failures.pop()
        await real_delete(*args)

    monkeypatch.setattr(store, "delete_prekeys", delete_once_down)
    request = rotate_request(alice, DeviceKeyPair.generate())
    await expect(
        C.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        alice.call("RotateKeys", request, pb.RotateKeysResponse),
    )
    assert (await counts(api, alice)).signed_prekey_id == 1  # the keys changed, these stayed
    await alice.call("RotateKeys", request, pb.RotateKeysResponse)  # the client's retry
    assert (await counts(api, alice)).signed_prekey_id is None
    assert (await claim(bob, alice.box_id)).bundles == []


async def test_revoking_a_device_drops_its_prekeys(api: Api) -> None:
    alice, bob = await pair(api)
    tablet = await link(api, alice)
    await upload(tablet, full_upload(tablet, one_time_count=2, kem_count=2))
    await alice.call("RevokeDevice", revoke_request(alice, tablet), pb.RevokeDeviceResponse)
    assert await counts(api, tablet) == PrekeyCounts(0, 0, 0, 0, None, 0, None)
    got = await claim(bob, alice.box_id, [tablet.device_id])
    assert got.bundles == [] and list(got.devices_without_prekeys) == [str(tablet.device_id)]


async def test_an_upload_racing_a_rotation_keeps_no_key_the_old_key_signed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload reads the old key, the rotation then changes the key and
    deletes (nothing yet), then the upload writes: its re-read of the key
    must catch it, or keys no sender can verify stay published."""
    alice, bob = await pair(api)
    store = api.store
    real_put = store.put_prekeys
    reached, rotated = asyncio.Event(), asyncio.Event()

    async def put_after_rotation(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await asyncio.wait_for(rotated.wait(), 30)
        return await real_put(*args, **kwargs)

    monkeypatch.setattr(store, "put_prekeys", put_after_rotation)
    call = asyncio.ensure_future(upload(alice, full_upload(alice, one_time_count=2, kem_count=2)))
    await asyncio.wait_for(reached.wait(), 30)
    await alice.call(
        "RotateKeys", rotate_request(alice, DeviceKeyPair.generate()), pb.RotateKeysResponse
    )
    rotated.set()
    await expect(C.INVALID_ARGUMENT, "PREKEY_SIGNATURE_INVALID", call)
    assert (await counts(api, alice)).signed_prekey_id is None
    assert (await claim(bob, alice.box_id)).bundles == []
