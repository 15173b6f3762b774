"""The Hawk keyring's stored form (rossby.server.hawkkeys)."""

from __future__ import annotations

import uuid

import pytest

from rossby.server.hawkkeys import (
    WRAPPED_BYTES,
    HawkKeyring,
    HawkKeyUnavailable,
    is_legacy,
    stored_key_id,
)

BOX, DEVICE = uuid.uuid4(), uuid.uuid4()


def test_wrap_opens_only_for_its_box_and_device_and_under_its_key() -> None:
    ring = HawkKeyring.from_text(f"2:{'22' * 32},1:{'11' * 32}")
    key = bytes(range(32))
    stored = ring.wrap(BOX, DEVICE, key)
    assert len(stored) == WRAPPED_BYTES and stored_key_id(stored) == 2 and key not in stored
    assert ring.unwrap(BOX, DEVICE, stored) == key
    assert ring.wrap(BOX, DEVICE, key) != stored  # a fresh nonce each time
    for box, device in ((uuid.uuid4(), DEVICE), (BOX, uuid.uuid4())):
        with pytest.raises(HawkKeyUnavailable):
            ring.unwrap(box, device, stored)
    flipped = bytearray(stored)
    flipped[-1] ^= 1
    with pytest.raises(HawkKeyUnavailable):
        ring.unwrap(BOX, DEVICE, bytes(flipped))
    relabelled = stored[:1] + (1).to_bytes(4, "big") + stored[5:]  # claim key 1
    with pytest.raises(HawkKeyUnavailable):
        ring.unwrap(BOX, DEVICE, relabelled)
    with pytest.raises(HawkKeyUnavailable) as missing:
        HawkKeyring.from_text(f"3:{'33' * 32}").unwrap(BOX, DEVICE, stored)
    assert missing.value.key_id == 2


def test_the_first_key_wraps_and_every_key_opens() -> None:
    old = HawkKeyring.from_text(f"1:{'11' * 32}")
    new = HawkKeyring.from_text(f"2:{'22' * 32} 1:{'11' * 32}")
    stored = old.mint(BOX, DEVICE)
    assert not new.is_current(stored) and old.is_current(stored)
    assert new.unwrap(BOX, DEVICE, stored) == old.unwrap(BOX, DEVICE, stored)
    assert stored_key_id(new.mint(BOX, DEVICE)) == 2


def test_a_clear_legacy_key_is_returned_as_is() -> None:
    ring = HawkKeyring.from_text(f"1:{'11' * 32}")
    clear = bytes(32)
    assert is_legacy(clear) and stored_key_id(clear) is None
    assert ring.unwrap(BOX, DEVICE, clear) == clear
    with pytest.raises(HawkKeyUnavailable):
        ring.unwrap(BOX, DEVICE, b"\x00" * 40)
