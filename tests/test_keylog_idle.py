"""IDLE_UNLINK entries as a client replays them (``rossby.crypto.keylog``,
docs/envelope.md "Key log"): accepted without an actor or a signature, but
only as the removal of a device active with exactly those keys that is not
the box's last; anything else such an entry tries is refused."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from rossby.client.errors import KeyLogError
from rossby.client.wire import log_entry
from rossby.crypto import DeviceKeyPair
from rossby.crypto.keylog import NO_ACTOR, ChainState, ChangeKind, InvalidKeyLog, LogEntry, replay
from rossby.server.keylog import to_pb
from rossby.store.accounts import KeyLogEntry
from tests.test_keylog_link import BOX, devices, entry_on


def unlink_on(
    state: ChainState,
    device: uuid.UUID,
    keys: DeviceKeyPair,
    *,
    actor: uuid.UUID = NO_ACTOR,
    signature: bytes = b"",
) -> LogEntry:
    pub = keys.public()
    e = LogEntry(
        BOX, state.seq + 1, state.head, 5, ChangeKind.IDLE_UNLINK, device, actor, *pub, signature
    )
    return replace(e, hash=e.computed_hash())


def linked() -> tuple[ChainState, tuple[tuple[uuid.UUID, DeviceKeyPair], ...]]:
    ds = devices()
    (a, ka), (b, kb), _ = ds
    one = replay(ChainState(BOX), [entry_on(ChainState(BOX), ChangeKind.REGISTER, a, ka, ka, a)])
    return replay(one, [entry_on(one, ChangeKind.LINK, b, kb, ka, a)]), ds


def test_an_idle_unlink_removes_a_listed_device_for_good() -> None:
    two, ((a, ka), (b, kb), _) = linked()
    gone = replay(two, [unlink_on(two, b, kb)])
    assert set(gone.devices) == {a} and gone.retired == {b}
    with pytest.raises(InvalidKeyLog, match="already existed"):  # it never comes back
        replay(gone, [entry_on(gone, ChangeKind.LINK, b, kb, ka, a)])


def test_an_idle_unlink_that_tries_anything_else_is_refused() -> None:
    two, ((a, ka), (b, kb), (c, kc)) = linked()
    one = replay(ChainState(BOX), [entry_on(ChainState(BOX), ChangeKind.REGISTER, a, ka, ka, a)])
    new = DeviceKeyPair.generate()
    cases = [
        (two, unlink_on(two, c, kc), "not active"),  # would add (or name) an unknown device
        (two, unlink_on(two, b, new), "not active with those keys"),  # would change keys
        (one, unlink_on(one, a, ka), "last device"),  # would empty the box
    ]
    for state, entry, why in cases:
        with pytest.raises(InvalidKeyLog, match=why):
            replay(state, [entry])
    # With an actor or a signature it is not an idle unlink at all.
    sig = bytes(64)
    for bad in (
        replace(unlink_on(two, b, kb), actor_device_id=a),
        replace(unlink_on(two, b, kb), signature=sig),
    ):
        with pytest.raises(InvalidKeyLog, match="malformed"):
            replay(two, [bad])
    # A removal entry of another kind still needs its signature.
    forged = replace(
        unlink_on(two, b, kb), kind=ChangeKind.REVOKE, signature=sig, actor_device_id=a
    )
    with pytest.raises(InvalidKeyLog):
        replay(two, [replace(forged, hash=forged.computed_hash())])


def test_the_server_encoding_round_trips_through_the_client() -> None:
    """The server writes "no actor" as an empty id; the client reads it back
    to the same entry, hash included."""
    two, (_, (b, kb), _) = linked()
    e = unlink_on(two, b, kb)
    stored = KeyLogEntry(
        BOX, e.seq, e.prev_hash, e.hash, e.timestamp_ms, "idle_unlink", b, NO_ACTOR,
        e.encryption_key, e.signing_key, b"",
    )  # fmt: skip
    wire = to_pb(stored)
    assert wire.actor_device_id == "" and wire.signature == b""
    back = log_entry(BOX, wire)
    assert back == e
    assert replay(two, [back]).retired == {b}
    wire.actor_device_id = "not-a-uuid"
    with pytest.raises(KeyLogError):
        log_entry(BOX, wire)
