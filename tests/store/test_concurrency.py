"""Concurrency at the cursor edge, on every backend.

Several store instances stand in for several server processes sharing one
database. Readers behave like real clients: each sweep reads from the
stored cursor (which re-reads the settle window below it), pages forward
with ``after``, drops repeats by message id and acks the last position it
saw, at most the first page's ``ack_limit``. Whatever the interleaving,
every queued message must reach every device, at the position its enqueue
answered.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rossby.store import Box, Device, DeviceKeys, DeviceState, NewMessage, Store
from tests.store.conftest import new_id
from tests.support.clocks import SkewedClock, WallClock

MakeStore = Callable[..., Store]

DRAIN_SECONDS = 30.0  # well past any settle window: then report what is missing


def make_device(box_id: uuid.UUID, name: str) -> Device:
    return Device(
        box_id=box_id,
        device_id=new_id(),
        name=name,
        keys=DeviceKeys(os.urandom(32), os.urandom(32), os.urandom(64)),
        hawk_key=os.urandom(32),
        state=DeviceState.ACTIVE,
        created_at=time.time(),
    )


async def new_box(store: Store, devices: int = 1) -> tuple[Box, list[Device]]:
    box = Box(box_id=new_id(), home_region="dc1", created_at=time.time())
    made = [make_device(box.box_id, f"device{i}") for i in range(devices)]
    await store.create_box(box, made[0])
    for device in made[1:]:
        await store.add_device(device)
    return box, made


def make_message() -> NewMessage:
    return NewMessage(
        message_id=new_id(), sender_box=new_id(), sender_device=new_id(), ciphertext=os.urandom(40)
    )


@dataclass
class Sent:
    positions: dict[uuid.UUID, int] = field(default_factory=dict)


async def sender(store: Store, box: Box, count: int, sent: Sent, pause: float = 0.0) -> None:
    for _ in range(count):
        message = make_message()
        result = await store.enqueue(box.box_id, message)
        assert not result.duplicate
        sent.positions[message.message_id] = result.position
        if pause:
            await asyncio.sleep(pause)


@dataclass
class Reader:
    """One device's client."""

    store: Store
    box: Box
    device: Device
    got: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    cursor: int = 0
    rescued: int = 0  # first seen at or below the cursor: saved by the settle window

    async def sweep(self, *, ack: bool = True, limit: int = 50) -> int:
        """Read everything visible from the cursor on; answer how many were new.
        The ack goes no further than the first page's ``ack_limit``."""
        new, after, last = 0, 0, 0
        ack_limit: int | None = None
        while True:
            page = await self.store.fetch(
                self.box.box_id, self.device.device_id, after=after, limit=limit
            )
            if not after:
                ack_limit = page.ack_limit
            self.cursor = page.cursor
            for message in page.messages:
                if message.message_id not in self.got:
                    new += 1
                    if message.position <= self.cursor:
                        self.rescued += 1
                self.got.setdefault(message.message_id, set()).add(message.position)
                last = max(last, message.position)
            if not page.more:
                break
            after = page.messages[-1].position
        through = last if ack_limit is None else min(last, ack_limit)
        if ack and through:
            self.cursor = await self.store.ack(self.box.box_id, self.device.device_id, through)
        return new

    async def follow(self, until: asyncio.Event, pause: float = 0.01) -> None:
        while not until.is_set():
            await self.sweep()
            await asyncio.sleep(pause)

    async def drain(self, want: set[uuid.UUID]) -> None:
        """Sweep until every wanted id arrived, or long past any settle
        window (then the assertions report what is missing)."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while not want <= set(self.got) and time.monotonic() < deadline:
            await self.sweep()
            await asyncio.sleep(0.05)
        await self.sweep()


def assert_exactly_once(reader: Reader, sent: Sent) -> None:
    missing = set(sent.positions) - set(reader.got)
    unknown = set(reader.got) - set(sent.positions)
    assert not missing, f"{len(missing)} of {len(sent.positions)} messages never arrived"
    assert not unknown, f"{len(unknown)} messages nobody sent"
    moved = {
        mid: positions
        for mid, positions in reader.got.items()
        if positions != {sent.positions[mid]}
    }
    assert not moved, f"messages seen at other positions than queued: {moved}"


# -- (a) many senders, one continuous reader ----------------------------------------


async def test_concurrent_senders_lose_nothing(make_store: MakeStore) -> None:
    clock = WallClock()
    stores = [make_store(clock=clock) for _ in range(3)]
    box, (device,) = await new_box(stores[0])
    reader = Reader(make_store(clock=clock), box, device)
    sent, done = Sent(), asyncio.Event()
    follower = asyncio.create_task(reader.follow(done))
    await asyncio.gather(*(sender(stores[i % 3], box, 25, sent) for i in range(24)))
    done.set()
    await follower
    await reader.drain(set(sent.positions))
    assert len(sent.positions) == 600
    assert_exactly_once(reader, sent)


# -- (b) the same with clock skew between the "processes" ---------------------------


async def test_clock_skew_below_the_settle_window_loses_nothing(make_store: MakeStore) -> None:
    behind, ahead = WallClock(-1.5), WallClock(+1.5)
    writers = [make_store(clock=behind), make_store(clock=WallClock()), make_store(clock=ahead)]
    # The box is created on the clock furthest behind, so no skewed message
    # predates the device (a new device starts at the head: no history).
    box, (device,) = await new_box(writers[0])
    reader = Reader(make_store(clock=ahead), box, device)
    sent, done = Sent(), asyncio.Event()
    follower = asyncio.create_task(reader.follow(done, pause=0.005))
    await asyncio.gather(*(sender(writers[i % 3], box, 20, sent, pause=0.002) for i in range(18)))
    done.set()
    await follower
    await reader.drain(set(sent.positions))
    assert_exactly_once(reader, sent)
    if not reader.store.capabilities.ordered_visibility:
        # The skew really put messages below an advancing cursor; without
        # the settle window re-read, these would have been lost.
        assert reader.rescued > 0


# -- (c) racing contact claims from several processes -------------------------------


async def test_contact_claim_race_has_one_winner_per_contact(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(3)]
    contacts = [os.urandom(32) for _ in range(6)]
    claimants = {contact: [new_id() for _ in range(9)] for contact in contacts}
    calls = [
        stores[i % 3].claim_contact(contact, box_id)
        for contact in contacts
        for i, box_id in enumerate(claimants[contact])
    ]
    answers = await asyncio.gather(*calls)
    winners: dict[bytes, uuid.UUID] = {}
    k = 0
    for contact in contacts:
        mine = answers[k : k + len(claimants[contact])]
        k += len(mine)
        assert len(set(mine)) == 1, mine
        winners[contact] = mine[0]
        assert winners[contact] in claimants[contact]
        assert sum(a == b for a, b in zip(mine, claimants[contact], strict=True)) == 1
    for contact, winner in winners.items():
        for store in stores:
            assert await store.lookup_contact(contact) == winner
    # A released contact is raced again: still exactly one winner.
    contact = contacts[0]
    await stores[1].release_contact(contact, winners[contact])
    again = [new_id() for _ in range(9)]
    answers = await asyncio.gather(
        *(stores[i % 3].claim_contact(contact, b) for i, b in enumerate(again))
    )
    assert len(set(answers)) == 1 and answers[0] in again


# -- (d) compaction against several devices acking concurrently ----------------------


async def test_compaction_never_outruns_a_device(make_store: MakeStore) -> None:
    # All clocks share a base that runs faster than the test (each burst of
    # sends lands seconds after the previous one, so cursors pass whole
    # settle windows and compaction has real work), and the writers are
    # skewed against each other, so messages land below advancing cursors.
    # The spread (2.5 s) stays strictly inside S - T = 3 s (docs/store.md,
    # "The settle window"): at exactly 3 s a write that spends its whole
    # budget can land just below a re-read, which CI showed twice.
    base = WallClock()
    writers = [make_store(clock=SkewedClock(base, skew)) for skew in (-1.25, 0.0, 1.25)]
    compactor = make_store(clock=base)
    box, devices = await new_box(writers[0], devices=3)
    fast, slow, late = (Reader(make_store(clock=base), box, d) for d in devices)
    sent, done, halfway = Sent(), asyncio.Event(), asyncio.Event()
    purges: list[int] = []

    async def compact_forever() -> None:
        while not done.is_set():
            purges.append((await compactor.compact(box.box_id)).purged_through)
            await asyncio.sleep(0.005)

    async def send_bursts() -> None:
        for burst in range(10):
            await asyncio.gather(
                *(sender(writers[i % 3], box, 5, sent, pause=0.002) for i in range(6))
            )
            base.offset += 2.0
            if burst == 4:
                halfway.set()

    async def read_slowly() -> None:
        while not done.is_set():
            await slow.sweep(limit=7)
            await asyncio.sleep(0.05)

    async def read_late() -> None:
        # Holds compaction back for the first half, then catches up while
        # the others keep acking and the compactor keeps running.
        await halfway.wait()
        await late.follow(done, pause=0.02)

    tasks = [
        asyncio.create_task(fast.follow(done, pause=0.002)),
        asyncio.create_task(read_slowly()),
        asyncio.create_task(read_late()),
        asyncio.create_task(compact_forever()),
    ]
    await send_bursts()
    want = set(sent.positions)
    await asyncio.gather(fast.drain(want), slow.drain(want), late.drain(want))
    done.set()
    await asyncio.gather(*tasks)
    for reader in (fast, slow, late):
        assert_exactly_once(reader, sent)
    final = await compactor.compact(box.box_id)
    assert purges == sorted(purges)  # the watermark never moves back
    assert max(purges) <= final.purged_through
    # Compaction did remove messages (so the test exercised it).
    assert final.purged_through > min(sent.positions.values())


async def test_overlapping_attempts_of_one_id_are_handed_out_once(
    make_store: MakeStore,
) -> None:
    """Two processes attempt the same Send at the same moment (a client that
    retried on another server while its first attempt still ran). Without
    Paxos both attempts may queue a copy (Store.enqueue); a device paging
    one message at a time must still get each id once, and once it acked
    past an id, never see it again above its cursor."""
    clock = WallClock()
    one, two = make_store(clock=clock), make_store(clock=clock)
    box, (device,) = await new_box(one)
    messages = [make_message() for _ in range(20)]
    answers = [
        await asyncio.gather(one.enqueue(box.box_id, m), two.enqueue(box.box_id, m))
        for m in messages
    ]
    assert all(a.position > 0 and b.position > 0 for a, b in answers)
    if one.capabilities.exact_enqueue:  # one transaction per attempt: a single copy
        assert all(a.position == b.position for a, b in answers)

    async def sweep(start: int) -> list[tuple[uuid.UUID, int]]:
        """Read from the cursor one message per page, as a client pages."""
        seen: list[tuple[uuid.UUID, int]] = []
        after = start
        while True:
            page = await device_fetch(after)
            seen.extend((m.message_id, m.position) for m in page.messages)
            if not page.more:
                return seen
            after = max([after, page.read_through, *(m.position for m in page.messages)])

    async def device_fetch(after: int) -> Any:
        return await one.fetch(box.box_id, device.device_id, after=after, limit=1)

    first = await sweep(0)
    assert sorted(mid for mid, _ in first) == sorted(m.message_id for m in messages)
    top = max(p for _, p in first)
    cursor = await one.ack(box.box_id, device.device_id, top)
    assert cursor == top
    again = await sweep(0)
    above = [(mid, p) for mid, p in again if p > cursor]
    assert above == [], f"copies handed out again above the cursor: {above}"


# -- (e) a sweep that pages for longer than the settle window -----------------------


async def test_a_long_sweep_never_acks_past_a_message_it_paged_over(
    make_store: MakeStore, clock: Any
) -> None:
    """A sweep pages with ``after``, so a message that lands below a page
    already read (skew, or a write in flight) is skipped for the rest of the
    sweep; only the next sweep's re-read below the cursor can deliver it. If
    the sweep lasted long enough to ack a position a settle window above
    that message, the re-read would start above it: lost for good."""
    writer = make_store(clock=clock)
    # A writer 0.5 s behind the others (well inside the tolerated skew):
    # its message lands below one the device has already been handed.
    behind = make_store(clock=lambda: clock() - 0.5)
    reader = make_store(clock=clock)
    box, (device,) = await new_box(writer)
    clock.advance(1.0)
    first, second = make_message(), make_message()
    sent = Sent()
    for message in (first, second):
        sent.positions[message.message_id] = (await writer.enqueue(box.box_id, message)).position
    seen: dict[uuid.UUID, int] = {}
    page = await reader.fetch(box.box_id, device.device_id, limit=1)
    assert [m.message_id for m in page.messages] == [first.message_id] and page.more
    seen[first.message_id] = page.messages[0].position
    late = make_message()
    sent.positions[late.message_id] = (await behind.enqueue(box.box_id, late)).position
    # The sweep goes on for longer than the settle window (a slow client
    # opening each message, a busy box): meanwhile later messages queue.
    clock.advance(6.0)
    last = make_message()
    sent.positions[last.message_id] = (await writer.enqueue(box.box_id, last)).position
    after, ack_limit = page.messages[0].position, page.ack_limit
    while page.more:
        page = await reader.fetch(box.box_id, device.device_id, after=after, limit=1)
        for m in page.messages:
            seen[m.message_id] = m.position
        after = max([after, page.read_through, *(m.position for m in page.messages)])
    top = max(seen.values())
    await reader.ack(
        box.box_id, device.device_id, top if ack_limit is None else min(top, ack_limit)
    )
    # Every later sweep starts from the stored cursor, as a client's does.
    for _ in range(3):
        after, more = 0, True
        while more:
            page = await reader.fetch(box.box_id, device.device_id, after=after, limit=10)
            for m in page.messages:
                seen[m.message_id] = m.position
            after = max([after, page.read_through, *(m.position for m in page.messages)])
            more = page.more
    assert seen == sent.positions
