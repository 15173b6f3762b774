"""The seed's whole workflow through a real channel, on both backends:
register -> code -> authorize -> request key -> send -> fetch -> ack -> compaction."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api, MakeApi
from tests.api.device import Device, email


async def test_register_authorize_request_key_send_fetch_ack(api: Api) -> None:
    alice_contact, bob_contact = email("alice"), email("bob")
    alice = await Device(api, alice_contact).join()
    bob = await Device(api, bob_contact).join()
    assert alice.box_id != bob.box_id

    found = await alice.request_key(bob_contact)
    assert uuid.UUID(found.box_id) == bob.box_id
    assert [d.device_id for d in found.devices] == [str(bob.device_id)]
    assert found.devices[0].keys.encryption_key == bob.keys.public().encryption_public
    assert found.devices[0].keys.key_signature == bob.keys.key_signature(bob.device_id)

    mid = uuid.uuid4()
    sent = await alice.send((found.box_id, b"ciphertext-1", mid))
    assert [r.outcome for r in sent.results] == [pb.SEND_OUTCOME_QUEUED]
    retry = await alice.send((found.box_id, b"ciphertext-1", mid))
    assert retry.results[0].outcome == pb.SEND_OUTCOME_DUPLICATE
    assert retry.results[0].position == sent.results[0].position

    page = await bob.fetch()
    assert [m.message_id for m in page.messages] == [str(mid)]
    got = page.messages[0]
    assert (got.ciphertext, got.sender_box_id, got.sender_device_id) == (
        b"ciphertext-1",
        str(alice.box_id),
        str(alice.device_id),
    )
    assert abs(got.received_at_ms / 1000 - api.clock()) < 60

    acked = await bob.ack(got.position)
    assert acked.cursor == got.position
    # Bob is the box's only device, so the message is compacted away.
    pending = await api.store.pending_count(bob.box_id)
    ordered = api.store.capabilities.ordered_visibility.supported
    if ordered:  # else the settle window's rows stay until it has passed
        assert pending == 0
    again = await bob.fetch()
    assert all(m.message_id != str(mid) or not ordered for m in again.messages)


async def test_fetch_pages_in_order_and_ack_never_goes_back(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    ids = [uuid.uuid4() for _ in range(7)]
    for i, mid in enumerate(ids):
        await alice.send((bob.box_id, f"m{i}".encode(), mid))
    first = await bob.fetch(limit=3)
    assert first.more and len(first.messages) == 3
    second = await bob.fetch(after=first.next_after, limit=3)
    third = await bob.fetch(after=second.next_after, limit=3)
    got = [m.message_id for m in (*first.messages, *second.messages, *third.messages)]
    assert got == [str(m) for m in ids]
    assert not third.more
    positions = [m.position for m in (*first.messages, *second.messages, *third.messages)]
    assert positions == sorted(positions)
    high = await bob.ack(positions[5])
    low = await bob.ack(positions[1])
    assert low.cursor == high.cursor == positions[5]


async def test_a_fetch_page_carries_the_stores_ack_limit(api: Api) -> None:
    """FetchResponse.ack_limit is the store's Page.ack_limit: 0 on a backend
    with ordered visibility, else a position at or above everything queued
    before the fetch (docs/store.md, "Long sweeps")."""
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    sent = await alice.send((bob.box_id, b"m", uuid.uuid4()))
    page = await bob.fetch()
    if api.store.capabilities.ordered_visibility.supported:
        assert page.ack_limit == 0
    else:
        assert page.ack_limit >= sent.results[0].position == page.messages[0].position


async def test_a_page_of_large_messages_fits_a_default_client(api: Api) -> None:
    """100 messages of 64 KiB would be a 6.4 MiB reply, over the 4 MiB a gRPC
    client accepts by default: the server cuts the page by bytes instead."""
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    ids = [uuid.uuid4() for _ in range(70)]
    body = bytes(65_536)
    for start in range(0, len(ids), 10):
        sent = await alice.send(*((bob.box_id, body, mid) for mid in ids[start : start + 10]))
        assert {r.outcome for r in sent.results} == {pb.SEND_OUTCOME_QUEUED}
    got: list[pb.QueuedMessage] = []
    after, pages = 0, 0
    while True:
        page = await bob.fetch(after=after)  # default limit (100), default channel limits
        assert page.messages, "an empty page with more=True"
        assert page.ByteSize() < 4 * 1024 * 1024
        got.extend(page.messages)
        pages += 1
        after = page.next_after
        if not page.more:
            break
    assert pages >= 2
    # One Send's messages are queued concurrently, so compare as a set; the
    # pages must still follow each other without a gap or a repeat.
    assert sorted(m.message_id for m in got) == sorted(str(m) for m in ids)
    positions = [m.position for m in got]
    assert positions == sorted(set(positions))


async def test_multi_recipient_send_reports_each_outcome(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    carol = await Device(api, email("carol")).join()
    ghost = uuid.uuid4()
    reply = await alice.send(
        (bob.box_id, b"to bob", None),
        (ghost, b"to nobody", None),
        (carol.box_id, b"to carol", None),
    )
    outcomes = [(r.recipient_box_id, r.outcome, r.reason) for r in reply.results]
    assert outcomes == [
        (str(bob.box_id), pb.SEND_OUTCOME_QUEUED, ""),
        (str(ghost), pb.SEND_OUTCOME_REJECTED, "NOT_FOUND"),
        (str(carol.box_id), pb.SEND_OUTCOME_QUEUED, ""),
    ]
    assert reply.results[1].code == 5  # google.rpc.Code.NOT_FOUND
    assert [m.ciphertext for m in await bob.drain()] == [b"to bob"]
    assert [m.ciphertext for m in await carol.drain()] == [b"to carol"]


async def test_authorize_retry_answers_the_same_credentials(api: Api) -> None:
    dev = Device(api, email("dora"))
    await dev.register()
    codes = dev.codes()
    first = await dev.authorize(codes)
    key = dev.hawk_key
    second = await dev.authorize(codes)
    assert second.box_id == first.box_id and dev.hawk_key == key
    assert (await dev.fetch()).messages == []


@pytest.mark.parametrize("n_contacts", [2])
async def test_register_with_several_contacts_needs_each_code(api: Api, n_contacts: int) -> None:
    contacts = [email(f"multi{i}") for i in range(n_contacts)]
    dev = Device(api, *contacts)
    await dev.register()
    codes = dev.codes()
    assert len(set(codes)) >= 1 and len(codes) == n_contacts
    await dev.authorize(codes)
    other = await Device(api, email("other")).join()
    for c in contacts:
        found = await other.request_key(c)
        assert uuid.UUID(found.box_id) == dev.box_id


async def test_housekeeping_purges_expired_rows(make_api: MakeApi, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("Cassandra expires rows natively (TTL); nothing to purge")
    import sqlite3

    api = await make_api(housekeeping_interval=0.2, message_ttl=3600)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    await alice.send((bob.box_id, b"old news", None))
    path = api.server.settings.store.removeprefix("sqlite:///")

    def rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])

    assert rows() == 1
    api.clock.advance(3601)
    for _ in range(50):
        if rows() == 0:
            break
        await asyncio.sleep(0.1)
    assert rows() == 0
    assert (await bob.fetch()).messages == []
