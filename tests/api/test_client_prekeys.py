"""The prekey lifecycle of a device, through a real server.

Publishing after Authorize, the refill a Fetch or a Subscribe stream asks
for (``prekeys_low``), the 7-day rotation and its 30-day grace period, and
a state file from before forward secrecy. Time is moved by rewriting the
times the state recorded (as a device left alone for days would have them).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from rossby import errors
from rossby.client import ClientError, ReceivedMessage, RossbyClient, UpToDate
from rossby.client.prekeys import GRACE_MS, KEEP_CLAIMED, POOL_TARGET, ROTATE_AFTER_MS
from rossby.client.state import ClientState, decode_state, encode_state
from rossby.client.vault import PrekeyVault
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api, Join, MakeApi
from tests.api.sessions_support import contact_of, drain, texts

DAY_MS = 86_400_000


async def drain_pool(claimer: RossbyClient, target: RossbyClient, count: int) -> None:
    """Someone claims ``count`` bundles of ``target``'s box (rate limits off)."""
    for _ in range(count):
        await claimer._session.call(
            "ClaimPrekeys",
            pb.ClaimPrekeysRequest(box_id=str(target.box_id)),
            pb.ClaimPrekeysResponse,
        )


async def test_authorize_publishes_a_full_set(api: Api, people: Join) -> None:
    bob = await people("bob")
    status = await bob.prekey_status()
    vault = bob._state.prekeys
    assert (status.one_time, status.one_time_kem) == (POOL_TARGET, POOL_TARGET)
    assert status.signed_prekey_id == vault.signed_id != 0
    assert status.last_resort_id == vault.last_resort_id != 0
    assert not status.low
    # Every published key has its private half in the state, none retired.
    assert (len(vault.one_time), len(vault.kem)) == (POOL_TARGET, POOL_TARGET)
    assert vault.retired == {}


async def test_fetch_refills_when_the_server_says_low(make_api: MakeApi, clients: Join) -> None:
    api = await make_api(prekey_claim_rate_per_box="0", prekey_claim_rate_per_device="0")
    bob, mallory = await clients(api, "bob"), await clients(api, "mallory")
    await drain_pool(mallory, bob, POOL_TARGET - 10)  # below the low water (20)
    assert (await bob.prekey_status()).low
    assert await drain(bob) == []  # the Fetch answer says prekeys_low
    status = await bob.prekey_status()
    assert (status.one_time, status.one_time_kem, status.low) == (POOL_TARGET, POOL_TARGET, False)
    # The claimed keys' privates stay (a claimer may still write), the
    # published ones are all there.
    vault = bob._state.prekeys
    assert len(vault.one_time) == POOL_TARGET + 90 and vault.retired == {}

    # Claimed and never used, again: past KEEP_CLAIMED the oldest retire,
    # and the grace period later deletes them.
    await drain_pool(mallory, bob, POOL_TARGET - 10)
    await drain(bob)
    claimed = sorted(vault.one_time)[: 2 * 90 - KEEP_CLAIMED]
    assert set(vault.retired) == set(claimed) | set(sorted(vault.kem)[: len(claimed)])
    for key_id in vault.retired:
        vault.retired[key_id] -= GRACE_MS + DAY_MS
    await drain(bob)
    assert len(vault.one_time) == len(vault.kem) == POOL_TARGET + KEEP_CLAIMED
    assert not set(claimed) & set(vault.one_time)


async def test_a_stream_that_goes_live_low_refills(make_api: MakeApi, clients: Join) -> None:
    api = await make_api(prekey_claim_rate_per_box="0", prekey_claim_rate_per_device="0")
    alice, bob = await clients(api, "alice"), await clients(api, "bob")
    await drain_pool(alice, bob, POOL_TARGET - 10)
    await bob.resolve(contact_of(alice))
    seen: list[str | None] = []
    async with asyncio.timeout(30):
        async for event in bob.listen(reconnect=False, max_messages=1):
            if isinstance(event, UpToDate):
                await alice.send([contact_of(bob)], "live")
            if isinstance(event, ReceivedMessage):
                seen.append(event.text)
    assert seen == ["live"]
    status = await bob.prekey_status()
    assert (status.one_time, status.low) == (POOL_TARGET, False)


async def test_rotation_keeps_the_old_signed_prekey_for_the_grace_period(
    api: Api, people: Join
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    old = bob._state.prekeys.signed_id
    await alice.send([contact_of(bob)], "to the old signed prekey")  # claimed before
    status = await bob.rotate_prekeys()
    vault = bob._state.prekeys
    assert status.signed_prekey_id == vault.signed_id != old
    assert old in vault.retired and old in vault.signed
    # A first message made against the old bundle still opens.
    assert texts(await drain(bob)) == ["to the old signed prekey"]

    # Thirty days on, the next fetch deletes the old private.
    for key_id in vault.retired:
        vault.retired[key_id] -= GRACE_MS + DAY_MS
    await drain(bob)
    assert old not in vault.signed and old not in vault.retired
    assert vault.signed_id in vault.signed


async def test_the_signed_prekey_rotates_after_seven_days(api: Api, people: Join) -> None:
    bob = await people("bob")
    vault = bob._state.prekeys
    first, first_last_resort = vault.signed_id, vault.last_resort_id
    vault.rotated_at_ms -= ROTATE_AFTER_MS - DAY_MS  # six days: not yet
    await drain(bob)
    assert vault.signed_id == first
    vault.rotated_at_ms -= 2 * DAY_MS  # eight days
    await drain(bob)
    status = await bob.prekey_status()
    assert status.signed_prekey_id == vault.signed_id != first
    assert status.last_resort_id == vault.last_resort_id != first_last_resort
    assert {first, first_last_resort} <= set(vault.retired)


async def test_an_upload_the_server_refuses_leaves_no_private_behind(
    make_api: MakeApi, clients: Join
) -> None:
    """The pool is full (the server's prekey_pool_max is 100 here): the
    refused keys' privates are forgotten, not kept for keys nobody can claim."""
    api = await make_api(prekey_pool_max=100)
    bob = await clients(api, "bob")
    vault = bob._state.prekeys
    before = (dict(vault.one_time), dict(vault.kem), dict(vault.signed), vault.signed_id)
    with pytest.raises(errors.ResourceExhausted) as caught:
        await bob._prekeys.publish(replace=False)  # 100 more of each: over the pool max
    assert caught.value.reason == "PREKEY_POOL_FULL"
    assert (vault.one_time, vault.kem, vault.signed, vault.signed_id) == before
    assert vault.retired == {}


async def test_a_state_from_before_forward_secrecy_opens_and_publishes(
    api: Api, people: Join
) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    # Bob's state as an older client wrote it: no "prekeys", no "sessions".
    key = bob._session._state_key
    data = encode_state(bob._state, key)
    header, nonce = data[:17], data[5:17]
    doc = json.loads(ChaCha20Poly1305(key).decrypt(nonce, data[17:], header))
    del doc["prekeys"], doc["sessions"]
    old = ChaCha20Poly1305(key).encrypt(nonce, json.dumps(doc).encode(), header)
    back: ClientState = decode_state(header + old, key)
    assert back.prekeys == PrekeyVault() and back.sessions == {}
    assert back.pins.keys() == bob._state.pins.keys()

    # Such a device has published nothing: nobody can write to it yet...
    bob._state.prekeys, bob._state.sessions = back.prekeys, back.sessions
    await api.store.delete_prekeys(bob.box_id, bob.device_id)
    with pytest.raises(ClientError, match="published prekeys"):
        await alice.send([contact_of(bob)], "too early")
    # ...until its first fetch after the upgrade publishes a full set.
    await drain(bob)
    assert (await bob.prekey_status()).one_time == POOL_TARGET
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "now")
    assert texts(await drain(bob)) == ["now"]
