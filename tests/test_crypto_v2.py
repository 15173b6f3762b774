"""rossby.crypto v2: prekey generation, PQXDH and envelope v2 (seal, parse, verify, open, tamper).

As in tests/test_crypto.py, the tamper and truncation tests walk every
offset: "one opaque error, never another exception" is only believable if
no byte is skipped. Sessions are real PQXDH + Double Ratchet sessions
(tests/support/sessions.py).
"""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from rossby.crypto import (
    MAX_RECIPIENTS,
    Bundle,
    DeviceEntry,
    InitialHeader,
    InvalidBundle,
    InvalidEnvelope,
    ParsedEnvelope,
    PrekeyKind,
    RatchetSession,
    RecipientDevice,
    draft_envelope,
    envelope_v2_size,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    initiate,
    open_body,
    parse_envelope,
    peek_version,
    respond,
    seal_draft,
    seal_envelope,
    sign_prekey,
    verify_envelope,
    verify_prekey_signature,
)
from rossby.crypto.envelope_v2 import INITIAL_ENTRY_BYTES, SESSION_ENTRY_BYTES, SIGN_LABEL
from rossby.crypto.pqxdh import INITIAL_HEADER_BYTES
from rossby.crypto.prekeys import MAX_KEY_ID, kem_private_key
from tests.support.sessions import Party, ScriptedRng, clone, first_contact

# --------------------------------------------------------------------------- prekeys


def test_signed_prekey_is_signed_for_its_kind_device_and_id() -> None:
    p = Party.make()
    seed = os.urandom(32)
    spk = generate_signed_prekey(p.keys.signing_private, p.id, 7, rng=ScriptedRng(seed))
    assert (spk.kind, spk.key_id, spk.private) == (PrekeyKind.SIGNED, 7, seed)
    pub = p.keys.signing_public_bytes
    assert verify_prekey_signature(pub, PrekeyKind.SIGNED, p.id, 7, spk.public, spk.signature)
    assert not verify_prekey_signature(pub, PrekeyKind.SIGNED, p.id, 8, spk.public, spk.signature)
    other = uuid.uuid4()
    assert not verify_prekey_signature(pub, PrekeyKind.SIGNED, other, 7, spk.public, spk.signature)


def test_one_time_prekeys_are_consecutive_unsigned_x25519_pairs() -> None:
    keys = generate_one_time_prekeys(41, 3)
    assert [k.key_id for k in keys] == [41, 42, 43]
    assert all(k.kind is None and k.signature == b"" and len(k.public) == 32 for k in keys)
    assert len({k.private for k in keys}) == 3
    assert generate_one_time_prekeys(5, 0) == []


def test_kem_prekeys_sign_their_kind_so_one_time_and_last_resort_cannot_swap() -> None:
    p = Party.make()
    seeds = [os.urandom(64), os.urandom(64)]
    pub = p.keys.signing_public_bytes
    for last_resort, kind, other in (
        (False, PrekeyKind.ONE_TIME_KEM, PrekeyKind.LAST_RESORT_KEM),
        (True, PrekeyKind.LAST_RESORT_KEM, PrekeyKind.ONE_TIME_KEM),
    ):
        keys = generate_kem_prekeys(
            p.keys.signing_private, p.id, 10, 2, last_resort=last_resort, rng=ScriptedRng(*seeds)
        )
        assert [(k.kind, k.key_id, k.private) for k in keys] == [
            (kind, 10, seeds[0]),
            (kind, 11, seeds[1]),
        ]
        for k in keys:
            assert len(k.public) == 1184
            assert kem_private_key(k.private).public_key().public_bytes_raw() == k.public
            assert verify_prekey_signature(pub, kind, p.id, k.key_id, k.public, k.signature)
            assert not verify_prekey_signature(pub, other, p.id, k.key_id, k.public, k.signature)


@pytest.mark.parametrize(("first", "count"), [(-1, 1), (MAX_KEY_ID, 2), (0, -1)])
def test_prekey_ids_must_fit_a_u32(first: int, count: int) -> None:
    with pytest.raises(ValueError):
        generate_one_time_prekeys(first, count)
    assert generate_one_time_prekeys(MAX_KEY_ID, 1)[0].key_id == MAX_KEY_ID


def test_kem_private_key_refuses_a_wrong_seed() -> None:
    with pytest.raises(ValueError):
        kem_private_key(bytes(32))


# --------------------------------------------------------------------------- PQXDH


@pytest.mark.parametrize(
    ("one_time", "last_resort"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_pqxdh_both_sides_agree(one_time: bool, last_resort: bool) -> None:
    alice, bob = Party.make(), Party.make()
    bundle = bob.bundle(one_time=one_time, last_resort=last_resort)
    header, sk, ad = initiate(alice.keys.encryption_private, alice.identity, bundle)
    assert (header.one_time_prekey_id is not None) == one_time
    assert header.kem_last_resort == last_resort
    assert InitialHeader.decode(header.encode()) == header
    assert bob.respond_to(alice, InitialHeader.decode(header.encode())) == (sk, ad)
    assert ad == b"rossby/v2/pqxdh-ad\x00" + alice.identity.encode() + bob.identity.encode()
    header2, sk2, _ = initiate(alice.keys.encryption_private, alice.identity, bundle)
    assert sk2 != sk and header2.ephemeral_public != header.ephemeral_public


def test_the_responder_must_pick_the_kem_key_the_header_names() -> None:
    """A one-time KEM private in place of the last-resort one (or the reverse) gives
    another SK, without an error: ML-KEM's implicit rejection; the ratchet then fails."""
    alice, bob = Party.make(), Party.make()
    for last_resort in (False, True):
        header, sk, _ = initiate(
            alice.keys.encryption_private, alice.identity, bob.bundle(last_resort=last_resort)
        )
        assert header.kem_last_resort == last_resort
        right = bob.last_resort if last_resort else bob.kem[header.kem_prekey_id]
        wrong = bob.kem[min(bob.kem)] if last_resort else bob.last_resort
        for kem, same in ((wrong, False), (right, True)):
            opk = bob.one_time[header.one_time_prekey_id or 0].private
            got, _ = respond(
                bob.keys.encryption_private,
                bob.identity,
                alice.identity,
                header,
                signed_prekey_private=bob.signed.private,
                one_time_prekey_private=opk,
                kem_private=kem.private,
            )
            assert (got == sk) is same


def _tampered_bundles(bob: Party, other: Party) -> list[tuple[str, Bundle]]:
    b, r = bob.bundle(), dataclasses.replace

    def flip(data: bytes) -> bytes:
        return bytes([data[0] ^ 1]) + data[1:]

    other_signing = other.keys.signing_public_bytes
    return [
        ("signed_prekey", r(b, signed_prekey=flip(b.signed_prekey))),
        ("spk signature", r(b, signed_prekey_signature=flip(b.signed_prekey_signature))),
        ("spk id", r(b, signed_prekey_id=b.signed_prekey_id + 1)),
        ("kem_prekey", r(b, kem_prekey=flip(b.kem_prekey))),
        ("kem signature", r(b, kem_prekey_signature=flip(b.kem_prekey_signature))),
        ("kem id", r(b, kem_prekey_id=b.kem_prekey_id + 1)),
        ("kind swap", r(b, kem_last_resort=True)),
        ("device id", r(b, identity=r(b.identity, device_id=other.id))),
        ("signing key", r(b, identity=r(b.identity, signing_public=other_signing))),
        ("short kem", r(b, kem_prekey=b.kem_prekey[:-1])),
        ("opk id only", r(b, one_time_prekey=None)),
        ("opk only", r(b, one_time_prekey_id=None)),
        ("short opk", r(b, one_time_prekey=b"\x01" * 31)),
        ("short signature", r(b, signed_prekey_signature=b"")),
    ]


def test_tampered_bundles_are_refused_before_anything_is_derived() -> None:
    alice, bob, other = Party.make(), Party.make(), Party.make()
    for name, bundle in _tampered_bundles(bob, other):
        with pytest.raises(InvalidBundle):
            initiate(alice.keys.encryption_private, alice.identity, bundle)
        assert name  # the list is labelled so a failure names the field
    initiate(alice.keys.encryption_private, alice.identity, bob.bundle())  # the untampered one


def test_a_signed_low_order_prekey_is_refused() -> None:
    """The bundle owner itself signs an all-zero point: X25519 would yield zeros."""
    alice, bob = Party.make(), Party.make()
    zero = bytes(32)
    sig = sign_prekey(bob.keys.signing_private, PrekeyKind.SIGNED, bob.id, 1, zero)
    bundle = dataclasses.replace(bob.bundle(), signed_prekey=zero, signed_prekey_signature=sig)
    with pytest.raises(InvalidBundle):
        initiate(alice.keys.encryption_private, alice.identity, bundle)


def test_initiate_refuses_a_mismatched_own_identity() -> None:
    alice, bob = Party.make(), Party.make()
    with pytest.raises(ValueError):
        initiate(bob.keys.encryption_private, alice.identity, bob.bundle())


def test_a_tampered_header_gives_another_secret_or_is_refused() -> None:
    alice, bob = Party.make(), Party.make()
    header, sk, _ = initiate(alice.keys.encryption_private, alice.identity, bob.bundle())
    ct = bytearray(header.kem_ciphertext)
    ct[500] ^= 1
    for changed in (
        dataclasses.replace(header, ephemeral_public=Party.make().keys.encryption_public_bytes),
        dataclasses.replace(header, kem_ciphertext=bytes(ct)),
    ):
        copy = dataclasses.replace(bob, kem=dict(bob.kem), one_time=dict(bob.one_time))
        assert copy.respond_to(alice, changed)[0] != sk
    # Without the one-time key's DH4 the secret differs too (it is not optional once named).
    copy = dataclasses.replace(bob, kem=dict(bob.kem), one_time=dict(bob.one_time))
    assert copy.respond_to(alice, dataclasses.replace(header, one_time_prekey_id=None))[0] != sk
    for refused in (
        dataclasses.replace(header, ephemeral_public=bytes(32)),  # low order
        dataclasses.replace(header, kem_ciphertext=header.kem_ciphertext[:-1]),
    ):
        copy = dataclasses.replace(bob, kem=dict(bob.kem), one_time=dict(bob.one_time))
        with pytest.raises(InvalidEnvelope):
            copy.respond_to(alice, refused)
    # The header names a one-time key, the caller has none (or the reverse): refused.
    for opk in (None, bob.one_time[min(bob.one_time)].private):
        h = header if opk is None else dataclasses.replace(header, one_time_prekey_id=None)
        with pytest.raises(InvalidEnvelope):
            respond(
                bob.keys.encryption_private,
                bob.identity,
                alice.identity,
                h,
                signed_prekey_private=bob.signed.private,
                one_time_prekey_private=opk,
                kem_private=bob.kem[header.kem_prekey_id].private,
            )
    # A peer other than the one who initiated: another SK.
    assert bob.respond_to(Party.make(), header)[0] != sk


def test_initial_header_decoding_is_strict() -> None:
    alice, bob = Party.make(), Party.make()
    header, _, _ = initiate(alice.keys.encryption_private, alice.identity, bob.bundle())
    data = header.encode()
    assert len(data) == INITIAL_HEADER_BYTES == 1133
    for n in range(len(data)):
        with pytest.raises(InvalidEnvelope):
            InitialHeader.decode(data[:n])
    with pytest.raises(InvalidEnvelope):
        InitialHeader.decode(data + b"\x00")
    for flags in (0x04, 0x80):
        with pytest.raises(InvalidEnvelope):
            InitialHeader.decode(bytes([data[0] | flags]) + data[1:])
    no_opk = dataclasses.replace(header, one_time_prekey_id=None).encode()
    assert no_opk[37:41] == bytes(4)
    with pytest.raises(InvalidEnvelope):  # an id without the flag: not canonical
        InitialHeader.decode(no_opk[:40] + b"\x01" + no_opk[41:])
    with pytest.raises(ValueError):
        dataclasses.replace(header, kem_ciphertext=b"short").encode()


# --------------------------------------------------------------------------- envelope v2


@dataclasses.dataclass
class World:
    """a1 sends to box B: b1 is new (initial entry), b2 and a1's own a2 have sessions."""

    a1: Party
    a2: Party
    b1: Party
    b2: Party
    b3: Party  # in box B, not a reader
    sessions: dict[uuid.UUID, RatchetSession]  # a1's side, by reader
    peers: dict[uuid.UUID, RatchetSession]  # each reader's side (b1 gets one on receipt)


async def make_world() -> World:
    box_a, box_b = uuid.uuid4(), uuid.uuid4()
    a1, a2 = Party.make(box_a), Party.make(box_a)
    b1, b2, b3 = Party.make(box_b), Party.make(box_b), Party.make(box_b)
    w = World(a1, a2, b1, b2, b3, {}, {})
    for peer in (a2, b2):
        pair = await first_contact(a1, peer)
        await pair.alice.decrypt(await pair.bob.encrypt(b"ack", b""), b"")
        w.sessions[peer.id], w.peers[peer.id] = pair.alice, pair.bob
    return w


async def send(w: World, kind: str = "text", body: bytes = b"hello v2") -> bytes:
    readers = [w.b1.id, w.b2.id, w.a2.id]
    draft = draft_envelope(w.a1.sender(), w.b1.box, readers, uuid.uuid4())
    entries = {}
    if w.b1.id not in w.sessions:  # first contact: PQXDH, and the initial header rides along
        header, sk, ad = initiate(w.a1.keys.encryption_private, w.a1.identity, w.b1.bundle())
        w.sessions[w.b1.id], first = await RatchetSession.initiate(
            sk, w.b1.signed.public, draft.content_key, draft.associated_data, session_ad=ad
        )
        entries[w.b1.id] = DeviceEntry(header, first)
    for peer in readers:
        if peer in entries:
            continue
        message = await w.sessions[peer].encrypt(draft.content_key, draft.associated_data)
        entries[peer] = DeviceEntry(None, message)
    return seal_draft(draft, entries, kind, body)


async def open_as(w: World, reader: Party, data: bytes, box: uuid.UUID | None = None) -> bytes:
    """The receive path a client runs: parse, verify, ratchet, open_body."""
    parsed = parse_envelope(data, my_device_id=reader.id, expected_recipient_box=box or reader.box)
    verify_envelope(parsed, w.a1.keys.signing_public_bytes)
    initial = parsed.entry.initial
    if initial is not None:
        sk, ad = reader.respond_to(w.a1, initial)
        session, key = await RatchetSession.respond(
            sk,
            reader.signed.private,
            parsed.entry.ratchet_message,
            parsed.associated_data,
            session_ad=ad,
        )
        w.peers[reader.id] = session
    else:
        key = await w.peers[reader.id].decrypt(parsed.entry.ratchet_message, parsed.associated_data)
    kind, body = open_body(parsed, key)
    return kind.encode() + b":" + body


async def test_every_reader_opens_including_the_initial_entry() -> None:
    w = await make_world()
    data = await send(w)
    assert peek_version(data) == 2
    for reader in (w.b1, w.b2, w.a2):
        assert await open_as(w, reader, data) == b"text:hello v2"
    parsed = parse_envelope(data, my_device_id=w.b2.id, expected_recipient_box=w.b2.box)
    h = parsed.header
    assert (h.version, h.sender_box, h.sender_device, h.recipient_box) == (
        2,
        w.a1.box,
        w.a1.id,
        w.b1.box,
    )
    assert h.recipient_devices == tuple(sorted((w.b1.id, w.b2.id, w.a2.id), key=lambda u: u.bytes))
    assert parsed.entry.initial is None
    # b1 now has a session: once it answers, a1's next entry for it is a plain one.
    await w.sessions[w.b1.id].decrypt(await w.peers[w.b1.id].encrypt(b"ack", b""), b"")
    second = await send(w, body=b"again")
    assert len(second) == envelope_v2_size(3, 0, "text", 5)
    for reader in (w.b1, w.b2, w.a2):
        assert await open_as(w, reader, second) == b"text:again"


async def test_size_formula_is_exact_and_the_64_kib_budget() -> None:
    for body in (b"", b"x" * 59, b"x" * 60, b"y" * 1000):
        data = await send(await make_world(), body=body)
        assert len(data) == envelope_v2_size(2, 1, "text", len(body))
    assert (SESSION_ENTRY_BYTES, INITIAL_ENTRY_BYTES) == (139, 1272)
    assert envelope_v2_size(MAX_RECIPIENTS, 0, "text", 0) == 75 + 139 * 256 + 64 + 16 + 64
    # The server's default max_message_bytes (65,536) fits 51 initial entries, not 52.
    assert envelope_v2_size(0, 51, "text", 0) <= 65_536 < envelope_v2_size(0, 52, "text", 0)


async def test_peek_version_tells_v1_from_v2_and_refuses_the_rest() -> None:
    w = await make_world()
    v1 = seal_envelope(
        w.a1.sender(),
        w.b1.box,
        [RecipientDevice(w.b1.id, w.b1.keys.encryption_public_bytes)],
        uuid.uuid4(),
        "text",
        b"old",
    )
    assert peek_version(v1) == 1
    for bad in (b"", b"\x00", b"\x03" + v1[1:], bytearray(v1)):
        with pytest.raises(InvalidEnvelope):
            peek_version(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidEnvelope):  # a v1 envelope is not a v2 one
        parse_envelope(v1, my_device_id=w.b1.id, expected_recipient_box=w.b1.box)


async def test_box_and_reader_checks() -> None:
    w = await make_world()
    data = await send(w)
    with pytest.raises(InvalidEnvelope):
        parse_envelope(data, my_device_id=w.b3.id, expected_recipient_box=w.b3.box)
    with pytest.raises(InvalidEnvelope):
        parse_envelope(data, my_device_id=w.b2.id, expected_recipient_box=uuid.uuid4())
    # a2 reads the sync copy from its own box A (the sender's box).
    assert await open_as(w, w.a2, data, box=w.a1.box) == b"text:hello v2"
    parsed = parse_envelope(data, my_device_id=w.b2.id, expected_recipient_box=w.b2.box)
    with pytest.raises(InvalidEnvelope):
        verify_envelope(parsed, w.b2.keys.signing_public_bytes)
    with pytest.raises(InvalidEnvelope):
        verify_envelope(parsed, b"short")


async def test_every_flipped_byte_truncation_and_extension_is_refused() -> None:
    w = await make_world()
    data = await send(w)

    def check(candidate: bytes) -> None:
        parsed = parse_envelope(candidate, my_device_id=w.b1.id, expected_recipient_box=w.b1.box)
        verify_envelope(parsed, w.a1.keys.signing_public_bytes)

    check(data)
    candidates = []
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            b = bytearray(data)
            b[i] ^= mask
            candidates.append(bytes(b))
    candidates += [data[:n] for n in range(len(data))] + [data + b"\x00", data + data[-64:]]
    for candidate in candidates:
        with pytest.raises(InvalidEnvelope):
            check(candidate)


def _resign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    signed = data[:-64]
    return signed + key.sign(SIGN_LABEL + signed)


async def test_forged_but_signed_envelopes_are_still_refused() -> None:
    """Whoever holds the sender's signing key (the sender itself) still cannot move a
    ratchet message under another header, or get a bad structure or body opened."""
    w = await make_world()
    data = await send(w)
    key = w.a1.keys.signing_private
    parsed = parse_envelope(data, my_device_id=w.b2.id, expected_recipient_box=w.b2.box)

    # The fixed header is in every ratchet message's AD: a new message id, re-signed.
    moved = bytearray(data)
    moved[49] ^= 1
    with pytest.raises(InvalidEnvelope):
        await open_as(w, w.b2, _resign(bytes(moved), key))
    # An unknown entry flag, re-signed: not a v2 envelope.
    flags = bytearray(data)
    flags[75 + 16] |= 0x02
    with pytest.raises(InvalidEnvelope):
        parse_envelope(
            _resign(bytes(flags), key), my_device_id=w.b2.id, expected_recipient_box=w.b2.box
        )
    # The untouched envelope opens for a copy of b2's session, so the refusals
    # above were not a broken session.
    real = w.peers[w.b2.id]
    w.peers[w.b2.id] = clone(real)
    assert await open_as(w, w.b2, data) == b"text:hello v2"
    w.peers[w.b2.id] = real
    # A body byte, re-signed: K decrypts (its ratchet message is intact) but
    # the body AEAD, whose AAD is the header and table, refuses.
    body = bytearray(data)
    body[parsed.body_start + 3] ^= 1
    with pytest.raises(InvalidEnvelope):
        await open_as(w, w.b2, _resign(bytes(body), key))


async def test_table_must_be_strictly_ascending() -> None:
    w = await make_world()
    draft = draft_envelope(w.a1.sender(), w.b2.box, [w.b2.id, w.a2.id], uuid.uuid4())
    m = {
        d: await w.sessions[d].encrypt(draft.content_key, draft.associated_data)
        for d in (w.b2.id, w.a2.id)
    }
    data = seal_draft(draft, {d: DeviceEntry(None, m[d]) for d in m}, "text", b"x")
    first, second = draft.header.recipient_devices
    e1 = first.bytes + b"\x00" + len(m[first]).to_bytes(2, "big") + m[first]
    e2 = second.bytes + b"\x00" + len(m[second]).to_bytes(2, "big") + m[second]
    assert data[75 : 75 + len(e1) + len(e2)] == e1 + e2
    key = w.a1.keys.signing_private
    for table in (e2 + e1, e1 + e1):
        forged = _resign(data[:75] + table + data[75 + len(e1) + len(e2) :], key)
        with pytest.raises(InvalidEnvelope):
            parse_envelope(forged, my_device_id=first, expected_recipient_box=w.b2.box)


async def test_open_body_refuses_a_wrong_content_key() -> None:
    w = await make_world()
    parsed: ParsedEnvelope = parse_envelope(
        await send(w), my_device_id=w.b2.id, expected_recipient_box=w.b2.box
    )
    for key in (os.urandom(32), b"short", bytes(32)):
        with pytest.raises(InvalidEnvelope):
            open_body(parsed, key)


async def test_sealing_refuses_misuse() -> None:
    w = await make_world()
    s = w.a1.sender()
    for readers in ([], [w.b1.id, w.b1.id], [w.a1.id], [uuid.uuid4() for _ in range(257)]):
        with pytest.raises(ValueError):
            draft_envelope(s, w.b1.box, readers, uuid.uuid4())
    with pytest.raises(ValueError):
        draft_envelope(s, w.b1.box, [w.b1.id], uuid.uuid4(), now_ms=-1)
    draft = draft_envelope(s, w.b2.box, [w.b2.id], uuid.uuid4())
    good = DeviceEntry(None, await w.sessions[w.b2.id].encrypt(draft.content_key, b""))
    for entries, kind in (
        ({}, "text"),
        ({w.b2.id: good, w.b1.id: good}, "text"),
        ({w.b2.id: DeviceEntry(None, b"short")}, "text"),
        ({w.b2.id: good}, "Text"),
    ):
        with pytest.raises(ValueError):
            seal_draft(draft, entries, kind, b"")


def test_draft_draws_the_content_key_from_rng() -> None:
    a, b = Party.make(), Party.make()
    k = os.urandom(32)
    draft = draft_envelope(a.sender(), b.box, [b.id], uuid.uuid4(), now_ms=5, rng=ScriptedRng(k))
    assert draft.content_key == k and draft.header.sent_at_ms == 5
    assert draft.associated_data == b"rossby/v2/envelope-key\x00" + draft.fixed
    assert len(draft.fixed) == 75 and draft.fixed[0] == 2


def test_respond_refuses_a_mismatched_own_identity_and_encode_bad_fields() -> None:
    alice, bob = Party.make(), Party.make()
    header, _, _ = initiate(alice.keys.encryption_private, alice.identity, bob.bundle())
    with pytest.raises(ValueError):
        respond(
            alice.keys.encryption_private,
            bob.identity,
            alice.identity,
            header,
            signed_prekey_private=bob.signed.private,
            one_time_prekey_private=bob.one_time[min(bob.one_time)].private,
            kem_private=bob.kem[min(bob.kem)].private,
        )
    for bad in (
        dataclasses.replace(header, ephemeral_public=bytes(31)),
        dataclasses.replace(header, signed_prekey_id=MAX_KEY_ID + 1),
        dataclasses.replace(header, one_time_prekey_id=-1),
    ):
        with pytest.raises(ValueError):
            bad.encode()


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=2000),
    st.integers(min_value=1, max_value=3),
)
def test_arbitrary_bytes_are_only_ever_invalid_envelope(tail: bytes, count: int) -> None:
    """Past the version byte and a plausible count, parsing still fails one way only;
    an initial header decodes only from its one canonical encoding."""
    me = uuid.uuid4()
    for data in (tail, b"\x02" + tail, b"\x02" + tail[:72] + count.to_bytes(2, "big") + tail[72:]):
        with pytest.raises(InvalidEnvelope):
            parse_envelope(data, my_device_id=me, expected_recipient_box=uuid.uuid4())
    # An initial header either fails the one way or is canonical: it re-encodes to itself.
    raw = tail[:INITIAL_HEADER_BYTES].ljust(INITIAL_HEADER_BYTES, b"\x00")
    try:
        decoded = InitialHeader.decode(raw)
    except InvalidEnvelope:
        assert raw[0] & ~0x03 or (not raw[0] & 0x01 and raw[37:41] != bytes(4))
    else:
        assert decoded.encode() == raw
