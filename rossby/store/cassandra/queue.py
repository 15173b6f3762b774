"""The message queue on Cassandra: a mixin of ``CassandraStore``. The
reasoning is in docs/store.md ("Cassandra backend", "Cursor edge",
"Idempotent enqueue without Paxos"); comments here only point at the rule
applied.

Every operation is coordinated in the box's home DC (``_view`` finds it and
fences stale routes); see docs/replication.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

from rossby.errors import NotFound, StoreUnavailable
from rossby.replication.consistency import Op
from rossby.store import overflow
from rossby.store.cassandra.overflow import CassandraOverflow, dropped_floor, recorded_gap
from rossby.store.cassandra.plumbing import ttl_covering
from rossby.store.cassandra.positions import bucket_of, time_of, write_timestamp
from rossby.store.model import (
    Compaction,
    DeviceState,
    Enqueued,
    Gap,
    NewMessage,
    Page,
    PendingCapExceeded,
    Position,
    StoredMessage,
)

POLL = 0.05  # seconds between looks at a row another attempt is writing
MAX_LIMIT = 2**31 - 1


async def _nothing() -> None:
    return None


def _ms(unix_seconds: float) -> int:
    return math.floor(unix_seconds * 1000)


def _active(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of active devices in a box view (a partition of statics
    only reads as one row without a device id)."""
    return [r for r in rows if r["device_id"] is not None and r["state"] == DeviceState.ACTIVE]


class CassandraQueue(CassandraOverflow):
    """``enqueue``, ``fetch``, ``ack``, ``compact``, ``pending_count``."""

    async def pending_count(self, box_id: uuid.UUID) -> int:
        home, rows = await self._view(box_id)
        purged = int(rows[0]["purged_through"] or 0) if rows else 0
        return await self._count(box_id, home, purged, self.options.pending_cap)

    @staticmethod
    def _undelivered_floor(rows: list[Any]) -> tuple[Position, Position]:
        """(purged_through, where the cap counts from): the most advanced
        active cursor (``overflow.send_floor``; a device further behind
        overflows instead of blocking the box). Acked-but-not-yet-compacted
        rows are delivered, and counting them would make every send to a
        busy box pay for its recent traffic."""
        purged = int(rows[0]["purged_through"] or 0) if rows else 0
        cursors = [int(r["cursor"] or 0) for r in _active(rows)]
        return purged, overflow.send_floor(cursors, purged)

    async def _known(self, box_id: uuid.UUID, home: str, message_id: uuid.UUID) -> Position | None:
        """Where an earlier attempt queued (or is queueing) this message id."""
        rows = await self._run_home(self._cql.id_get, (box_id, message_id), Op.QUEUE, home)
        return int(rows[0]["position"]) if rows and rows[0]["position"] is not None else None

    async def _row_exists(
        self, box_id: uuid.UUID, home: str, position: Position, message_id: uuid.UUID
    ) -> bool:
        rows = await self._run_home(
            self._cql.message_exists,
            (box_id, bucket_of(position), position, message_id),
            Op.QUEUE,
            home,
        )
        return bool(rows)

    def _expires_at(self, position: Position, message: NewMessage) -> float:
        """When the row at ``position`` stops being handed out."""
        return time_of(position) + message.lifetime(self.options.message_ttl)

    def _row_ttl(self, message: NewMessage) -> int:
        """``USING TTL`` of a message row: its lifetime, rounded up plus the
        second Cassandra's whole-second expiry can lose
        (``plumbing.ttl_covering``), never above message_ttl. The row
        outlives ``expires_at`` by at most two seconds and reads filter on
        the column, so the cut is exact and no message gets a tombstone."""
        lifetime = message.lifetime(self.options.message_ttl)
        if lifetime >= self.options.message_ttl:
            return self._message_ttl()
        return min(self._message_ttl(), ttl_covering(lifetime))

    async def _point(
        self, box_id: uuid.UUID, home: str, message: NewMessage
    ) -> tuple[Position, float]:
        """Issue a fresh position and record it as the id's, before any row.

        Answers (position, the deadline its row must be acknowledged by).
        A plain write: attempts that overlap in time may each point the id
        at their own position and both place a row; those copies lie within
        one budget of each other and Fetch hands out only the first
        (docs/store.md, "Idempotent enqueue without Paxos").
        """
        position = self._positions.issue()
        deadline = time.monotonic() + self._budget()
        # The id keeps the full message_ttl, whatever the message's own
        # lifetime: a retry after a short-lived copy expired is a duplicate.
        await self._run_home(
            self._cql.id_put,
            (
                box_id,
                message.message_id,
                position,
                _ms(self._expires_at(position, message)),
                self._message_ttl(),
            ),
            Op.QUEUE,
            home,
            deadline=deadline,
        )
        return position, deadline

    async def _place(
        self,
        box_id: uuid.UUID,
        home: str,
        message: NewMessage,
        position: Position,
        deadline: float,
    ) -> Position:
        """Write the queue row at the recorded position.

        The row must be acknowledged within the request timeout of its
        position's time (the settle-window argument). If recording the id
        already spent half the budget, the id moves to a fresh position first.
        """
        for _ in range(4):
            if deadline - time.monotonic() >= self._budget() / 2:
                await self._run_home(
                    self._cql.message_insert,
                    (
                        box_id,
                        bucket_of(position),
                        position,
                        message.message_id,
                        message.sender_box,
                        message.sender_device,
                        message.ciphertext,
                        _ms(self._expires_at(position, message)),
                        self._row_ttl(message),
                    ),
                    Op.QUEUE,
                    home,
                    deadline=deadline,
                )
                return position
            position, deadline = await self._point(box_id, home, message)
        raise StoreUnavailable("store: too slow to place the message in time", applied=False)

    async def _enqueue_retry(
        self,
        box_id: uuid.UUID,
        home: str,
        message: NewMessage,
        known: Position,
        purged: Position,
    ) -> Enqueued:
        """An earlier attempt recorded this message id at ``known``."""
        if known <= max(purged, self._horizon()):
            return Enqueued(known, duplicate=True)  # delivered and compacted, or expired
        if await self._row_exists(box_id, home, known, message.message_id):
            return Enqueued(known, duplicate=True)
        if await self._copy_expired(box_id, home, message.message_id):
            return Enqueued(known, duplicate=True)  # a short-lived copy, gone by its TTL
        # The row is missing: the earlier attempt is still writing, or died
        # between recording the id and writing the row. Give it the rest of
        # its budget; after that its row can no longer be acknowledged.
        age = max(0.0, time_of(self._positions.now()) - time_of(known))
        wait_until = time.monotonic() + max(0.0, self._budget() - age)
        while time.monotonic() < wait_until:
            await asyncio.sleep(POLL)
            if await self._row_exists(box_id, home, known, message.message_id):
                return Enqueued(known, duplicate=True)
        if await self._copy_expired(box_id, home, message.message_id):
            # Its writer died, and it would not be handed out any more anyway.
            return Enqueued(known, duplicate=True)
        position, deadline = await self._point(box_id, home, message)
        return Enqueued(await self._place(box_id, home, message, position, deadline), False)

    async def _copy_expired(self, box_id: uuid.UUID, home: str, message_id: uuid.UUID) -> bool:
        """Whether the id's recorded copy is past its ``expires_at`` (an id
        recorded before schema 11 has none: its copy lives message_ttl, which
        the horizon check covers)."""
        rows = await self._run_home(self._cql.id_get, (box_id, message_id), Op.QUEUE, home)
        expires_ms = rows[0]["expires_at_ms"] if rows else None
        return expires_ms is not None and expires_ms <= _ms(self.options.clock())

    async def _pending_view(
        self, box_id: uuid.UUID, home: str, message_id: uuid.UUID
    ) -> tuple[str, list[Any], Position | None, int | None]:
        """The reads an enqueue needs, side by side (one round trip in
        sequence): the box view (the home fence, cursors, purge mark), the
        message id's record and, unless the box's estimate will do
        (``PendingEstimates``), a count of its queued rows from the floor of
        the last count: a lower floor only counts more, so a count from it that
        reaches the cap is redone from the fresh floor here."""
        cap = self.options.pending_cap
        need_count = self._pending.usable(box_id, cap) is None
        floor = self._pending.floor(box_id)
        # Without any earlier count there is no floor to count from (from 0
        # a count would read a month of day buckets): count after the view.
        early = need_count and floor > 0
        (fresh_home, rows), known, counted = await asyncio.gather(
            self._view(box_id),
            self._known(box_id, home, message_id),
            self._count(box_id, home, floor, cap) if early else _nothing(),
        )
        if fresh_home != home:  # the fence moved the box: ask its new home
            known = await self._known(box_id, fresh_home, message_id)
            early = False
        fresh_floor = self._undelivered_floor(rows)[1]
        # The floor is the most advanced cursor, which moves back when that
        # device is revoked: a count or estimate from above it undercounts.
        moved_back = fresh_floor < floor
        stale = early and counted is not None and (counted >= cap or moved_back)
        if known is None and (moved_back or (need_count and (not early or stale))):
            # No count yet, or one from an old floor that reached the cap:
            # count from the fresh floor before anything is refused.
            counted = await self._count(box_id, fresh_home, fresh_floor, cap)
        return fresh_home, rows, known, counted

    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        # Attempts of one id in this process queue here, so they never race
        # each other; only attempts in different processes can overlap.
        async with self._locks.hold(("enqueue", box_id, message.message_id)):
            home = await self.home_of(box_id) or self._settings.local_dc
            home, rows, known, counted = await self._pending_view(box_id, home, message.message_id)
            purged, floor = self._undelivered_floor(rows)
            # A retry is answered before the cap: the message is already queued.
            if known is not None:
                return await self._enqueue_retry(box_id, home, message, known, purged)
            cap = self.options.pending_cap
            if counted is not None:
                self._pending.counted(box_id, counted, floor)
                if counted >= cap:
                    raise PendingCapExceeded(f"box holds {cap} undelivered messages")
            position, deadline = await self._point(box_id, home, message)
            placed = await self._place(box_id, home, message, position, deadline)
            self._pending.queued(box_id)
            return Enqueued(placed, False)

    async def _read(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position, want: int
    ) -> list[StoredMessage]:
        """Up to ``want`` messages in (lower, upper], bucket by bucket."""
        out: list[StoredMessage] = []
        for bucket in range(bucket_of(lower + 1), bucket_of(upper) + 1):
            if len(out) >= want:
                break
            rows = await self._run_home(
                self._cql.message_range,
                (box_id, bucket, lower, upper, min(want - len(out), MAX_LIMIT)),
                Op.QUEUE,
                home,
            )
            for r in rows:
                out.append(
                    StoredMessage(
                        position=r["position"],
                        message_id=r["message_id"],
                        sender_box=r["sender_box"],
                        sender_device=r["sender_device"],
                        received_at=time_of(r["position"]),
                        ciphertext=r["ciphertext"] or b"",
                        expires_at=self._row_expiry(r),
                    )
                )
        return out

    def _row_expiry(self, row: dict[str, Any]) -> float:
        """A row's ``expires_at``; rows written before schema 11 have no
        column and live message_ttl from their position."""
        if row["expires_at_ms"] is None:
            return time_of(row["position"]) + self.options.message_ttl
        return float(row["expires_at_ms"]) / 1000.0

    async def _queue_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> tuple[str, Any]:
        """(home, the active device's row read in the home DC) or NotFound."""
        home, rows = await self._view(box_id, device_id)
        row = rows[0] if rows and rows[0]["device_id"] is not None else None
        if row is None or row["state"] != DeviceState.ACTIVE:
            raise NotFound("no such device")
        return home, row

    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        # Taken before any read: a message this page's read passes over
        # before it lands was issued after now less T and the skew, so an ack
        # through at most here keeps it above the next re-read floor
        # (docs/store.md, "Long sweeps").
        ack_limit = self._positions.head()
        home, row = await self._queue_device(box_id, device_id)
        cursor, gap = int(row["cursor"] or 0), recorded_gap(row)
        page = await self._page(box_id, home, row, cursor, gap, after, limit, ack_limit)
        limit = max(0, limit)
        # Over the cap only if the page came back full, or asked for more
        # than the cap (a short page of at most the cap rows says it is not).
        if not overflow.from_floor(after, cursor) or (
            limit <= self.options.pending_cap and not page.more
        ):
            return page
        cap = self.options.pending_cap
        newest = await self._newest(box_id, home, cursor, cap + 1)
        if len(newest) <= cap:
            return page  # within the cap: the only extra read of a full page
        # Trimming needs the box's most advanced cursor: the whole view.
        home, rows = await self._view(box_id)
        front = self._undelivered_floor(rows)[1] - self.settle_window
        mine = {device_id: (cursor, gap)}
        dropped, moved = await self._trim(box_id, home, mine, front, newest)
        if not moved:
            return page
        trimmed = {**row, "cursor": moved[device_id], "gap_through": moved[device_id]}
        new_gap = overflow.widened(gap, cursor, moved[device_id], dropped)
        page = await self._page(
            box_id, home, trimmed, moved[device_id], new_gap, after, limit, ack_limit
        )
        return dataclasses.replace(page, dropped=dropped)

    async def _page(
        self,
        box_id: uuid.UUID,
        home: str,
        row: Any,
        cursor: Position,
        gap: Gap | None,
        after: Position,
        limit: int,
        ack_limit: Position,
    ) -> Page:
        """One page of ``fetch`` for the device row read (its cursor and gap
        given, as a trim may just have moved them; ``ack_limit`` taken before
        the first read of the fetch)."""
        start = int(row["start_position"] or 0)
        purged = int(row["purged_through"] or 0)
        reread = cursor - self.settle_window
        recovery = int(row["recovery_floor"] or 0)
        if recovery > 0:
            # The box's home moved and the old home may still hold messages
            # acknowledged there and not replicated yet: re-read from the
            # recovery floor until `reconcile` has copied them over.
            reread = min(reread, recovery)
        floor = max(reread, start, purged, self._horizon(), dropped_floor(row))
        lower = max(after, floor)
        limit = max(0, limit)
        # Copies of one id from overlapping Send attempts lie within a
        # settle window of each other; only the first is handed out. When
        # the page starts above the window's floor, the ids just below it
        # are read too, so a copy is dropped even on a later page.
        # Like every queue read, it stops at the read bound: nothing lies
        # above it, and a page token past it (any uint64) must not reach CQL.
        upper = self._upper()
        below, ids_upper = max(floor, lower - self.settle_window), min(lower, upper)
        found, earlier = await asyncio.gather(
            self._read(box_id, home, lower, upper, limit + 1),
            self._ids_in(box_id, home, below, ids_upper) if below < ids_upper else _nothing(),
        )
        seen: set[uuid.UUID] = earlier or set()
        kept = []
        now = self.options.clock()
        for m in found:
            if m.message_id not in seen:
                seen.add(m.message_id)
                # A short-lived row may outlive its expires_at by its TTL's
                # rounding: dropped here like a later copy.
                if m.expires_at > now:
                    kept.append(m)
        shown = overflow.reported(gap, after)
        if len(kept) > limit or len(found) <= limit:
            return Page(
                messages=kept[:limit],
                more=len(kept) > limit,
                cursor=cursor,
                gap=shown,
                ack_limit=ack_limit,
            )
        # Copies were dropped from a full read: every row up to the last one
        # read was either returned or dropped, so the next page starts there.
        return Page(
            messages=kept,
            more=True,
            cursor=cursor,
            read_through=found[-1].position,
            gap=shown,
            ack_limit=ack_limit,
        )

    async def _ids_in(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position
    ) -> set[uuid.UUID]:
        """Message ids queued in (lower, upper] (no ciphertext read out)."""
        ids: set[uuid.UUID] = set()
        for bucket in range(bucket_of(lower + 1), bucket_of(upper) + 1):
            rows = await self._run_home(
                self._cql.message_ids_range, (box_id, bucket, lower, upper), Op.QUEUE, home
            )
            ids.update(r["message_id"] for r in rows)
        return ids

    async def _top(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position
    ) -> Position:
        """The highest queued position in (lower, upper], or 0. Reads down
        from ``upper`` and stops at ``lower`` (never into compacted rows)."""
        for bucket in range(bucket_of(upper), bucket_of(lower + 1) - 1, -1):
            rows = await self._run_home(
                self._cql.message_top, (box_id, bucket, lower, upper), Op.QUEUE, home
            )
            if rows:
                return int(rows[0]["position"])
        return 0

    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        home, row = await self._queue_device(box_id, device_id)
        cursor, purged = int(row["cursor"] or 0), int(row["purged_through"] or 0)
        head = self._positions.head()
        target = through
        if through > head:
            # Beyond this clock's head: clamp to the last position issued,
            # which may be a bit ahead of our clock when another writer's
            # runs ahead (or a burst outran the clock).
            # Nothing can be queued above the read bound (a writer further
            # ahead is outside the skew the settle window tolerates).
            ceiling = min(through, self._upper())
            top = await self._top(box_id, home, max(cursor, purged, head), ceiling)
            target = max(head, top)
        # The ack, not the cursor (a trim put it at the gap's end already),
        # says whether the client took the gap in.
        clear = overflow.cleared(recorded_gap(row), target)
        if target <= cursor and not clear:
            return cursor
        target = max(target, cursor)
        await self._run_home(
            self._cql.cursor_set_gap_seen if clear else self._cql.cursor_set,
            (write_timestamp(target), target, box_id, device_id),
            Op.CURSOR,
            home,
        )
        return target

    async def compact(self, box_id: uuid.UUID) -> Compaction:
        home, rows = await self._view(box_id)
        devices = [r for r in rows if r["device_id"] is not None]
        purged = int(rows[0]["purged_through"] or 0) if rows else 0
        if not devices:
            return Compaction(purged_through=purged, removed=0)
        # Devices over the cap are trimmed first, so they no longer hold
        # compaction back (for up to the message TTL).
        cursors = {
            r["device_id"]: (int(r["cursor"] or 0), recorded_gap(r)) for r in _active(devices)
        }
        dropped, moved = await self._trim(
            box_id, home, cursors, self._undelivered_floor(rows)[1] - self.settle_window
        )
        active = [moved.get(d, cursor) for d, (cursor, _) in cursors.items()]
        floor = min(active) if active else self._positions.head()
        threshold = floor - self.settle_window
        recovery = int(rows[0]["recovery_floor"] or 0)
        if recovery > 0:
            # Never delete where a recovering box may still receive rows
            # from its old home (they would be shadowed by the tombstone).
            threshold = min(threshold, recovery)
        if threshold <= purged:
            return Compaction(purged_through=purged, removed=0, dropped=dropped)
        # Lowest position that can hold a row: nothing is older than the
        # box's first device (less a settle window for skewed writers).
        oldest = min(int(r["start_position"] or 0) for r in devices) - self.settle_window
        first = max(purged, self._horizon(), oldest, 0)
        last = bucket_of(threshold)
        for bucket in range(bucket_of(first), last):
            await self._run_home(self._cql.messages_delete_bucket, (box_id, bucket), Op.QUEUE, home)
        await self._run_home(
            self._cql.messages_delete_below, (box_id, last, threshold), Op.QUEUE, home
        )
        await self._run_home(
            self._cql.purged_set, (write_timestamp(threshold), threshold, box_id), Op.CURSOR, home
        )
        return Compaction(purged_through=threshold, removed=None, dropped=dropped)


__all__ = ["CassandraQueue"]
