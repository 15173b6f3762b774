"""Per-device overflow (``rossby.store.overflow``, docs/store.md "Overflow"),
on both backends.

The box of the issue: pending_cap 5, a phone that reads and acks everything,
a tablet that never comes back. The box must keep accepting mail; the
tablet's oldest messages are dropped for it alone, and its next fetch says
how many and from where, until it acks past them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rossby.store import Box, Device, Gap, PendingCapExceeded, Store
from tests.store.conftest import Clock
from tests.store.test_contract import add_device, fetch_all, make_message, new_box, send

MakeStore = Callable[..., Store]
CAP = 5
STEP = 30.0  # seconds between messages; above the settle window


async def read_along(store: Store, box: Box, phone: Device, count: int, clock: Clock) -> list[int]:
    """``count`` messages, each fetched and acked by the phone as it lands
    (the phone stays within the cap); their positions. The clock moves on
    between them by more than any settle window, as real traffic's does: a
    laggard is never trimmed into what the phone may still re-read."""
    positions = []
    for _ in range(count):
        clock.advance(STEP)
        [(position, message)] = await send(store, box, 1)
        got = await fetch_all(store, box, phone)
        assert message.message_id in {m.message_id for m in got}
        await store.ack(box.box_id, phone.device_id, position)
        positions.append(position)
    return positions


async def lagging_box(store: Store, clock: Clock) -> tuple[Box, Device, Device, int]:
    """A box whose tablet joined and never read: (box, phone, tablet, the
    tablet's cursor)."""
    box, phone = await new_box(store, clock)
    tablet = await add_device(store, box, clock.now + 1)
    start = (await store.fetch(box.box_id, tablet.device_id)).cursor
    return box, phone, tablet, start


async def test_a_lagging_device_overflows_and_the_box_keeps_accepting(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, tablet, start = await lagging_box(store, clock)
    # Twelve messages: past the cap for the tablet, never for the phone.
    positions = await read_along(store, box, phone, 12, clock)
    page = await store.fetch(box.box_id, tablet.device_id)
    assert [m.position for m in page.messages if m.position > positions[6]] == positions[7:]
    assert page.gap == Gap(missed=7, after=start, through=positions[6])
    assert page.dropped == 7
    assert page.cursor == positions[6]
    # The phone saw everything and sees no gap.
    phone_page = await store.fetch(box.box_id, phone.device_id)
    assert phone_page.gap is None and phone_page.dropped == 0


async def test_the_gap_is_reported_until_the_device_acks_past_it(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, tablet, start = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, 9, clock)
    gap = Gap(missed=4, after=start, through=positions[3])
    assert (await store.fetch(box.box_id, tablet.device_id)).gap == gap
    # Fetched twice, or by another process after a crash: the same gap,
    # and nothing dropped a second time.
    again = await make_store(pending_cap=CAP).fetch(box.box_id, tablet.device_id)
    assert again.gap == gap and again.dropped == 0
    # A page further on is past the gap.
    later = await store.fetch(box.box_id, tablet.device_id, after=positions[5])
    assert later.gap is None
    # An ack below the gap's end does not end its report...
    await store.ack(box.box_id, tablet.device_id, positions[2])
    assert (await store.fetch(box.box_id, tablet.device_id)).gap == gap
    # ...an ack at its end does.
    await store.ack(box.box_id, tablet.device_id, positions[3])
    assert (await store.fetch(box.box_id, tablet.device_id)).gap is None
    # What was dropped stays dropped (no settle-window re-read brings it back).
    assert [m.position for m in await fetch_all(store, box, tablet)] == positions[4:]


async def test_a_device_within_the_cap_sees_no_gap_and_loses_nothing(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, tablet, _ = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, CAP, clock)
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.gap is None and page.dropped == 0
    assert [m.position for m in await fetch_all(store, box, tablet)] == positions
    assert (await store.compact(box.box_id)).dropped == 0
    assert [m.position for m in await fetch_all(store, box, tablet)] == positions


async def test_send_is_refused_only_when_the_most_advanced_device_is_over_the_cap(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, _tablet, _ = await lagging_box(store, clock)
    await read_along(store, box, phone, 8, clock)  # the tablet is 8 behind: still accepted
    sent = await send(store, box, CAP)  # now the phone is CAP behind too
    with pytest.raises(PendingCapExceeded) as refused:
        await store.enqueue(box.box_id, make_message())
    assert refused.value.reason == "PENDING_CAP"
    # A retry of a message that got in is still a duplicate.
    assert (await store.enqueue(box.box_id, sent[0][1])).duplicate
    # The phone acks one: room for one.
    await store.ack(box.box_id, phone.device_id, sent[0][0])
    await store.enqueue(box.box_id, make_message())
    with pytest.raises(PendingCapExceeded):
        await store.enqueue(box.box_id, make_message())


async def test_compaction_trims_the_laggard_and_is_not_held_back(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, tablet, start = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, 12, clock)
    done = await store.compact(box.box_id)
    assert done.dropped == 7
    assert done.purged_through >= positions[6] - store.settle_window
    # The gap was recorded by compaction; the tablet's fetch reports it and
    # drops nothing more.
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.gap == Gap(missed=7, after=start, through=positions[6])
    assert page.dropped == 0
    assert [m.position for m in await fetch_all(store, box, tablet)] == positions[7:]
    assert (await store.compact(box.box_id)).dropped == 0


async def test_a_second_overflow_before_the_ack_widens_the_gap(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(pending_cap=CAP)
    box, phone, tablet, start = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, 8, clock)
    assert (await store.fetch(box.box_id, tablet.device_id)).gap == Gap(3, start, positions[2])
    positions += await read_along(store, box, phone, 4, clock)
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.gap == Gap(missed=7, after=start, through=positions[6])
    assert page.dropped == 4
    # Acked, then overflowing again: a new gap from the acked cursor.
    await store.ack(box.box_id, tablet.device_id, positions[6])
    positions += await read_along(store, box, phone, 6, clock)
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.gap == Gap(missed=6, after=positions[6], through=positions[12])


async def test_nothing_the_most_advanced_device_waits_for_is_dropped(
    make_store: MakeStore, clock: Clock
) -> None:
    """Where racing senders overshoot the cap (Cassandra), the front device
    keeps all of it; a laggard is trimmed only down to the front."""
    store = make_store(pending_cap=CAP)
    box, phone, tablet, _ = await lagging_box(store, clock)
    await read_along(store, box, phone, 3, clock)
    others = [make_store(pending_cap=CAP) for _ in range(3)]
    answers = await asyncio.gather(
        *(s.enqueue(box.box_id, make_message()) for s in [store, *others] for _ in range(4)),
        return_exceptions=True,
    )
    queued = sorted(a.position for a in answers if not isinstance(a, BaseException))
    assert len(queued) >= CAP
    got = [m.position for m in await fetch_all(store, box, phone)]
    assert [p for p in got if p in queued] == queued
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.cursor <= (await store.fetch(box.box_id, phone.device_id)).cursor
    assert [
        p for p in [m.position for m in await fetch_all(store, box, tablet)] if p in queued
    ] == queued


async def test_a_page_further_on_trims_nothing(make_store: MakeStore, clock: Clock) -> None:
    """Only a fetch from the floor trims: a client paging on reads what it
    was reading."""
    store = make_store(pending_cap=CAP)
    box, phone, tablet, _ = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, 8, clock)
    page = await store.fetch(box.box_id, tablet.device_id, after=positions[0], limit=2)
    assert page.gap is None and page.dropped == 0
    assert [m.position for m in page.messages] == positions[1:3]


async def test_revocation_and_empty_boxes(make_store: MakeStore, clock: Clock) -> None:
    store = make_store(pending_cap=CAP)
    # An empty box: nothing to trim, no gap.
    box, phone = await new_box(store, clock)
    page = await store.fetch(box.box_id, phone.device_id)
    assert page.gap is None and page.dropped == 0
    assert (await store.compact(box.box_id)).dropped == 0
    # The phone that kept up is revoked before the tablet was trimmed: the
    # tablet is now the most advanced device, so nothing is dropped for it
    # and the box refuses mail until it reads.
    box, phone, tablet, _ = await lagging_box(store, clock)
    positions = await read_along(store, box, phone, 9, clock)
    await store.revoke_device(box.box_id, phone.device_id)
    with pytest.raises(PendingCapExceeded):
        await store.enqueue(box.box_id, make_message())
    page = await store.fetch(box.box_id, tablet.device_id)
    assert page.gap is None and page.dropped == 0
    assert (await store.compact(box.box_id)).dropped == 0
    assert [m.position for m in await fetch_all(store, box, tablet)] == positions
    await store.ack(box.box_id, tablet.device_id, positions[-1])
    await store.enqueue(box.box_id, make_message())
    # A revoked laggard is trimmed no more, and never held the box back.
    box, phone, tablet, _ = await lagging_box(store, clock)
    await read_along(store, box, phone, 7, clock)
    await store.revoke_device(box.box_id, tablet.device_id)
    assert (await store.compact(box.box_id)).dropped == 0
    await read_along(store, box, phone, 7, clock)
