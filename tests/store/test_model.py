"""Model-based tests of the queue: random interleavings checked against a
plain in-memory model.

Hypothesis drives a ``RuleBasedStateMachine`` through sends, retries (same
message id), paged fetches, drains, acks (sensible and hostile), compaction,
device add / re-add / revoke, expiry (an injected clock) and housekeeping,
through two store instances that share one database (two "server
processes"). After every step the store must agree with the model:

* every fetched page is exactly what the model predicts: live messages owed
  to the device (queued after it joined), above ``max(after, cursor -
  settle_window)``, in position order, at most ``limit``, with ``more`` set
  right; nothing expired, compacted, foreign or from before the device
  joined; the data is what was sent, at the position Enqueue answered;
* so no acknowledged message is lost, and a drain never returns one message
  id twice; a retry of a message that has not expired, queued or already
  delivered and compacted, is always answered as a duplicate at its first
  position (so after dedupe by message id nothing is duplicated);
* compaction removes only what every active device has passed (and at
  least up to ``min(cursor) - settle_window``); a revoked device stops
  holding it back;
* cursors never go backwards, acks are clamped to the head, a new device
  starts at the head;
* ``pending_count`` equals the live messages (not compacted, not
  expired; or ``pending_cap + 1`` when there are more); Send is refused
  exactly when ``pending_cap`` live messages lie above the *most advanced*
  active cursor (docs/store.md, "Pending cap");
* overflow (docs/store.md, "Overflow"): a fetch from the floor (``after``
  not past the cursor) of a device with more than ``pending_cap`` live
  messages above its cursor, and every compaction for every active device,
  moves that cursor to the ``pending_cap + 1``-th newest live position (but
  never above the most advanced cursor less the settle window), and records
  a gap: ``missed`` = the live messages skipped, widened by a later trim
  before the ack. Every page starting at or below the gap's end reports it
  (``Page.gap``), ``Page.dropped``/``Compaction.dropped`` count each drop
  once, an ack at or above its end clears it, and nothing at or below the
  end of a gap is handed out again. A device within the cap is never
  trimmed and never sees a gap.

The settle window (``store.settle_window``, Cassandra) is part of the model:
fetch re-reads below the cursor, and compaction stays a window behind.
Cassandra positions come from the writer's clock; the test clock stands
still between steps, so two store instances issue positions in the same
microsecond. Where that makes the contract fuzzy (a device added through
one instance, a message queued through the other at the same instant: the
message may or may not count as history), the model accepts either answer
for that message only.

Clock steps are multiples of 0.5 s and the TTL ends in .25 s, so no check
ever lands on an expiry boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rossby.errors import NotFound
from rossby.store import (
    Box,
    Device,
    DeviceKeys,
    DeviceState,
    Gap,
    NewMessage,
    Page,
    PendingCapExceeded,
    Store,
    StoreOptions,
    open_store,
)
from tests.conftest import cassandra_url
from tests.support.backends import purged
from tests.support.clocks import FakeClock

T = TypeVar("T")

TTL = 100.25  # seconds; clock steps are multiples of 0.5, never hitting it
CAP = 3  # small, so the cap is reached and freed again often
CLOCK_STEPS = (0.5, 2.5, 6.0, 30.0, 120.0)
LIMITS = (1, 2, 3, 100)
MAX_DEVICES = 5
FAR = 2**62  # an ack far beyond any head, still a valid bigint
STORES = 2  # store instances sharing one database
PICK = st.integers(0, 2**16)  # an index, taken modulo the choices at hand

EXAMPLES = {"sqlite": 120, "cassandra": 40}
STEPS = {"sqlite": 50, "cassandra": 40}


# -- the model --------------------------------------------------------------------


@dataclass
class Entry:
    """One queued copy of a message (a retry after compaction or expiry may
    queue a second copy of the same id at a new position)."""

    message: NewMessage
    position: int
    seq: int  # order of the operation that queued it
    at: float  # model clock when queued
    store: int  # which store instance queued it
    compacted: bool = False
    purged: bool = False  # physically removed by purge_expired


@dataclass
class DeviceModel:
    device: Device
    seq: int  # order of the operation that added it
    at: float
    store: int
    cursor: int = 0
    token: int = 0  # the paging token a client would hold
    last_seen: int = 0
    active: bool = True
    gap: Gap | None = None  # the overflow gap the store must report
    floor: int = 0  # the end of the last gap: never handed out again


@dataclass
class BoxModel:
    box: Box
    devices: list[DeviceModel] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    sent: dict[uuid.UUID, NewMessage] = field(default_factory=dict)
    purged_through: int = 0

    @property
    def active(self) -> list[DeviceModel]:
        return [d for d in self.devices if d.active]

    def latest(self, message_id: uuid.UUID) -> Entry:
        return [e for e in self.entries if e.message.message_id == message_id][-1]

    def top(self) -> int:
        return max((e.position for e in self.entries), default=0)


def new_device(box_id: uuid.UUID, created_at: float, name: str) -> Device:
    return Device(
        box_id=box_id,
        device_id=uuid.uuid4(),
        name=name,
        keys=DeviceKeys(os.urandom(32), os.urandom(32), os.urandom(64)),
        hawk_key=os.urandom(32),
        state=DeviceState.ACTIVE,
        created_at=created_at,
    )


def pick(items: Sequence[T], index: int) -> T | None:
    return items[index % len(items)] if items else None


# -- what lives across examples ------------------------------------------------------


class Env:
    """The event loop, the clock and the way to get stores for one example.

    Every store call of a run goes through one private event loop (the
    Cassandra driver hands answers to the loop that asked). SQLite gets a
    fresh database file per example; Cassandra shares two store instances
    across examples (connecting is slow) and isolates by fresh box ids.
    """

    def __init__(self, backend: str, url: Callable[[], str]) -> None:
        self.backend = backend
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(float(int(time.time())))
        self.shared: list[Store] | None = None
        self.examples = 0
        self.steps = 0
        self.trims = 0  # overflow trims the model saw (so a run shows it got there)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def _open(self) -> list[Store]:
        opts = StoreOptions(message_ttl=TTL, pending_cap=CAP, clock=self.clock)
        url = self.url()
        stores = [open_store(url, opts) for _ in range(STORES)]
        self.run(stores[0].migrate())
        return stores

    def stores(self) -> list[Store]:
        self.examples += 1
        if self.backend == "sqlite":
            return self._open()
        if self.shared is None:
            self.shared = self._open()
        return self.shared

    def release(self, stores: list[Store]) -> None:
        if stores is not self.shared:
            for store in stores:
                self.run(store.close())

    def close(self) -> None:
        try:
            if self.shared is not None:
                for store in self.shared:
                    self.run(store.close())
        finally:
            self.loop.close()


def queue_machine(env: Env) -> type[RuleBasedStateMachine]:
    class QueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.env = env
            self.clock = env.clock
            self.stores = env.stores()
            self.settle = self.stores[0].settle_window
            self.sqlite = env.backend == "sqlite"
            self.seq = itertools.count(1)
            self.boxes: list[BoxModel] = []

        def teardown(self) -> None:
            self.env.release(self.stores)

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            self.env.steps += 1
            return self.env.run(coro)

        # -- model helpers ---------------------------------------------

        def expired(self, e: Entry) -> bool:
            return self.clock.now >= e.at + TTL

        def live(self, e: Entry) -> bool:
            return not e.compacted and not self.expired(e)

        def live_count(self, box: BoxModel) -> int:
            return sum(self.live(e) for e in box.entries)

        def front(self, box: BoxModel) -> int:
            """The most advanced active cursor (the box's purge mark when
            none is active): where the cap counts from."""
            return max([box.purged_through, *(d.cursor for d in box.active)])

        def undelivered(self, box: BoxModel) -> int:
            """Live messages above the most advanced active cursor: what the
            cap counts."""
            floor = self.front(box)
            return sum(self.live(e) and e.position > floor for e in box.entries)

        def trim(self, box: BoxModel, devices: list[DeviceModel]) -> int:
            """The overflow rule applied to ``devices``: answer the live
            messages dropped."""
            if not devices:
                return 0
            low = min(d.cursor for d in devices)
            newest = sorted(
                (e.position for e in box.entries if self.live(e) and e.position > low),
                reverse=True,
            )
            if len(newest) <= CAP:
                return 0
            to = min(newest[CAP], self.front(box) - self.settle)
            dropped = 0
            for d in devices:
                if d.cursor >= to:
                    continue
                missed = sum(self.live(e) and d.cursor < e.position <= to for e in box.entries)
                if d.gap is None:
                    d.gap = Gap(missed=missed, after=d.cursor, through=to)
                else:
                    d.gap = Gap(missed=d.gap.missed + missed, after=d.gap.after, through=to)
                d.cursor, d.floor = to, to
                dropped += missed
                env.trims += 1
            return dropped

        def maybe(self, d: DeviceModel, e: Entry) -> bool:
            """Queued through the other instance in the same (frozen) clock
            instant as the device was added: its start position and this
            message's position are a microsecond apart, either order."""
            return self.settle > 0 and e.at == d.at and e.store != d.store

        def owed(self, d: DeviceModel, e: Entry) -> bool:
            return e.seq > d.seq

        def candidates(self, box: BoxModel, d: DeviceModel, after: int) -> list[Entry]:
            lower = max(after, d.cursor - self.settle, d.floor)
            return sorted(
                (
                    e
                    for e in box.entries
                    if e.position > lower and self.live(e) and (self.owed(d, e) or self.maybe(d, e))
                ),
                key=lambda e: e.position,
            )

        def check_page(
            self, box: BoxModel, d: DeviceModel, after: int, limit: int, page: Page
        ) -> None:
            got = list(page.messages)
            where = f"device {d.device.device_id} cursor={d.cursor} after={after} limit={limit}"
            assert page.cursor == d.cursor, f"{where}: fetch reports cursor {page.cursor}"
            gap = d.gap if d.gap is not None and after <= d.gap.through else None
            assert page.gap == gap, f"{where}: gap {page.gap}, want {gap}"
            positions = [m.position for m in got]
            assert positions == sorted(set(positions)), f"{where}: out of order {positions}"
            assert len(got) <= limit, f"{where}: {len(got)} messages"
            cands = self.candidates(box, d, after)
            by_position = {e.position: e for e in cands}
            for m in got:
                e = by_position.get(m.position)
                if e is None:
                    known = [x for x in box.entries if x.position == m.position]
                    state = (
                        "never queued here"
                        if not known
                        else "compacted"
                        if known[0].compacted
                        else "expired"
                        if self.expired(known[0])
                        else "not owed (history)"
                        if not self.owed(d, known[0])
                        else "below the window"
                    )
                    raise AssertionError(f"{where}: got position {m.position}: {state}")
                assert m.message_id == e.message.message_id, f"{where}: id at {m.position}"
                assert m.sender_box == e.message.sender_box, f"{where}: sender_box"
                assert m.sender_device == e.message.sender_device, f"{where}: sender_device"
                assert m.ciphertext == e.message.ciphertext, f"{where}: ciphertext"
                assert abs(m.received_at - e.at) < 0.01, f"{where}: received_at {m.received_at}"
            if not any(self.maybe(d, e) for e in cands):
                want = [e.position for e in cands[:limit]]
                assert positions == want, f"{where}: got {positions}, want {want}"
                assert page.more == (len(cands) > limit), f"{where}: more={page.more}"
            else:
                top = positions[-1] if positions else 0
                missing = [
                    e.position
                    for e in cands
                    if not self.maybe(d, e)
                    and (not page.more or e.position <= top)
                    and e.position not in positions
                ]
                assert not missing, f"{where}: missing {missing}, got {positions}"
                if page.more:
                    assert len(got) == limit, f"{where}: more=True on a short page"
            if positions:
                d.last_seen = max(d.last_seen, positions[-1])

        def check_new_position(self, box: BoxModel, position: int, s: int) -> None:
            everything = [e.position for e in box.entries]
            assert position not in everything, f"position {position} reused"
            for d in box.active:
                # Else that device would never read it: its cursor is past
                # the head (an ack was not clamped) or positions went back.
                assert position > d.cursor - self.settle, (
                    f"queued at {position}, below the reach of cursor {d.cursor}"
                )
            if self.settle == 0:
                assert position > max(everything, default=0), "positions out of arrival order"
            else:
                mine = [e.position for e in box.entries if e.store == s]
                assert position > max(mine, default=0), "one writer's positions went back"
                assert position > max(everything, default=0) - self.settle, "outside the window"

        def device(self, box: BoxModel, index: int, *, active: bool = True) -> DeviceModel | None:
            return pick(box.active if active else box.devices, index)

        def do_fetch(self, box: BoxModel, d: DeviceModel, s: int, after: int, limit: int) -> Page:
            # A fetch from the floor trims a device over the cap first.
            dropped = self.trim(box, [d]) if after <= d.cursor else 0
            page = self.run(
                self.stores[s].fetch(box.box.box_id, d.device.device_id, after=after, limit=limit)
            )
            assert page.dropped == dropped, f"fetch dropped {page.dropped}, want {dropped}"
            self.check_page(box, d, after, limit, page)
            return page

        def do_ack(self, box: BoxModel, d: DeviceModel, s: int, through: int) -> None:
            old = d.cursor
            new = self.run(self.stores[s].ack(box.box.box_id, d.device.device_id, through))
            top = box.top()
            where = f"ack({through}) from cursor {old}, top {top}"
            assert new >= old, f"{where}: cursor went back to {new}"
            assert new <= max(old, through), f"{where}: cursor passed the ack: {new}"
            if through <= top:
                assert new == max(old, through), f"{where}: answered {new}"
            else:
                assert new >= max(old, top), f"{where}: answered {new}"
            if self.settle == 0:
                # Positions are dense and issued in the writing transaction:
                # the head is exactly the top position.
                assert new == max(old, min(through, top)), f"{where}: answered {new}"
            d.cursor, d.token = new, 0
            if d.gap is not None and through >= d.gap.through:
                d.gap = None  # the client took the gap in
            # The read right after an ack is where the cursor edge bites:
            # it must re-read the settle window and nothing below it.
            self.do_fetch(box, d, s, 0, 100)

        def do_compact(self, box: BoxModel, s: int) -> None:
            # Compaction trims every active device over the cap first.
            dropped = self.trim(box, box.active)
            result = self.run(self.stores[s].compact(box.box.box_id))
            assert result.dropped == dropped, f"compaction dropped {result.dropped}, want {dropped}"
            purged = result.purged_through
            old = box.purged_through
            assert purged >= old, f"purged_through went back: {old} -> {purged}"
            active = box.active
            if active:
                # At or below min(cursor) - settle_window: never into the
                # window a device re-reads; and no less, or nothing goes.
                floor = min(d.cursor for d in active) - self.settle
                assert purged <= max(old, floor), f"compacted to {purged}, cursors allow {floor}"
                assert purged >= floor, f"compaction stopped at {purged}, cursors allow {floor}"
            gone = [e for e in box.entries if not e.compacted and e.position <= purged]
            if result.removed is not None:
                present = sum(not e.purged for e in gone)
                assert result.removed == present, f"removed {result.removed}, want {present}"
            for e in gone:
                for d in active:
                    assert not self.owed(d, e) or e.position <= d.cursor, (
                        f"compaction removed {e.position}, not yet passed by {d.device.device_id}"
                    )
                e.compacted = True
            box.purged_through = purged

        def add(self, box: BoxModel, device: Device, s: int) -> DeviceModel:
            d = DeviceModel(device=device, seq=next(self.seq), at=self.clock.now, store=s)
            box.devices.append(d)
            return d

        # -- rules -----------------------------------------------------

        @initialize()
        def make_boxes(self) -> None:
            # Start each example well past the last one's positions (shared
            # Cassandra stores keep their allocators), so examples replay
            # identically while shrinking.
            self.clock.now += 60.0
            for i in range(2):
                box = Box(box_id=uuid.uuid4(), home_region="dc1", created_at=self.clock.now)
                device = new_device(box.box_id, self.clock.now, f"first{i}")
                self.run(self.stores[0].create_box(box, device))
                model = BoxModel(box=box)
                d = self.add(model, device, 0)
                d.cursor = self.run(self.stores[0].fetch(box.box_id, device.device_id)).cursor
                self.boxes.append(model)

        @rule(
            b=st.integers(0, 1),
            s=st.integers(0, STORES - 1),
            reuse=st.booleans(),
            i=PICK,
            size=st.integers(1, 96),
        )
        def send(self, b: int, s: int, reuse: bool, i: int, size: int) -> None:
            box, other = self.boxes[b], self.boxes[1 - b]
            # The same message id in another box is another message.
            foreign = [m for m in other.sent if m not in box.sent]
            message_id = pick(foreign, i) if reuse and foreign else None
            message = NewMessage(
                message_id=message_id or uuid.uuid4(),
                sender_box=uuid.uuid4(),
                sender_device=uuid.uuid4(),
                ciphertext=os.urandom(size),
            )
            live, undelivered = self.live_count(box), self.undelivered(box)
            try:
                result = self.run(self.stores[s].enqueue(box.box.box_id, message))
            except PendingCapExceeded:
                assert undelivered >= CAP, f"refused with {undelivered} undelivered ({live} live)"
                return
            assert undelivered < CAP, f"queued past the cap ({undelivered} undelivered)"
            assert not result.duplicate, "a new message id answered as a duplicate"
            self.check_new_position(box, result.position, s)
            box.sent[message.message_id] = message
            box.entries.append(Entry(message, result.position, next(self.seq), self.clock.now, s))

        @rule(b=st.integers(0, 1), s=st.integers(0, STORES - 1), i=PICK)
        def retry(self, b: int, s: int, i: int) -> None:
            box = self.boxes[b]
            message_id = pick(list(box.sent), i)
            if message_id is None:
                return
            message = box.sent[message_id]
            latest = box.latest(message_id)
            live, undelivered = self.live_count(box), self.undelivered(box)
            try:
                result = self.run(self.stores[s].enqueue(box.box.box_id, message))
            except PendingCapExceeded:
                assert self.expired(latest), "a retry of an unexpired message refused by the cap"
                assert undelivered >= CAP, f"retry refused: {undelivered} undelivered ({live} live)"
                return
            if self.live(latest) or not self.expired(latest):
                # Queued, or delivered and compacted: the id is remembered
                # until the message would have expired.
                assert result.duplicate, "a retry of an unexpired message queued a second copy"
                assert result.position == latest.position, "a retry moved the message"
                return
            # The first copy expired: the store may still remember the id, or
            # queue the message again.
            if result.duplicate:
                assert result.position == latest.position, "duplicate at another position"
                return
            assert undelivered < CAP, f"re-queued past the cap ({undelivered} undelivered)"
            self.check_new_position(box, result.position, s)
            box.entries.append(Entry(message, result.position, next(self.seq), self.clock.now, s))

        @rule(
            b=st.integers(0, 1),
            i=PICK,
            s=st.integers(0, STORES - 1),
            limit=st.sampled_from(LIMITS),
            mode=st.sampled_from(["token", "zero", "entry", "beyond"]),
            j=PICK,
        )
        def fetch_page(self, b: int, i: int, s: int, limit: int, mode: str, j: int) -> None:
            box = self.boxes[b]
            d = self.device(box, i)
            if d is None:
                return
            if mode == "token":
                after = d.token
            elif mode == "entry":
                after = getattr(pick(box.entries, j), "position", 0)
            elif mode == "beyond":
                after = box.top() + 1 + j
            else:
                after = 0
            page = self.do_fetch(box, d, s, after, limit)
            # What the server answers as next_after.
            d.token = page.messages[-1].position if page.messages else max(after, page.cursor)

        @rule(
            b=st.integers(0, 1),
            i=PICK,
            s=st.integers(0, STORES - 1),
            limit=st.sampled_from(LIMITS),
            ack=st.booleans(),
            compact=st.booleans(),
        )
        def drain(self, b: int, i: int, s: int, limit: int, ack: bool, compact: bool) -> None:
            """What a client does: page from the cursor until ``more`` is
            false, drop repeats by id, ack the last position (the server
            compacts after every ack)."""
            box = self.boxes[b]
            d = self.device(box, i)
            if d is None:
                return
            want: set[uuid.UUID] | None = None
            got: dict[uuid.UUID, int] = {}
            after = 0
            for _ in range(len(box.entries) + 2):
                page = self.do_fetch(box, d, s, after, limit)
                if want is None:  # what is owed once the first fetch trimmed
                    want = {
                        e.message.message_id
                        for e in self.candidates(box, d, 0)
                        if not self.maybe(d, e)
                    }
                for m in page.messages:
                    assert m.message_id not in got, f"{m.message_id} twice in one drain"
                    got[m.message_id] = m.position
                if not page.more:
                    break
                after = page.messages[-1].position
            else:
                raise AssertionError("fetch never ran out of pages")
            assert want is not None
            lost = want - set(got)
            assert not lost, f"drain lost {len(lost)} message(s)"
            if ack and got:
                self.do_ack(box, d, s, max(got.values()))
                if compact:
                    self.do_compact(box, s)

        @rule(
            b=st.integers(0, 1),
            i=PICK,
            s=st.integers(0, STORES - 1),
            count=st.integers(1, 2 * CAP),
            step=st.sampled_from((0.0, 0.5, 6.0, 30.0)),
        )
        def read_along(self, b: int, i: int, s: int, count: int, step: float) -> None:
            """The box of the overflow issue: one device reads and acks each
            message as it lands (the clock moving on between them), so the
            box keeps accepting while other devices fall behind."""
            box = self.boxes[b]
            if len(box.active) < 2:
                self.add_device(b, s)  # someone to fall behind
            d = self.device(box, i)
            if d is None:
                return
            for _ in range(count):
                self.clock.now += step
                before = len(box.entries)
                self.send(b, s, False, 0, 8)
                if len(box.entries) == before:
                    return  # refused: the reader is at the cap (it may be new)
                self.do_ack(box, d, s, box.entries[-1].position)

        @rule(
            b=st.integers(0, 1),
            i=PICK,
            s=st.integers(0, STORES - 1),
            mode=st.sampled_from(["seen", "entry", "zero", "far"]),
            j=PICK,
        )
        def ack(self, b: int, i: int, s: int, mode: str, j: int) -> None:
            box = self.boxes[b]
            d = self.device(box, i)
            if d is None:
                return
            if mode == "seen":
                through = d.last_seen
            elif mode == "entry":
                through = getattr(pick(box.entries, j), "position", 0)
            elif mode == "far":
                through = FAR
            else:
                through = 0
            self.do_ack(box, d, s, through)

        @rule(b=st.integers(0, 1), s=st.integers(0, STORES - 1))
        def compact(self, b: int, s: int) -> None:
            self.do_compact(self.boxes[b], s)

        @rule(b=st.integers(0, 1), s=st.integers(0, STORES - 1))
        def add_device(self, b: int, s: int) -> None:
            box = self.boxes[b]
            if len(box.devices) >= MAX_DEVICES:
                return
            # Creation times strictly increase, so list order is defined.
            created = self.clock.now + 0.01 * len(box.devices)
            device = new_device(box.box.box_id, created, f"d{len(box.devices)}")
            self.run(self.stores[s].add_device(device))
            d = self.add(box, device, s)
            page = self.run(self.stores[s].fetch(box.box.box_id, device.device_id, limit=100))
            d.cursor = page.cursor
            if self.settle == 0:
                assert d.cursor == box.top(), f"new device starts at {d.cursor}, head {box.top()}"
            else:
                mine = max((e.position for e in box.entries if e.store == s), default=0)
                assert d.cursor >= mine, "new device starts below its writer's head"
            assert d.cursor >= box.purged_through, "new device starts in compacted history"
            # No history (bar the same-instant fuzz between instances).
            self.check_page(box, d, 0, 100, page)

        @rule(b=st.integers(0, 1), i=PICK, s=st.integers(0, STORES - 1))
        def re_add_device(self, b: int, i: int, s: int) -> None:
            """A retried add changes nothing: not the cursor, not a revocation."""
            box = self.boxes[b]
            d = self.device(box, i, active=False)
            assert d is not None
            with contextlib.suppress(NotFound):
                self.run(self.stores[s].add_device(d.device))
            got = self.run(self.stores[s].get_device(box.box.box_id, d.device.device_id))
            assert got is not None
            assert got.state is (DeviceState.ACTIVE if d.active else DeviceState.REVOKED)
            if d.active:
                self.do_fetch(box, d, s, 0, 1)
            else:
                with pytest.raises(NotFound):
                    self.run(self.stores[s].fetch(box.box.box_id, d.device.device_id))

        @rule(b=st.integers(0, 1), i=PICK, s=st.integers(0, STORES - 1))
        def revoke(self, b: int, i: int, s: int) -> None:
            box = self.boxes[b]
            d = self.device(box, i)
            if d is None:
                return
            box_id, device_id = box.box.box_id, d.device.device_id
            self.run(self.stores[s].revoke_device(box_id, device_id))
            d.active = False
            self.run(self.stores[1 - s].revoke_device(box_id, device_id))  # idempotent
            with pytest.raises(NotFound):
                self.run(self.stores[s].fetch(box_id, device_id))
            with pytest.raises(NotFound):
                self.run(self.stores[s].ack(box_id, device_id, box.top()))

        @rule(b=st.integers(0, 1), s=st.integers(0, STORES - 1))
        def list_devices(self, b: int, s: int) -> None:
            box = self.boxes[b]
            listed = self.run(self.stores[s].list_devices(box.box.box_id))
            want = [d.device.device_id for d in box.active]
            assert [d.device_id for d in listed] == want

        @rule(seconds=st.sampled_from(CLOCK_STEPS))
        def advance_clock(self, seconds: float) -> None:
            self.clock.now += seconds

        @rule(seconds=st.sampled_from((TTL + 0.25, TTL - 0.75)))
        def advance_about_a_ttl(self, seconds: float) -> None:
            """Just past, or just short of, the TTL of what was queued now."""
            self.clock.now += seconds

        @rule(s=st.integers(0, STORES - 1))
        def purge_expired(self, s: int) -> None:
            removed = self.run(self.stores[s].purge_expired())
            due = [
                e
                for box in self.boxes
                for e in box.entries
                if self.expired(e) and not e.compacted and not e.purged
            ]
            # Exact: one database per example, or a backend that expires rows itself (0).
            want = purged(env.backend, len(due))
            assert removed == want, f"purged {removed}, want {want}"
            for e in due:
                e.purged = True

        @invariant()
        def pending_count_is_the_live_messages(self) -> None:
            for box in self.boxes:
                got = self.run(self.stores[0].pending_count(box.box.box_id))
                live = self.live_count(box)
                # A backend may stop counting at pending_cap + 1.
                assert got in (live, min(live, CAP + 1)), f"pending_count {got}, live {live}"

    return QueueMachine


# -- the tests ------------------------------------------------------------------------


def test_queue_agrees_with_the_model(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        files = itertools.count()

        def url() -> str:
            return f"sqlite:///{tmp_path / f'model-{next(files)}.db'}"

    else:
        hosts = request.getfixturevalue("cassandra_hosts")
        fixed = cassandra_url(hosts, "rossby_model", replication="dc1:1")

        def url() -> str:
            return fixed

    env = Env(backend, url)
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            queue_machine(env),
            settings=settings(
                max_examples=EXAMPLES[backend],
                stateful_step_count=STEPS[backend],
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        env.close()
    print(
        f"\nmodel[{backend}]: {env.examples} examples, {env.steps} store calls, {env.trims} trims,"
        f" {time.monotonic() - started:.1f}s"
    )
