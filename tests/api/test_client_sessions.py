"""Ratchet sessions through a real server: PQXDH first contact, then the Double Ratchet.

People are real ``RossbyClient`` devices. What the server queued is read
from its store to look at the envelopes (which entries still carry a PQXDH
initial header) and to deliver messages out of order. On each store
backend, like the rest of the SDK's tests (the claims are the store's).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
import warnings
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from rossby.client import (
    ClientError,
    KeyChange,
    KeyChangeWarning,
    RejectedMessage,
    RossbyClient,
    UntrustedKeys,
)
from rossby.crypto.envelope_v2 import SIGN_LABEL
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import FAST, PASS, Api, Join, MakeApi
from tests.api.sessions_support import captured, contact_of, drain, entry_for, queued, texts
from tests.api.test_client_sdk import add_second_device


async def test_a_conversation_both_ways_across_every_device(
    api: Api, people: Join, tmp_path: Path
) -> None:
    alice, bob = await people("alice"), await people("bob")
    async with AsyncExitStack() as stack:
        alice_tablet = await add_second_device(api, alice, tmp_path / "alice-tablet", stack)
        bob_tablet = await add_second_device(api, bob, tmp_path / "bob-tablet", stack)
        assert bob.box_id is not None and alice.box_id is not None
        await bob.resolve(contact_of(alice))
        await bob_tablet.resolve(contact_of(alice))
        await alice_tablet.resolve(contact_of(bob))
        bob_one_time = len(bob._state.prekeys.one_time)

        first = await alice.send([contact_of(bob)], "hello bob")
        assert first.ok
        # First contact: each of bob's devices (and alice's tablet) got a PQXDH header.
        message = await captured(api, bob, first.message_id)
        for reader in (bob, bob_tablet):
            assert entry_for(reader, message).entry.initial is not None
        assert entry_for(alice_tablet, message).entry.initial is not None
        for device in (bob, bob_tablet):
            assert texts(await drain(device)) == ["hello bob"]
        assert texts(await drain(alice_tablet)) == ["hello bob"]  # the own-box copy
        # The responder deleted the one-time private its session used.
        assert len(bob._state.prekeys.one_time) == bob_one_time - 1
        used = entry_for(bob, message).entry.initial
        assert used is not None and used.one_time_prekey_id not in bob._state.prekeys.one_time
        assert used.kem_prekey_id not in bob._state.prekeys.kem

        # Bob's reply: both of alice's devices and bob's tablet read it.
        reply = await bob.send([contact_of(alice)], "hi alice")
        for device in (alice, alice_tablet):
            assert texts(await drain(device)) == ["hi alice"]
        assert texts(await drain(bob_tablet)) == ["hi alice"]

        # Alice heard from bob's phone on the session: no header for it any
        # more. Bob's tablet never wrote to her, so its entry still has one.
        second = await alice.send([contact_of(bob)], "how are you?")
        message = await captured(api, bob, second.message_id)
        assert entry_for(bob, message).entry.initial is None
        assert entry_for(bob_tablet, message).entry.initial is not None
        for device in (bob, bob_tablet):
            assert texts(await drain(device)) == ["how are you?"]
        assert alice.has_session(bob.box_id, bob.device_id)
        assert reply.ok


async def test_messages_delivered_out_of_order_all_open(api: Api, people: Join) -> None:
    """Three first-contact messages read newest first: the last one sets the
    session up from its header, the earlier ones open with skipped keys."""
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    sent = [await alice.send([contact_of(bob)], f"m{i}") for i in range(3)]
    messages = [await captured(api, bob, r.message_id) for r in sent]
    opened = [await bob.open_message(m) for m in reversed(messages)]
    assert [m.text for m in opened] == ["m2", "m1", "m0"]
    # A skipped key is used once: the same message does not open twice.
    with pytest.raises(ClientError):
        await bob.open_message(messages[0])


async def test_a_message_redelivered_before_its_ack_is_a_duplicate(api: Api, people: Join) -> None:
    """A run that stops before its ack sees the message again next time: it
    is dropped by id before the ratchet (whose key for it is spent)."""
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "once")
    async for event in bob.fetch_messages():
        assert texts([event]) == ["once"]
        break  # the consumer stops: nothing acked
    assert len(await queued(api, bob)) == 1  # still queued
    rejected = bob.stats.rejected
    assert await drain(bob) == []
    assert bob.stats.duplicates == 1 and bob.stats.rejected == rejected
    await alice.send([contact_of(bob)], "twice")
    assert texts(await drain(bob)) == ["twice"]


async def test_sessions_survive_a_restart(api: Api, people: Join, tmp_path: Path) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "before")
    assert texts(await drain(bob)) == ["before"]
    await bob.send([contact_of(alice)], "reply")
    assert texts(await drain(alice)) == ["reply"]
    assert alice.box_id is not None and bob.box_id is not None
    await bob.close()
    await alice.close()
    async with (
        RossbyClient.open(tmp_path / "alice", PASS, scrypt_n=FAST) as alice2,
        RossbyClient.open(tmp_path / "bob", PASS, scrypt_n=FAST) as bob2,
    ):
        assert alice2.has_session(bob.box_id, bob.device_id)
        sent = await alice2.send([contact_of(bob2)], "after")
        # The same session: no new first-contact header.
        assert entry_for(bob2, await captured(api, bob2, sent.message_id)).entry.initial is None
        assert texts(await drain(bob2)) == ["after"]
        await bob2.send([contact_of(alice2)], "still here")
        assert texts(await drain(alice2)) == ["still here"]


async def test_a_peer_that_rotates_its_keys_gets_a_new_session(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "one")
    assert texts(await drain(bob)) == ["one"]
    await bob.send([contact_of(alice)], "two")
    assert texts(await drain(alice)) == ["two"]
    assert alice.box_id is not None and bob.box_id is not None
    old = alice._state.sessions[(bob.box_id, bob.device_id)].current

    await bob.rotate_keys()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyChangeWarning)
        report = await alice.send([contact_of(bob)], "three")
    assert [c.rekeyed for c in report.key_changes] == [(bob.device_id,)]
    assert any(isinstance(w.message, KeyChangeWarning) for w in caught)
    new = alice._state.sessions[(bob.box_id, bob.device_id)].current
    assert new is not None and new is not old
    assert new.peer_dh == bob._keyfile.keys.encryption_public_bytes
    message = await captured(api, bob, report.message_id)
    assert entry_for(bob, message).entry.initial is not None  # PQXDH again
    assert texts(await drain(bob)) == ["three"]

    # Bob's own sessions were reset too: his reply starts one under his new key,
    # and alice sees the key change as an event as well.
    await bob.send([contact_of(alice)], "four")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeyChangeWarning)
        events = await drain(alice)
    assert texts(events) == ["four"]
    assert not any(isinstance(e, RejectedMessage) for e in events)


async def test_a_revoked_device_loses_its_session(api: Api, people: Join, tmp_path: Path) -> None:
    alice, bob = await people("alice"), await people("bob")
    async with AsyncExitStack() as stack:
        tablet = await add_second_device(api, bob, tmp_path / "bob-tablet", stack)
        await alice.send([contact_of(bob)], "to both")
        assert bob.box_id is not None
        assert alice.has_session(bob.box_id, tablet.device_id)
        await bob.revoke(tablet.device_id)
        assert not bob.has_session(bob.box_id, tablet.device_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KeyChangeWarning)
            report = await alice.send([contact_of(bob)], "to the phone")
        assert [c.removed for c in report.key_changes] == [(tablet.device_id,)]
        assert not alice.has_session(bob.box_id, tablet.device_id)
        assert (bob.box_id, tablet.device_id) not in alice._state.sessions
        message = await captured(api, bob, report.message_id)
        assert tablet.device_id not in entry_for(bob, message).header.recipient_devices


async def test_a_drained_pool_falls_back_to_the_last_resort_key(
    make_api: MakeApi, clients: Join
) -> None:
    api = await make_api(prekey_claim_rate_per_box="0", prekey_claim_rate_per_device="0")
    alice, bob, mallory = (
        await clients(api, "alice"),
        await clients(api, "bob"),
        await clients(api, "mallory"),
    )
    assert bob.box_id is not None
    status = await bob.prekey_status()
    assert (status.one_time, status.one_time_kem) == (100, 100)
    for _ in range(status.one_time):  # someone claims every one-time key
        await mallory._session.call(
            "ClaimPrekeys", pb.ClaimPrekeysRequest(box_id=str(bob.box_id)), pb.ClaimPrekeysResponse
        )
    drained = await bob.prekey_status()
    assert (drained.one_time, drained.one_time_kem, drained.low) == (0, 0, True)

    await bob.resolve(contact_of(alice))
    report = await alice.send([contact_of(bob)], "via the last resort")
    header = entry_for(bob, await captured(api, bob, report.message_id)).entry.initial
    assert header is not None and header.kem_last_resort and header.one_time_prekey_id is None
    last_resort = bob._state.prekeys.last_resort_id
    assert header.kem_prekey_id == last_resort
    assert texts(await drain(bob)) == ["via the last resort"]
    # Kept (it is not one-time), and the fetch saw prekeys_low and refilled.
    assert last_resort in bob._state.prekeys.last_resort
    refilled = await bob.prekey_status()
    assert (refilled.one_time, refilled.one_time_kem, refilled.low) == (100, 100, False)


async def test_a_device_without_prekeys_cannot_be_written_to(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    await api.store.delete_prekeys(bob.box_id, bob.device_id)
    with pytest.raises(ClientError, match="published prekeys"):
        await alice.send([contact_of(bob)], "nobody can read this")
    assert not alice.has_session(bob.box_id, bob.device_id)


async def test_a_bundle_for_other_identity_keys_is_not_trusted(api: Api, people: Join) -> None:
    """Alice's pin of bob is stale (he rotated since); a receipt, which goes to
    the pinned keys without a lookup, claims a bundle for his new keys: not
    the pinned ones, so no session is started with them."""
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    await alice.resolve(contact_of(bob))
    await bob.rotate_keys()
    with pytest.raises(UntrustedKeys, match="other identity keys"):
        await alice.send_receipt(bob.box_id, [uuid.uuid4()])
    assert not alice.has_session(bob.box_id, bob.device_id)


@pytest.mark.parametrize("backend", ["sqlite"])  # the forgery is written with sqlite3
async def test_a_bundle_whose_signature_fails_is_not_trusted(api: Api, people: Join) -> None:
    """A malicious store swaps bob's signed prekey for one bob never signed."""
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    path = api.server.settings.store.removeprefix("sqlite:///")

    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE prekeys SET public_key = ? WHERE box_id = ? AND kind = 1",
            (bytes(range(32)), bob.box_id.bytes),
        )
    with pytest.raises(UntrustedKeys, match="prekey signatures"):
        await alice.send([contact_of(bob)], "hello?")
    assert not alice.has_session(bob.box_id, bob.device_id)


async def test_a_rotated_peer_that_writes_first_shows_a_key_change_event(
    api: Api, people: Join
) -> None:
    """Alice rotates and writes first: her message fails to verify under the
    pinned key, Bob looks her up once (a ``KeyChange`` event), drops the old
    session and answers the new one from its PQXDH header."""
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "hi")
    assert texts(await drain(bob)) == ["hi"]
    await bob.send([contact_of(alice)], "hello")
    assert texts(await drain(alice)) == ["hello"]
    await alice.rotate_keys()
    await alice.send([contact_of(bob)], "new keys here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeyChangeWarning)
        events = await drain(bob)
    changes = [e for e in events if isinstance(e, KeyChange)]
    assert [c.rekeyed for c in changes] == [(alice.device_id,)]
    assert texts(events) == ["new keys here"]
    assert alice.box_id is not None
    session = bob._state.sessions[(alice.box_id, alice.device_id)].current
    assert session is not None
    assert session.peer_dh == alice._keyfile.keys.encryption_public_bytes
    await bob.send([contact_of(alice)], "got it")
    assert texts(await drain(alice)) == ["got it"]


async def test_two_devices_that_start_sessions_at_once_converge(api: Api, people: Join) -> None:
    """Both write first: each ends up with two sessions and keeps the one the
    other writes on, so no message of the crossing is lost."""
    alice, bob = await people("alice"), await people("bob")
    await alice.resolve(contact_of(bob))
    await bob.resolve(contact_of(alice))
    a1 = await alice.send([contact_of(bob)], "a1")
    b1 = await bob.send([contact_of(alice)], "b1")
    assert entry_for(alice, await captured(api, alice, b1.message_id)).entry.initial is not None
    assert entry_for(bob, await captured(api, bob, a1.message_id)).entry.initial is not None
    assert texts(await drain(alice)) == ["b1"]
    assert texts(await drain(bob)) == ["a1"]
    assert alice.box_id is not None and bob.box_id is not None
    assert len(alice._state.sessions[(bob.box_id, bob.device_id)].archived) == 1
    headers = []
    for i in range(2, 4):
        sent = await alice.send([contact_of(bob)], f"a{i}")
        headers.append(entry_for(bob, await captured(api, bob, sent.message_id)).entry.initial)
        assert texts(await drain(bob)) == [f"a{i}"]
        reply = await bob.send([contact_of(alice)], f"b{i}")
        headers.append(entry_for(alice, await captured(api, alice, reply.message_id)).entry.initial)
        assert texts(await drain(alice)) == [f"b{i}"]
    # Settled on one session pair: no first-contact header either way.
    assert headers == [None] * 4
    current = alice._state.sessions[(bob.box_id, bob.device_id)].current
    assert current is not None and bob.has_session(alice.box_id, alice.device_id)


async def test_after_rotating_a_device_still_reads_what_was_sent_before(
    api: Api, people: Join
) -> None:
    """Bob wrote on the old session before Alice rotated: her archived
    session still opens it; her next message starts a new session."""
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    await alice.send([contact_of(bob)], "hi")
    assert texts(await drain(bob)) == ["hi"]
    await bob.send([contact_of(alice)], "in flight")
    await alice.rotate_keys()
    assert alice.box_id is not None and bob.box_id is not None
    assert not alice.has_session(bob.box_id, bob.device_id)
    assert texts(await drain(alice)) == ["in flight"]
    report = await alice.send([contact_of(bob)], "new session")
    assert entry_for(bob, await captured(api, bob, report.message_id)).entry.initial is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeyChangeWarning)
        assert texts(await drain(bob)) == ["new session"]


def resigned(message: pb.QueuedMessage, sender: RossbyClient, flip_at: int) -> pb.QueuedMessage:
    """``message`` with one byte flipped and signed again by its real sender
    device: a message that verifies but does not open."""
    data = bytearray(message.ciphertext[:-64])
    data[flip_at] ^= 0x01
    signature = sender._keyfile.keys.signing_private.sign(SIGN_LABEL + bytes(data))
    forged = pb.QueuedMessage()
    forged.CopyFrom(message)
    forged.ciphertext = bytes(data) + signature
    return forged


async def test_a_message_that_verifies_but_does_not_open_changes_nothing(
    api: Api, people: Join
) -> None:
    """The body fails after the ratchet step succeeded (a first message: the
    PQXDH respond too): no session, no one-time key spent; then the genuine
    message opens. The same on an established session."""
    alice, bob = await people("alice"), await people("bob")
    assert alice.box_id is not None
    await bob.resolve(contact_of(alice))
    first = await captured(api, bob, (await alice.send([contact_of(bob)], "first")).message_id)
    vault = bob._state.prekeys
    before = (dict(vault.one_time), dict(vault.kem))
    with pytest.raises(ClientError):
        await bob.open_message(resigned(first, alice, len(first.ciphertext) - 65))
    assert (vault.one_time, vault.kem) == before
    assert (alice.box_id, alice.device_id) not in bob._state.sessions
    assert (await bob.open_message(first)).text == "first"

    second = await captured(api, bob, (await alice.send([contact_of(bob)], "second")).message_id)
    book = bob._state.sessions[(alice.box_id, alice.device_id)]
    assert book.current is not None
    ratchet = json.dumps(book.current.ratchet, sort_keys=True)
    with pytest.raises(ClientError):
        await bob.open_message(resigned(second, alice, len(second.ciphertext) - 65))
    assert json.dumps(book.current.ratchet, sort_keys=True) == ratchet
    assert (await bob.open_message(second)).text == "second"


async def test_devices_without_prekeys_are_left_out_of_the_envelope(
    api: Api, people: Join, tmp_path: Path
) -> None:
    """Bob's tablet and Alice's tablet have no prekeys (say, not upgraded):
    the message reaches Bob's phone, and no own-box copy is queued that no
    other device of Alice's could open."""
    alice, bob = await people("alice"), await people("bob")
    async with AsyncExitStack() as stack:
        bob_tablet = await add_second_device(api, bob, tmp_path / "bob-tablet", stack)
        alice_tablet = await add_second_device(api, alice, tmp_path / "alice-tablet", stack)
        assert bob.box_id is not None and alice.box_id is not None
        await api.store.delete_prekeys(bob.box_id, bob_tablet.device_id)
        await api.store.delete_prekeys(alice.box_id, alice_tablet.device_id)
        report = await alice.send([contact_of(bob)], "phone only")
        assert [(r.box_id, r.own_copy) for r in report.results] == [(bob.box_id, False)]
        message = await captured(api, bob, report.message_id)
        assert entry_for(bob, message).header.recipient_devices == (bob.device_id,)
        await bob.resolve(contact_of(alice))
        assert texts(await drain(bob)) == ["phone only"]
        assert not alice.has_session(bob.box_id, bob_tablet.device_id)
