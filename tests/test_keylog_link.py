"""rossby.crypto.keylog (the key-log chain) and rossby.crypto.link (the
linking passphrase and what is derived from it), without a server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from rossby.crypto import DeviceKeyPair
from rossby.crypto.keylog import (
    ZERO_HASH,
    ChainState,
    ChangeKind,
    InvalidKeyLog,
    LogEntry,
    replay,
    sign_change,
    verify_change,
)
from rossby.crypto.link import (
    LinkCode,
    derive_link_keys,
    new_passphrase,
    normalize_passphrase,
    parse_link_code,
    sign_complete,
    verify_complete,
)

BOX = uuid.UUID("0b3e6c1e-4a55-4c1b-9f49-3f2f9f3f2a10")


class Chain:
    """Builds valid entries the way the server does."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def add(
        self,
        kind: ChangeKind,
        device: uuid.UUID,
        keys: DeviceKeyPair,
        signer: DeviceKeyPair,
        actor: uuid.UUID,
    ) -> LogEntry:
        pub = keys.public()
        if kind is ChangeKind.REGISTER:
            signature = keys.key_signature(device)
        else:
            signature = sign_change(
                signer.signing_private,
                kind,
                BOX,
                device,
                pub.encryption_public,
                pub.signing_public,
            )
        prev = self.entries[-1].computed_hash() if self.entries else ZERO_HASH
        e = LogEntry(
            BOX,
            len(self.entries) + 1,
            prev,
            1_800_000_000_000 + len(self.entries),
            kind,
            device,
            actor,
            pub.encryption_public,
            pub.signing_public,
            signature,
        )
        e = replace(e, hash=e.computed_hash())
        self.entries.append(e)
        return e


def rehash(e: LogEntry) -> LogEntry:
    return replace(e, hash=e.computed_hash())


def devices() -> tuple[tuple[uuid.UUID, DeviceKeyPair], ...]:
    return tuple((uuid.uuid4(), DeviceKeyPair.generate()) for _ in range(3))


def test_a_valid_chain_replays_to_the_key_set() -> None:
    (a, ka), (b, kb), _ = devices()
    chain = Chain()
    chain.add(ChangeKind.REGISTER, a, ka, ka, a)
    chain.add(ChangeKind.LINK, b, kb, ka, a)
    kb2 = DeviceKeyPair.generate()
    chain.add(ChangeKind.ROTATE, b, kb2, kb, b)
    chain.add(ChangeKind.REVOKE, a, ka, kb2, b)
    state = replay(ChainState(BOX), chain.entries)
    assert state.seq == 4 and state.head == chain.entries[-1].hash
    assert state.devices == {b: tuple(kb2.public())}
    assert state.retired == {a}
    # Replaying in two steps gives the same result.
    half = replay(ChainState(BOX), chain.entries[:2])
    assert replay(half, chain.entries[2:]) == state


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda es: [es[0], rehash(replace(es[1], signature=bytes(64)))], "forged"),
        (lambda es: [es[0], replace(es[1], prev_hash=bytes(32))], "fork"),
        (lambda es: [es[0], replace(es[1], timestamp_ms=1)], "does not match its hash"),
        (lambda es: [es[1]], "does not follow"),
        (lambda es: [es[0], es[0]], "does not follow"),
    ],
)
def test_a_broken_chain_is_refused(
    tamper: Callable[[list[LogEntry]], list[LogEntry]], why: str
) -> None:
    (a, ka), (b, kb), _ = devices()
    chain = Chain()
    chain.add(ChangeKind.REGISTER, a, ka, ka, a)
    chain.add(ChangeKind.LINK, b, kb, ka, a)
    with pytest.raises(InvalidKeyLog, match=why):
        replay(ChainState(BOX), tamper(chain.entries))


def entry_on(
    state: ChainState,
    kind: ChangeKind,
    device: uuid.UUID,
    keys: DeviceKeyPair,
    signer: DeviceKeyPair,
    actor: uuid.UUID,
) -> LogEntry:
    pub = keys.public()
    if kind is ChangeKind.REGISTER:
        signature = keys.key_signature(device)
    else:
        signature = sign_change(signer.signing_private, kind, BOX, device, *pub)
    e = LogEntry(BOX, state.seq + 1, state.head, 1, kind, device, actor, *pub, signature)
    return replace(e, hash=e.computed_hash())


def test_the_rules_of_each_kind() -> None:
    (a, ka), (b, kb), (c, kc) = devices()
    one = replay(ChainState(BOX), [entry_on(ChainState(BOX), ChangeKind.REGISTER, a, ka, ka, a)])
    two = replay(one, [entry_on(one, ChangeKind.LINK, b, kb, ka, a)])
    new = DeviceKeyPair.generate()
    cases = [
        (one, (ChangeKind.REGISTER, b, kb, kb, b), "registration can only start"),
        (one, (ChangeKind.LINK, c, kc, kc, c), "not active"),  # an outsider's approval
        (one, (ChangeKind.LINK, b, kb, kc, a), "forged"),  # signed by the wrong key
        (two, (ChangeKind.ROTATE, a, new, kb, b), "only a device can rotate its own"),
        (one, (ChangeKind.REVOKE, a, ka, ka, a), "last device"),
        (two, (ChangeKind.REVOKE, b, new, ka, a), "not active with those keys"),
        (one, (ChangeKind.LINK, a, ka, ka, a), "already existed"),
    ]
    for state, args, why in cases:
        with pytest.raises(InvalidKeyLog, match=why):
            replay(state, [entry_on(state, *args)])
    gone = replay(two, [entry_on(two, ChangeKind.REVOKE, b, kb, ka, a)])
    with pytest.raises(InvalidKeyLog, match="already existed"):  # revoked ids never return
        replay(gone, [entry_on(gone, ChangeKind.LINK, b, kb, ka, a)])


def test_change_signatures_bind_every_field() -> None:
    k = DeviceKeyPair.generate()
    d = uuid.uuid4()
    enc, sig = k.public()
    s = sign_change(k.signing_private, ChangeKind.LINK, BOX, d, enc, sig)
    assert verify_change(sig, ChangeKind.LINK, BOX, d, enc, sig, s)
    assert not verify_change(sig, ChangeKind.REVOKE, BOX, d, enc, sig, s)
    assert not verify_change(sig, ChangeKind.LINK, uuid.uuid4(), d, enc, sig, s)
    assert not verify_change(sig, ChangeKind.LINK, BOX, uuid.uuid4(), enc, sig, s)
    assert not verify_change(sig, ChangeKind.LINK, BOX, d, enc, sig, s[:63])


def test_passphrases_normalize_and_derive_deterministically() -> None:
    p = new_passphrase()
    assert len(p) == 23 and p.count("-") == 3
    assert normalize_passphrase(p.lower().replace("-", " ")) == p.replace("-", "")
    assert normalize_passphrase("oooo0-iiiii-lllll-11111") == "0" * 5 + "1" * 15
    with pytest.raises(ValueError):
        normalize_passphrase("UUUUU-UUUUU-UUUUU-UUUUU")  # U is not in Crockford base32
    with pytest.raises(ValueError):
        normalize_passphrase("ABCDE")
    offer = uuid.uuid4()
    k1, k2 = derive_link_keys(p, offer), derive_link_keys(p.lower(), offer)
    assert (k1.verifier, k1.mac_key) == (k2.verifier, k2.mac_key)
    assert k1.verifier != k1.mac_key
    assert derive_link_keys(p, uuid.uuid4()).verifier != k1.verifier
    assert len({new_passphrase() for _ in range(50)}) == 50


def test_link_codes_round_trip() -> None:
    code = LinkCode("[::1]:1205", uuid.uuid4(), new_passphrase())
    assert parse_link_code(code.uri) == code
    assert parse_link_code(code.text, server="[::1]:1205") == code
    with pytest.raises(ValueError):
        parse_link_code(code.text)  # a typed code needs the server
    with pytest.raises(ValueError):
        parse_link_code("rossby://other?v=1")
    k = DeviceKeyPair.generate()
    s = sign_complete(k.signing_private, code.offer_id, uuid.UUID(int=1))
    assert verify_complete(k.signing_public_bytes, code.offer_id, uuid.UUID(int=1), s)
    assert not verify_complete(k.signing_public_bytes, code.offer_id, uuid.UUID(int=2), s)
