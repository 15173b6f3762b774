"""The client SDK against a real server, on each store backend.

People are real ``RossbyClient`` devices with their own home directories;
a second device is linked through the API. The only shortcuts play a
malicious server: a stored ciphertext is altered in the database, and a
device's keys are swapped in the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
import warnings
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from rossby import errors
from rossby.client import (
    HomeLocked,
    InvalidMessage,
    KeyChangeWarning,
    NotAuthorized,
    ReceivedMessage,
    RejectedMessage,
    RossbyClient,
    UntrustedKeys,
    WrongPassphrase,
)
from rossby.client.bodies import encode_text
from rossby.client.hawk import HawkSigner, call_signed
from rossby.client.models import Event
from rossby.client.state import ClientState, SeenSet, decode_state, encode_state
from rossby.contacts import normalize
from rossby.crypto import (
    DeviceKeyPair,
    RecipientDevice,
    SenderIdentity,
    read_keyfile,
    scrypt_n_of,
    seal_envelope,
)
from rossby.server.notify import read_outbox_code
from rossby.store import DeviceKeys as StoreDeviceKeys
from rossby.store import NewMessage as StoreNewMessage
from rossby.store import parse_store_url
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from rossby.store.cassandra.positions import bucket_of
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import FAST, PASS, Api, Join
from tests.api.device import email


async def drain(client: RossbyClient) -> list[Event]:
    return [event async for event in client.fetch_messages()]


def received(events: list[Event]) -> list[ReceivedMessage]:
    return [e for e in events if isinstance(e, ReceivedMessage)]


def contact_of(client: RossbyClient) -> str:
    return client.whoami().contacts[0]


async def add_second_device(
    api: Api, owner: RossbyClient, home: Path, stack: AsyncExitStack
) -> RossbyClient:
    """A second device of ``owner``'s box, linked through the API: the owner
    shows a link code, the new device joins with it, the owner approves."""
    invite = await owner.create_link_offer()
    tablet = await stack.enter_async_context(
        RossbyClient.join(home, PASS, code=invite.uri, device_name="tablet", scrypt_n=FAST)
    )
    request = await owner.wait_for_link(invite, wait=20, poll=0.05)
    await owner.approve_link(invite, request)
    await tablet.complete_link(wait=20, poll=0.05)
    return tablet


async def test_group_message_and_reply_reach_every_device(
    api: Api, people: Join, tmp_path: Path
) -> None:
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    async with AsyncExitStack() as stack:
        tablet = await add_second_device(api, alice, tmp_path / "alice-tablet", stack)
        # The laptop approved the tablet itself, so it pinned it then: no
        # key change is reported for a device this device vouched for.
        with warnings.catch_warnings():
            warnings.simplefilter("error", KeyChangeWarning)
            report = await alice.send([contact_of(bob), contact_of(carol)], "hello group")
        assert report.ok and report.key_changes == ()
        outcomes = {(r.box_id, r.outcome, r.own_copy) for r in report.results}
        assert outcomes == {
            (bob.box_id, "queued", False),
            (carol.box_id, "queued", False),
            (alice.box_id, "queued", True),
        }

        # Bob knows Alice (he looked her up); Carol does not: her client
        # fetches the sender's keys by box id and verifies on arrival.
        await bob.resolve(contact_of(alice))
        (got,) = received(await drain(bob))
        assert (got.text, got.sender_contact, got.outgoing) == (
            "hello group",
            contact_of(alice),
            False,
        )
        assert got.message_id == report.message_id and got.sender_device == alice.device_id
        assert set(got.recipients) == {bob.box_id, carol.box_id}

        (first,) = received(await drain(carol))
        assert (first.text, first.message_id) == ("hello group", report.message_id)
        assert first.sender_box == alice.box_id and first.sender_contact is None
        assert await drain(carol) == []
        # Resolving her contact later names the sender without a key change.
        assert (await carol.resolve(contact_of(alice))).key_change is None

        # The tablet sees what the laptop sent, through the own-box copy.
        (sync,) = received(await drain(tablet))
        assert tablet.whoami().contacts == (contact_of(alice),)  # the link's contact sync
        assert sync.outgoing and sync.text == "hello group"
        assert sync.sender_device == alice.device_id
        assert set(sync.recipients) == {bob.box_id, carol.box_id}
        assert received(await drain(alice)) == []  # the sender skips its own copy

        # Bob's reply is wrapped for both of Alice's devices. The tablet got
        # Alice's own contact with the link's contact sync; Bob's it learns
        # by resolving (the laptop did not know Bob yet when it linked).
        reply = await bob.send([contact_of(alice)], "hi both")
        assert reply.ok and reply.key_changes == ()
        await tablet.resolve(contact_of(bob))
        for device in (alice, tablet):
            (msg,) = received(await drain(device))
            assert (msg.text, msg.sender_contact, msg.message_id) == (
                "hi both",
                contact_of(bob),
                reply.message_id,
            )
            assert msg.recipients == (alice.box_id,)


async def test_signature_by_another_key_is_rejected_and_acked(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    assert alice.box_id and bob.box_id
    bob_keys = {d.device_id: d for d in (await alice.resolve(contact_of(bob))).devices}

    # Sent with Alice's real Hawk credentials, so the server reports her as
    # the sender, but signed by a key that is not her device's.
    forged_id = uuid.uuid4()
    envelope = seal_envelope(
        SenderIdentity(alice.box_id, alice.device_id, DeviceKeyPair.generate().signing_private),
        bob.box_id,
        [RecipientDevice(d, k.encryption_key) for d, k in bob_keys.items()],
        forged_id,
        "text",
        encode_text("forged", [bob.box_id]),
    )
    creds = read_keyfile(alice.home / "device.key", PASS).hawk
    assert creds is not None
    signer = HawkSigner(creds.id, creds.key, "127.0.0.1", api.server.port)
    sent = await call_signed(
        api.channel,
        signer,
        "/rossby.v1.Rossby/Send",
        pb.SendRequest(
            messages=[
                pb.OutgoingMessage(
                    recipient_box_id=str(bob.box_id), message_id=str(forged_id), ciphertext=envelope
                )
            ]
        ),
        pb.SendResponse,
        deadline=30,
    )
    assert sent.results[0].outcome == pb.SEND_OUTCOME_QUEUED
    genuine = await alice.send([contact_of(bob)], "genuine")

    with pytest.raises(InvalidMessage):
        await bob.open_message(
            pb.QueuedMessage(
                position=sent.results[0].position,
                message_id=str(forged_id),
                sender_box_id=str(alice.box_id),
                sender_device_id=str(alice.device_id),
                ciphertext=envelope,
            )
        )
    events = await drain(bob)
    assert [type(e) for e in events] == [RejectedMessage, ReceivedMessage]
    rejected, ok = events
    assert isinstance(rejected, RejectedMessage) and isinstance(ok, ReceivedMessage)
    assert rejected.message_id == str(forged_id) and rejected.sender_box == str(alice.box_id)
    assert ok.text == "genuine" and ok.message_id == genuine.message_id
    assert bob.stats.rejected == 1 and bob.stats.received == 1
    assert bob.stats.acked_through == genuine.results[0].position
    assert await drain(bob) == []  # acked: the forgery blocks nothing


async def tamper(api: Api, box_id: uuid.UUID, message_id: uuid.UUID, position: int) -> None:
    """Flip one byte of a stored ciphertext, directly in the backend's table."""
    url = parse_store_url(api.server.settings.store)
    if url.scheme == "sqlite":

        def flip() -> None:
            with sqlite3.connect(url.path) as db:
                (data,) = db.execute(
                    "SELECT ciphertext FROM messages WHERE box_id = ? AND message_id = ?",
                    (box_id.bytes, message_id.bytes),
                ).fetchone()
                changed = bytearray(data)
                changed[-100] ^= 0x01  # inside the body ciphertext, before the signature
                db.execute(
                    "UPDATE messages SET ciphertext = ? WHERE box_id = ? AND message_id = ?",
                    (bytes(changed), box_id.bytes, message_id.bytes),
                )
    else:

        def flip() -> None:
            from cassandra.cluster import Cluster

            cluster = Cluster(list(url.hosts), port=url.port, protocol_version=PROTOCOL_VERSION)
            try:
                session = cluster.connect()
                key = (box_id, bucket_of(position), position, message_id)
                where = "WHERE box_id = %s AND bucket = %s AND position = %s AND message_id = %s"
                row = session.execute(
                    f"SELECT ciphertext FROM {url.keyspace}.messages {where}", key
                ).one()
                changed = bytearray(row.ciphertext)
                changed[-100] ^= 0x01
                session.execute(
                    f"UPDATE {url.keyspace}.messages SET ciphertext = %s {where}",
                    (bytes(changed), *key),
                )
            finally:
                cluster.shutdown()

    await asyncio.to_thread(flip)


async def test_ciphertext_altered_in_the_database_is_rejected(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    assert bob.box_id
    first = await alice.send([contact_of(bob)], "secret")
    second = await alice.send([contact_of(bob)], "still fine")
    await tamper(api, bob.box_id, first.message_id, first.results[0].position)

    events = await drain(bob)
    assert [type(e) for e in events] == [RejectedMessage, ReceivedMessage]
    assert isinstance(events[0], RejectedMessage)
    assert events[0].message_id == str(first.message_id)
    assert received(events)[0].text == "still fine"
    assert bob.stats.acked_through == second.results[0].position
    assert await drain(bob) == []


async def test_key_change_warns_once_and_changes_the_safety_number(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id
    await bob.resolve(contact_of(alice))
    before_a = await alice.safety_number(contact_of(bob))
    before_b = await bob.safety_number(contact_of(alice))
    assert before_a == before_b
    assert len(before_a.groups) == 12 and all(len(g) == 5 and g.isdigit() for g in before_a.groups)
    assert before_a.matches(before_b.qr_payload) and len(before_a.qr_payload) == 65

    # Bob rotates his keys (signed by his old key, recorded in his key log).
    await bob.rotate_keys()

    with pytest.warns(KeyChangeWarning) as caught:
        report = await alice.send([contact_of(bob)], "to the new key")
    change = report.key_changes[0]
    assert [w.message.change for w in caught.list if isinstance(w.message, KeyChangeWarning)] == [
        change
    ]
    assert (change.box_id, change.contact, change.rekeyed, change.added, change.own_box) == (
        bob.box_id,
        contact_of(bob),
        (bob.device_id,),
        (),
        False,
    )
    assert "NEW KEYS" in change.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyChangeWarning)
        again = await alice.send([contact_of(bob)], "pinned now")  # re-pinned: no repeat
    assert again.key_changes == ()

    after_a = await alice.safety_number(contact_of(bob))
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyChangeWarning)  # Bob knows his own new keys
        after_b = await bob.safety_number(contact_of(alice))
    assert after_a != before_a and after_a == after_b

    # The messages went to the new key, which Bob's device now holds.
    events = await drain(bob)
    assert [m.text for m in received(events)] == ["to the new key", "pinned now"]
    assert not [e for e in events if isinstance(e, RejectedMessage)]


async def test_duplicates_are_dropped_across_runs(api: Api, people: Join, tmp_path: Path) -> None:
    alice = await people("alice")
    bob_contact = email("bob")
    async with RossbyClient.create(
        tmp_path / "bob",
        PASS,
        server=api.target,
        contacts=[bob_contact],
        device_name="phone",
        scrypt_n=FAST,
    ) as bob:
        await bob.register()
        code = read_outbox_code(api.outbox, normalize("email", bob_contact))
        assert code is not None
        await bob.authorize([code])
        await bob.resolve(contact_of(alice))
    first = await alice.send([bob_contact], "one")
    retry = await alice.send([bob_contact], "one, again", message_id=first.message_id)
    assert [r.outcome for r in retry.results] == ["duplicate"]
    await alice.send([bob_contact], "two")

    async with RossbyClient.open(tmp_path / "bob", PASS) as bob:
        async for event in bob.fetch_messages():
            assert isinstance(event, ReceivedMessage) and event.text == "one"
            break  # stop before the ack, as a crash would
        assert bob.stats.acked_through == 0
    async with RossbyClient.open(tmp_path / "bob", PASS) as bob:
        events = await drain(bob)
        assert [m.text for m in received(events)] == ["two"]
        assert bob.stats.duplicates == 1
        assert await drain(bob) == []


async def test_keyfile_is_private_and_the_passphrase_is_checked(
    api: Api, people: Join, tmp_path: Path
) -> None:
    alice = await people("alice")
    home = tmp_path / "alice"
    assert home.stat().st_mode & 0o777 == 0o700
    for name in ("device.key", "state.bin"):
        assert (home / name).stat().st_mode & 0o777 == 0o600
    keyfile = read_keyfile(home / "device.key", PASS)
    secret = keyfile.keys.signing_private_bytes()
    for name in ("device.key", "state.bin"):
        assert secret not in (home / name).read_bytes()
    with pytest.raises(HomeLocked):  # Alice's client still has it open
        async with RossbyClient.open(home, PASS):
            pass
    await alice.close()
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        async with RossbyClient.open(home, "not the passphrase"):
            pass
    async with RossbyClient.open(home, PASS) as again:
        assert again.whoami().box_id == alice.box_id


async def test_rpc_failures_are_typed(api: Api, people: Join, tmp_path: Path) -> None:
    alice = await people("alice")
    with pytest.raises(errors.NotFound):
        await alice.send([email("nobody")], "anyone?")
    contact = email("dave")
    async with RossbyClient.create(
        tmp_path / "dave",
        PASS,
        server=api.target,
        contacts=[contact],
        device_name="phone",
        scrypt_n=FAST,
    ) as dave:
        await dave.register()
        with pytest.raises(NotAuthorized):
            await dave.send([contact_of(alice)], "too early")
        with pytest.raises(errors.PermissionDenied) as denied:
            code = read_outbox_code(api.outbox, normalize("email", contact))
            await dave.authorize(["000000" if code != "000000" else "111111"])
        assert denied.value.reason == "CODE_INVALID"


async def test_a_device_key_signature_that_fails_is_not_trusted(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id
    pinned = await alice.resolve(contact_of(bob))
    # The keystore swaps in an encryption key of its own but cannot sign it
    # with Bob's signing key.
    intruder = DeviceKeyPair.generate()
    (bob_device,) = pinned.devices
    await api.store.rotate_device_keys(
        bob.box_id,
        bob.device_id,
        StoreDeviceKeys(
            intruder.encryption_public_bytes,
            bob_device.signing_key,
            intruder.key_signature(bob.device_id),
        ),
    )
    with pytest.raises(UntrustedKeys):
        await alice.send([contact_of(bob)], "to whom?")
    assert alice.pinned_devices(bob.box_id) == pinned.devices  # the pin did not move


async def test_a_keyfile_rewrite_upgrades_an_older_cheaper_cost(api: Api, tmp_path: Path) -> None:
    """A keyfile written at a lower cost (as every file was before the
    default went from 2^15 to 2^17) is raised to the current default the
    next time the client writes it (one 2^17 derivation, once)."""
    contact = email("carol")
    home = tmp_path / "carol"
    async with RossbyClient.create(
        home, PASS, server=api.target, contacts=[contact], device_name="phone", scrypt_n=FAST
    ) as carol:
        await carol.register()
    assert scrypt_n_of((home / "device.key").read_bytes()) == FAST
    code = read_outbox_code(api.outbox, normalize("email", contact))
    assert code is not None
    async with RossbyClient.open(home, PASS) as carol:
        await carol.authorize([code])  # keeps the credentials: a rewrite
    assert scrypt_n_of((home / "device.key").read_bytes()) == 2**17


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_message_replayed_after_its_id_left_the_window_is_dropped(
    api: Api, people: Join
) -> None:
    """A malicious server re-queues a genuine message whose id the client
    no longer remembers (the window is 10,000 ids; 2 here). Its signed send
    time is below its sender's floor, so it is dropped as a replay, and
    newer messages from the same sender still arrive."""
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    bob._state.seen = SeenSet(maxlen=2)
    old = await alice.send([contact_of(bob)], "old")
    assert bob.box_id is not None
    queued = (await api.store.fetch(bob.box_id, bob.device_id, after=0, limit=10)).messages
    original = next(m for m in queued if str(m.message_id) == str(old.message_id))
    assert [m.text for m in received(await drain(bob))] == ["old"]
    for text in ("one", "two", "three"):
        await alice.send([contact_of(bob)], text)
    assert [m.text for m in received(await drain(bob))] == ["one", "two", "three"]
    assert str(old.message_id) not in bob._state.seen  # out of the window

    # The server replays it: forget the id behind its own dedupe, queue it again.
    with sqlite3.connect(parse_store_url(api.server.settings.store).path) as db:
        db.execute("DELETE FROM message_ids WHERE message_id = ?", (original.message_id.bytes,))
    await api.store.enqueue(
        bob.box_id,
        StoreNewMessage(
            original.message_id, original.sender_box, original.sender_device, original.ciphertext
        ),
    )
    duplicates = bob.stats.duplicates
    assert received(await drain(bob)) == []
    assert bob.stats.duplicates == duplicates + 1
    await alice.send([contact_of(bob)], "four")
    assert [m.text for m in received(await drain(bob))] == ["four"]


def test_the_replay_floors_survive_a_restart() -> None:
    seen = SeenSet(maxlen=1)
    seen.add("a", "box.dev", 100)
    seen.add("b", "box.dev", 200)  # "a" falls out: the floor is 100
    state = ClientState(server="s", hawk_address="s", device_name="d", own_contacts=[], seen=seen)
    key = bytes(32)
    back = decode_state(encode_state(state, key), key).seen
    assert back.replayed("box.dev", 100) and not back.replayed("box.dev", 101)
    assert not back.replayed("other.dev", 100)
    assert back.origins() == {"b": ("box.dev", 200)}  # so "b" raises the floor in turn
