"""The AccountStore contract on each backend: the key log stays one linear
chain under racing appends from several store instances (processes), and
the link offer's attempt counter and state machine are compare-and-sets."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import replace

from rossby.crypto.keylog import ZERO_HASH, ChangeKind
from rossby.server.keylog import KeyLog
from rossby.store import Store
from rossby.store.accounts import (
    ContactChallenge,
    LinkOffer,
    LinkState,
    SenderRule,
)
from tests.store.conftest import Clock, new_id


async def test_racing_appends_make_one_linear_chain(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(3)]
    box = new_id()
    writers = 24

    async def one(i: int) -> None:
        log = KeyLog(stores[i % len(stores)], clock)
        await log.append(
            box,
            ChangeKind.LINK if i else ChangeKind.REGISTER,
            uuid.UUID(int=i + 1),
            uuid.UUID(int=1),
            os.urandom(32),
            os.urandom(32),
            os.urandom(64),
        )

    await asyncio.gather(*(one(i) for i in range(writers)))
    entries = await stores[0].key_log(box)
    assert [e.seq for e in entries] == list(range(1, writers + 1))
    prev = ZERO_HASH
    for e in entries:
        assert e.prev_hash == prev
        prev = e.hash
    assert len({e.device_id for e in entries}) == writers  # nobody lost, nobody twice
    head = await stores[1].key_log_head(box)
    assert head is not None and head.seq == writers and head.hash == prev
    assert [e.seq for e in await stores[2].key_log(box, after=20, limit=2)] == [21, 22]
    # An append at a taken seq never overwrites.
    assert not await stores[2].append_key_log(replace(entries[3], hash=os.urandom(32)))
    assert (await stores[0].key_log(box, after=3, limit=1))[0].hash == entries[3].hash


async def test_link_offer_counter_and_state_are_compare_and_set(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(3)]
    offer = LinkOffer(
        offer_id=new_id(),
        box_id=new_id(),
        creator_device_id=new_id(),
        verifier=os.urandom(32),
        created_at=clock.now,
        expires_at=clock.now + 600,
        keep_until=clock.now + 4200,
    )
    assert await stores[0].create_link_offer(offer) == offer
    other = replace(offer, verifier=os.urandom(32))
    assert (await stores[1].create_link_offer(other)).verifier == offer.verifier  # taken

    counts = [await stores[i % 3].reserve_link_attempt(offer.offer_id, limit=15) for i in range(16)]
    assert counts == [*range(1, 16), 0]

    joined = [
        replace(offer, state=LinkState.JOINED, device_id=new_id(), join_mac=os.urandom(32))
        for _ in range(6)
    ]
    won = await asyncio.gather(
        *(stores[i % 3].transition_link_offer(j, LinkState.OPEN) for i, j in enumerate(joined))
    )
    assert sum(won) == 1
    stored = await stores[2].get_link_offer(offer.offer_id)
    assert stored is not None and stored.state is LinkState.JOINED
    assert stored.device_id == joined[won.index(True)].device_id
    assert stored.attempts == 15  # a transition never touches the counter

    clock.advance(4201)
    assert await stores[0].get_link_offer(offer.offer_id) is None


async def test_challenges_contacts_and_rules(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    store = make_store()
    box, other = new_id(), new_id()
    h = os.urandom(32)
    challenge = ContactChallenge(
        box, h, os.urandom(32), clock.now, clock.now + 600, clock.now + 4200
    )
    await store.put_contact_challenge(challenge)
    counts = [
        await store.reserve_contact_attempt(box, h, sent_at=challenge.sent_at, limit=5)
        for _ in range(6)
    ]
    assert counts == [1, 2, 3, 4, 5, 0]
    resent = replace(challenge, code_hash=os.urandom(32), sent_at=clock.now + 30)
    await store.put_contact_challenge(resent)
    assert await store.get_contact_challenge(box, h) == resent  # a resend resets the counter
    await store.delete_contact_challenge(box, h)
    assert await store.get_contact_challenge(box, h) is None

    await store.add_box_contact(box, h)
    await store.add_box_contact(box, h)
    assert await store.box_contacts(box) == [h]
    await store.remove_box_contact(box, h)
    assert await store.box_contacts(box) == []

    assert not await store.has_sender_rules(box)
    await store.set_sender_rule(box, other, SenderRule.BLOCKED)
    assert await store.has_sender_rules(box)
    assert await store.get_sender_rule(box, other) is SenderRule.BLOCKED
    assert await store.list_sender_rules(box, SenderRule.BLOCKED) == [other]
    await store.set_sender_rule(box, other, SenderRule.ACCEPTED)
    assert await store.list_sender_rules(box, SenderRule.BLOCKED) == []
    assert await store.list_sender_rules(box, SenderRule.ACCEPTED) == [other]
    await store.set_sender_rule(box, other, None)
    assert await store.get_sender_rule(box, other) is None
    assert not await store.has_sender_rules(box)
