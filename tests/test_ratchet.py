"""rossby.crypto.ratchet: the Double Ratchet session, and forward secrecy / PCS end to end.

Every "attacker" below runs the real decryption code (``RatchetSession``,
``pqxdh.respond``) with exactly what it stole, and every refusal is paired
with the legitimate holder succeeding on the same bytes, so no assertion
can pass because the bytes were simply broken.
"""

from __future__ import annotations

import json
import os
import random
import uuid
import warnings
from dataclasses import dataclass

import pytest

from rossby.crypto import (
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    InvalidEnvelope,
    RatchetSession,
    RecipientDevice,
    open_envelope,
    respond,
    seal_envelope,
)
from rossby.crypto.ratchet import HEADER_BYTES, message_size
from tests.support.sessions import Pair, Party, ScriptedRng, clone, first_contact

AD = b"ad"


async def pair() -> Pair:
    return await first_contact(Party.make(), Party.make(), ad=AD)


def flipped(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


# --------------------------------------------------------------------------- basics


async def test_round_trips_both_ways_with_bursts() -> None:
    p = await pair()
    rnd = random.Random(18)
    for step in range(12):  # bounded: 12 bursts of 1..4 messages
        sender, receiver = (p.alice, p.bob) if step % 2 == 0 else (p.bob, p.alice)
        for i in range(rnd.randint(1, 4)):
            text = f"step {step} message {i}".encode()
            assert await receiver.decrypt(await sender.encrypt(text, AD), AD) == text


async def test_message_size_is_exact() -> None:
    p = await pair()
    for n in (0, 1, 15, 16, 32, 100):
        message = await p.alice.encrypt(bytes(n), AD)
        assert len(message) == message_size(n)
    assert message_size(32) == 120 and HEADER_BYTES == 40


async def test_out_of_order_and_across_a_ratchet_step() -> None:
    p = await pair()
    chain1 = [await p.alice.encrypt(f"c1-{i}".encode(), AD) for i in range(8)]
    order = [5, 0, 7, 2]  # the rest arrive after Bob has replied and Alice moved on
    for i in order:
        assert await p.bob.decrypt(chain1[i], AD) == f"c1-{i}".encode()
    await p.alice.decrypt(await p.bob.encrypt(b"reply", AD), AD)
    chain2 = [await p.alice.encrypt(f"c2-{i}".encode(), AD) for i in range(3)]
    assert await p.bob.decrypt(chain2[2], AD) == b"c2-2"
    for i in (6, 1, 3, 4):  # late messages of the previous chain still open
        assert await p.bob.decrypt(chain1[i], AD) == f"c1-{i}".encode()
    for i in (0, 1):
        assert await p.bob.decrypt(chain2[i], AD) == f"c2-{i}".encode()


async def test_skipping_up_to_max_skip_works_and_one_more_is_refused() -> None:
    p = await pair()
    # The first message (index 0 of Alice's chain) was received in first_contact,
    # so messages[i] has index i + 1 and messages[MAX_SKIP] skips exactly MAX_SKIP keys.
    messages = [await p.alice.encrypt(b"%d" % i, AD) for i in range(MAX_SKIP + 1)]
    assert await p.bob.decrypt(messages[MAX_SKIP], AD) == b"%d" % MAX_SKIP
    assert await p.bob.decrypt(messages[0], AD) == b"0"

    # One key further is refused without computing anything, and changes nothing.
    far = [await p.alice.encrypt(b"f%d" % i, AD) for i in range(MAX_SKIP + 2)]
    before = json.dumps(p.bob.to_json(), sort_keys=True)
    with pytest.raises(InvalidEnvelope):
        await p.bob.decrypt(far[-1], AD)
    assert json.dumps(p.bob.to_json(), sort_keys=True) == before
    assert await p.bob.decrypt(far[-2], AD) == b"f%d" % MAX_SKIP
    assert await p.bob.decrypt(far[-1], AD) == b"f%d" % (MAX_SKIP + 1)  # now one step away


async def test_stored_skipped_keys_are_capped_oldest_first() -> None:
    p = await pair()
    chain1 = [await p.alice.encrypt(b"%d" % i, AD) for i in range(MAX_SKIP + 1)]
    await p.bob.decrypt(chain1[-1], AD)  # stores the keys of chain1[0 .. MAX_SKIP - 1]
    assert len(p.bob.to_json()["ratchet"]["skipped_message_keys"]) == MAX_SKIPPED_KEYS
    await p.alice.decrypt(await p.bob.encrypt(b"reply", AD), AD)
    chain2 = [await p.alice.encrypt(b"n%d" % i, AD) for i in range(2)]
    await p.bob.decrypt(chain2[1], AD)  # one more skipped key: the oldest is dropped
    assert len(p.bob.to_json()["ratchet"]["skipped_message_keys"]) == MAX_SKIPPED_KEYS
    with pytest.raises(InvalidEnvelope):
        await p.bob.decrypt(chain1[0], AD)
    assert await p.bob.decrypt(chain1[1], AD) == b"1"
    assert await p.bob.decrypt(chain2[0], AD) == b"n0"


async def test_replays_of_spent_messages_are_refused() -> None:
    p = await pair()
    with pytest.raises(InvalidEnvelope):  # the first message, whose key respond() spent
        await p.bob.decrypt(p.first_message, AD)
    m = [await p.alice.encrypt(b"%d" % i, AD) for i in range(3)]
    await p.bob.decrypt(m[2], AD)
    await p.bob.decrypt(m[0], AD)  # a skipped key, used once ...
    for spent in (m[0], m[2]):  # ... and then gone, like the chain key it came from
        with pytest.raises(InvalidEnvelope):
            await p.bob.decrypt(spent, AD)
    await p.alice.decrypt(await p.bob.encrypt(b"reply", AD), AD)
    await p.bob.decrypt(await p.alice.encrypt(b"new chain", AD), AD)
    with pytest.raises(InvalidEnvelope):  # an old chain's message after the step
        await p.bob.decrypt(m[2], AD)
    assert await p.bob.decrypt(m[1], AD) == b"1"  # the one never delivered still opens


async def test_a_failed_decrypt_leaves_the_session_unchanged() -> None:
    p = await pair()
    await p.alice.decrypt(await p.bob.encrypt(b"r", AD), AD)
    good = await p.alice.encrypt(b"genuine", AD)
    state = json.dumps(p.bob.to_json(), sort_keys=True)
    bad = [flipped(good, i) for i in range(len(good))]  # header (ratchet key, PN, N) and body
    bad += [good[:-1], good + b"\x00", b"", good[:HEADER_BYTES]]
    for message in bad:
        with pytest.raises(InvalidEnvelope):
            await p.bob.decrypt(message, AD)
        assert json.dumps(p.bob.to_json(), sort_keys=True) == state
    with pytest.raises(InvalidEnvelope):
        await p.bob.decrypt(good, b"other ad")
    assert json.dumps(p.bob.to_json(), sort_keys=True) == state
    assert await p.bob.decrypt(good, AD) == b"genuine"
    assert json.dumps(p.bob.to_json(), sort_keys=True) != state  # the comparison can fail


async def test_session_ad_binds_every_message() -> None:
    alice, bob = Party.make(), Party.make()
    p = await first_contact(alice, bob, ad=AD)
    doc = p.bob.to_json()
    doc["session_ad"] = (bytes.fromhex(doc["session_ad"]) + b"x").hex()
    wrong = RatchetSession.from_json(doc)
    message = await p.alice.encrypt(b"bound", AD)
    with pytest.raises(InvalidEnvelope):
        await wrong.decrypt(message, AD)
    assert await p.bob.decrypt(message, AD) == b"bound"


async def test_json_round_trip_mid_conversation() -> None:
    p = await pair()
    late = [await p.alice.encrypt(b"late %d" % i, AD) for i in range(3)]
    await p.bob.decrypt(late[2], AD)  # leaves two skipped keys in Bob's state
    await p.alice.decrypt(await p.bob.encrypt(b"r", AD), AD)
    text = json.dumps(p.bob.to_json())  # JSON-safe: survives a real dump and load
    bob = RatchetSession.from_json(json.loads(text))
    alice = clone(p.alice)
    assert await bob.decrypt(late[0], AD) == b"late 0"
    for i in range(3):
        assert await bob.decrypt(await alice.encrypt(b"a%d" % i, AD), AD) == b"a%d" % i
        assert await alice.decrypt(await bob.encrypt(b"b%d" % i, AD), AD) == b"b%d" % i
    assert await bob.decrypt(late[1], AD) == b"late 1"


def test_from_json_refuses_what_is_not_a_session() -> None:
    for doc in ({}, {"v": 2, "session_ad": "", "ratchet": {}}, {"v": 1, "session_ad": "zz"}):
        with pytest.raises(ValueError):
            RatchetSession.from_json(doc)


async def test_respond_refuses_a_wrong_secret_key_or_ad() -> None:
    alice, bob = Party.make(), Party.make()
    p = await first_contact(alice, bob, ad=AD)
    sk, session_ad = os.urandom(32), b""
    with pytest.raises(InvalidEnvelope):
        await RatchetSession.respond(sk, bob.signed.private, p.first_message, AD)
    with pytest.raises(InvalidEnvelope):
        await RatchetSession.respond(sk, bob.signed.private, b"short", AD, session_ad=session_ad)


# --------------------------------------------------------------------------- FS and PCS


@dataclass
class Captured:
    """One message on the wire, and which way it went."""

    to_bob: bool
    data: bytes


@dataclass
class Stolen:
    """Everything long-term Bob's device holds at the compromise, plus its live session."""

    identity_private: bytes
    signing_private: bytes
    signed_prekey_private: bytes
    kem_privates: list[bytes]  # the unused pool and the last-resort key
    one_time_privates: list[bytes]  # the unused pool: the used one was deleted
    session: dict[str, object]


async def _attacker_reads(session_doc: dict[str, object], data: bytes) -> bool:
    try:
        await RatchetSession.from_json(json.loads(json.dumps(session_doc))).decrypt(data, AD)
    except InvalidEnvelope:
        return False
    return True


async def _converse(p: Pair, wire: list[Captured], rounds: int) -> None:
    """``rounds`` exchanges of 3 Alice->Bob and 2 Bob->Alice, all captured and all read."""
    for r in range(rounds):
        for i in range(3):
            data = await p.alice.encrypt(b"a%d.%d" % (r, i), AD)
            wire.append(Captured(True, data))
            assert await p.bob.decrypt(data, AD) == b"a%d.%d" % (r, i)
        for i in range(2):
            data = await p.bob.encrypt(b"b%d.%d" % (r, i), AD)
            wire.append(Captured(False, data))
            assert await p.alice.decrypt(data, AD) == b"b%d.%d" % (r, i)


async def _compromised_conversation() -> tuple[Party, Party, Pair, list[Captured], Stolen]:
    alice, bob = Party.make(), Party.make()
    used_opk = min(bob.one_time)
    p = await first_contact(alice, bob, plaintext=b"hello bob", ad=AD)
    assert used_opk not in bob.one_time  # respond_to deleted the used one-time private
    wire = [Captured(True, p.first_message)]
    await _converse(p, wire, rounds=4)
    # N more messages, all read by Bob, then the theft.
    for i in range(2):
        data = await p.alice.encrypt(b"n%d" % i, AD)
        wire.append(Captured(True, data))
        assert await p.bob.decrypt(data, AD) == b"n%d" % i
    stolen = Stolen(
        identity_private=bob.keys.encryption_private_bytes(),
        signing_private=bob.keys.signing_private_bytes(),
        signed_prekey_private=bob.signed.private,
        kem_privates=[k.private for k in bob.kem.values()] + [bob.last_resort.private],
        one_time_privates=[k.private for k in bob.one_time.values()],
        session=p.bob.to_json(),
    )
    return alice, bob, p, wire, stolen


async def test_forward_secrecy_after_a_full_compromise() -> None:
    alice, bob, p, wire, stolen = await _compromised_conversation()
    assert len(wire) == 1 + 4 * 5 + 2

    # 1. Bob's current state opens nothing captured: every key that protected
    #    a delivered message was deleted or ratcheted past.
    for captured in wire:
        assert not await _attacker_reads(stolen.session, captured.data)

    # 2. Re-running PQXDH as Bob with every stolen private key: the one-time
    #    prekey the first message used is gone, so no SK opens it.
    attempts = 0
    for kem in stolen.kem_privates:
        for opk in stolen.one_time_privates:
            attempts += 1
            sk, session_ad = respond(
                stolen.identity_private,
                bob.identity,
                alice.identity,
                p.header,
                signed_prekey_private=stolen.signed_prekey_private,
                one_time_prekey_private=opk,
                kem_private=kem,
            )
            with pytest.raises(InvalidEnvelope):
                await RatchetSession.respond(
                    sk, stolen.signed_prekey_private, p.first_message, AD, session_ad=session_ad
                )
    assert attempts == len(stolen.kem_privates) * len(stolen.one_time_privates) > 0


async def test_forward_secrecy_attack_code_works_given_the_deleted_keys() -> None:
    """Control for the test above: the same PQXDH attack, handed the DELETED one-time
    privates too, opens the first message, so its failure there is the deletion's doing."""
    alice, bob = Party.make(), Party.make()
    opk, kem = bob.one_time[min(bob.one_time)], bob.kem[min(bob.kem)]
    p = await first_contact(alice, bob, plaintext=b"hello bob", ad=AD)
    sk, session_ad = respond(
        bob.keys.encryption_private,
        bob.identity,
        alice.identity,
        p.header,
        signed_prekey_private=bob.signed.private,
        one_time_prekey_private=opk.private,
        kem_private=kem.private,
    )
    _, plain = await RatchetSession.respond(
        sk, bob.signed.private, p.first_message, AD, session_ad=session_ad
    )
    assert plain == b"hello bob"


async def _heal(p: Pair, wire: list[Captured], bob_fresh_key: bytes | None) -> tuple[bytes, ...]:
    """After the theft: Bob sends, Alice answers (a1), Bob answers with a fresh ratchet
    key, Alice answers twice (a2, a3). Returns (a1, a2, a3); Bob reads all of them."""
    b1 = await p.bob.encrypt(b"b-after", AD)
    wire.append(Captured(False, b1))
    assert await p.alice.decrypt(b1, AD) == b"b-after"
    a1 = await p.alice.encrypt(b"a1", AD)
    wire.append(Captured(True, a1))
    rng = None if bob_fresh_key is None else ScriptedRng(bob_fresh_key)
    assert await p.bob.decrypt(a1, AD, rng=rng) == b"a1"  # Bob draws his fresh key here
    b2 = await p.bob.encrypt(b"b2", AD)
    wire.append(Captured(False, b2))
    assert await p.alice.decrypt(b2, AD) == b"b2"
    a2, a3 = await p.alice.encrypt(b"a2", AD), await p.alice.encrypt(b"a3", AD)
    wire += [Captured(True, a2), Captured(True, a3)]
    assert await p.bob.decrypt(a2, AD) == b"a2" and await p.bob.decrypt(a3, AD) == b"a3"
    return a1, a2, a3


async def test_post_compromise_security_heals_after_one_round_trip() -> None:
    _, _, p, wire, stolen = await _compromised_conversation()
    a1, a2, a3 = await _heal(p, wire, bob_fresh_key=None)

    # The honest limit: Alice's first answer after the theft still uses a
    # DH with Bob's stolen ratchet key, so a passive attacker who keeps the
    # state reads it (docs/envelope.md "Double Ratchet": PCS needs a round trip).
    tracking = RatchetSession.from_json(json.loads(json.dumps(stolen.session)))
    assert await tracking.decrypt(a1, AD) == b"a1"

    # Healed: a2 and a3 come from a DH step with a key Bob drew after the
    # theft. Neither the stolen state, nor one that followed a1, opens them.
    for data in (a2, a3):
        assert not await _attacker_reads(stolen.session, data)
        with pytest.raises(InvalidEnvelope):
            await tracking.decrypt(data, AD)


async def test_post_compromise_attack_code_works_given_bobs_fresh_key() -> None:
    """Control for the test above: leak the fresh key Bob draws when he reads a1, and the
    same tracking attacker reads a2 and a3; only that unseen private key stood in its way."""
    _, _, p, wire, stolen = await _compromised_conversation()
    fresh = os.urandom(32)
    a1, a2, a3 = await _heal(p, wire, bob_fresh_key=fresh)
    tracking = RatchetSession.from_json(json.loads(json.dumps(stolen.session)))
    assert await tracking.decrypt(a1, AD, rng=ScriptedRng(fresh)) == b"a1"
    assert await tracking.decrypt(a2, AD) == b"a2"
    assert await tracking.decrypt(a3, AD) == b"a3"


def test_the_v1_envelope_falls_to_the_same_theft() -> None:
    """Why v2 exists: the same theft of Bob's long-term X25519 key opens every captured
    v1 envelope, however long ago it was sent (the old code fails the FS test above)."""
    alice, bob = Party.make(), Party.make()
    captured = seal_envelope(
        alice.sender(),
        bob.box,
        [RecipientDevice(bob.id, bob.keys.encryption_public_bytes)],
        uuid.uuid4(),
        "text",
        b"old secret",
    )
    stolen_identity_private = bob.keys.encryption_private_bytes()
    opened = open_envelope(
        captured,
        my_device_id=bob.id,
        my_encryption_private=stolen_identity_private,
        expected_recipient_box=bob.box,
        sender_lookup=lambda box, dev: alice.keys.signing_public_bytes,
    )
    assert opened.body == b"old secret"


async def test_a_previous_chain_beyond_max_skip_is_given_up_quietly() -> None:
    """More than MAX_SKIP lost messages in the previous chain: the new chain still opens,
    the lost ones are refused later, and the library's warning does not reach the caller."""
    p = await pair()
    lost = [await p.alice.encrypt(b"lost", AD) for _ in range(MAX_SKIP + 1)]
    await p.alice.decrypt(await p.bob.encrypt(b"reply", AD), AD)
    fresh = await p.alice.encrypt(b"new chain", AD)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert await p.bob.decrypt(fresh, AD) == b"new chain"
    assert seen == []
    for message in (lost[0], lost[-1]):
        with pytest.raises(InvalidEnvelope):
            await p.bob.decrypt(message, AD)


async def test_initiate_and_respond_refuse_malformed_keys() -> None:
    with pytest.raises(ValueError):
        await RatchetSession.initiate(bytes(31), bytes(32), b"x", AD)
    with pytest.raises(ValueError):
        await RatchetSession.initiate(bytes(32), bytes(33), b"x", AD)
    with pytest.raises(ValueError):
        await RatchetSession.respond(bytes(32), bytes(31), b"x" * 88, AD)


async def test_a_message_claiming_the_peers_initial_ratchet_key_is_refused() -> None:
    """Before Bob answers, Alice has no receiving chain; a message whose header names
    Bob's signed prekey as its ratchet key is refused like any other forgery."""
    alice, bob = Party.make(), Party.make()
    p = await first_contact(alice, bob, ad=AD)
    real = await p.bob.encrypt(b"real", AD)
    forged = bob.signed.public + real[32:]
    state = json.dumps(p.alice.to_json(), sort_keys=True)
    with pytest.raises(InvalidEnvelope):
        await p.alice.decrypt(forged, AD)
    assert json.dumps(p.alice.to_json(), sort_keys=True) == state
    assert await p.alice.decrypt(real, AD) == b"real"


async def test_random_mutations_fail_one_way_only() -> None:
    """Bounded fuzz (fixed seed): forged counters, keys, lengths and bit flips are all
    InvalidEnvelope, on both sides, and the genuine message still opens afterwards."""
    p = await pair()
    await p.alice.decrypt(await p.bob.encrypt(b"r", AD), AD)
    good = await p.alice.encrypt(b"k" * 32, AD)
    rnd = random.Random(18)
    for _ in range(400):
        m = bytearray(good)
        choice = rnd.randrange(4)
        if choice == 0:
            m = bytearray(rnd.randbytes(rnd.randrange(200)))
        elif choice == 1:
            m[32:40] = rnd.randbytes(8)  # PN and N
        elif choice == 2:
            m[0:32] = rnd.randbytes(32)
            m[32:36] = rnd.choice([0, 999, 1000, 1001, 2**32 - 1]).to_bytes(4, "big")
        else:
            m[rnd.randrange(len(m))] ^= 1 << rnd.randrange(8)
        for session in (p.bob, p.alice):
            with pytest.raises(InvalidEnvelope):
                await session.decrypt(bytes(m), AD)
    assert await p.bob.decrypt(good, AD) == b"k" * 32
