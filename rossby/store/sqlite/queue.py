"""The message queue on SQLite: a mixin of ``SqliteStore``.

Positions are a dense per-box counter (``queues.head``) bumped inside the
enqueue transaction, so a message is visible exactly when its position is
issued (``settle_window`` is 0, ``ordered_visibility`` holds) and the id
check, the cap and the insert are one step (``exact_enqueue``).

Overflow (``rossby.store.overflow``): the cap counts above the most advanced
active cursor; a device further behind is trimmed in a write transaction
when it fetches from its floor (the common fetch stays a read, and counts
only when its page came back full) and at compaction. The cursor move and its gap
(migration 0010) are one transaction.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from rossby.errors import NotFound
from rossby.store import overflow
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
from rossby.store.sqlite.rows import WorkerCalls, _b, _changes, _row, _rows, _u, _value

#: The largest position SQLite can compare against (signed 64-bit).
_MAX_POSITION = 2**63 - 1


_GAP = "c.gap_missed, c.gap_after, c.gap_through"


def _gap(row: Any) -> Gap | None:
    """The recorded overflow gap of a cursors row (NULL: none)."""
    if row["gap_through"] is None:
        return None
    return Gap(missed=row["gap_missed"], after=row["gap_after"], through=row["gap_through"])


def _active_cursor(conn: sqlite3.Connection, box_id: uuid.UUID, device_id: uuid.UUID) -> Any:
    """The ``cursor``, ``start_position`` and gap of an active device, or ``NotFound``."""
    row = _row(
        conn,
        f"SELECT c.cursor, d.start_position, {_GAP} FROM devices d"
        " JOIN cursors c ON c.box_id = d.box_id AND c.device_id = d.device_id"
        " WHERE d.box_id = ? AND d.device_id = ? AND d.state = ?",
        (_b(box_id), _b(device_id), DeviceState.ACTIVE.value),
    )
    if row is None:
        raise NotFound(f"no active device {device_id} in box {box_id}")
    return row


class SqliteQueue(WorkerCalls):
    """``enqueue``, ``fetch``, ``ack``, ``compact``, ``pending_count``."""

    # -- the queue ---------------------------------------------------------

    def _live_count(
        self, conn: sqlite3.Connection, box_id: bytes, now: float, cap: int, above: Position = 0
    ) -> int:
        """Messages above ``above`` neither compacted (those rows are gone)
        nor expired, stopped at ``cap``. From 0 on the (box_id, expires_at)
        index (expired rows awaiting housekeeping are skipped); from a cursor
        on the primary key's range above it (the unary ``+`` keeps the
        planner off the expiry index, which would walk the rows below the
        cursor first, a laggard's whole backlog)."""
        if above <= 0:
            sql = (
                "SELECT count(*) FROM (SELECT 1 FROM messages"
                " WHERE box_id = ? AND expires_at > ? LIMIT ?)"
            )
            return int(_value(conn, sql, (box_id, now, cap)))
        sql = (
            "SELECT count(*) FROM (SELECT 1 FROM messages"
            " WHERE box_id = ? AND position > ? AND +expires_at > ? LIMIT ?)"
        )
        return int(_value(conn, sql, (box_id, above, now, cap)))

    def _send_floor(self, conn: sqlite3.Connection, box_id: bytes) -> Position:
        """The most advanced active cursor (``overflow.send_floor``)."""
        row = _row(
            conn,
            "SELECT q.purged_through, (SELECT max(c.cursor) FROM cursors c JOIN devices d"
            " ON d.box_id = c.box_id AND d.device_id = c.device_id"
            " WHERE c.box_id = q.box_id AND d.state = ?) AS top FROM queues q WHERE q.box_id = ?",
            (DeviceState.ACTIVE.value, box_id),
        )
        if row is None:
            return 0
        tops = [] if row["top"] is None else [row["top"]]
        return overflow.send_floor(tops, row["purged_through"])

    def _trim(
        self,
        conn: sqlite3.Connection,
        box_id: bytes,
        devices: dict[bytes, tuple[Position, Gap | None]],
        now: float,
    ) -> int:
        """Move the cursors of devices over the cap (``overflow.plan``) and
        record their gaps, in the caller's transaction; answer the messages
        dropped."""
        if not devices:
            return 0
        cap = self.options.pending_cap
        low = min(cursor for cursor, _ in devices.values())
        newest = [
            int(r["position"])
            for r in _rows(
                conn,
                "SELECT position FROM messages WHERE box_id = ? AND position > ?"
                " AND expires_at > ? ORDER BY position DESC LIMIT ?",
                (box_id, low, now, cap + 1),
            )
        ]
        cursors = {uuid.UUID(bytes=d): cursor for d, (cursor, _) in devices.items()}
        dropped = 0
        front = self._send_floor(conn, box_id) - self.settle_window
        for device, to in overflow.plan(cursors, newest, cap, front).items():
            cursor, recorded = devices[device.bytes]
            missed = int(
                _value(
                    conn,
                    "SELECT count(*) FROM messages WHERE box_id = ? AND position > ?"
                    " AND position <= ? AND +expires_at > ?",
                    (box_id, cursor, to, now),
                )
            )
            gap = overflow.widened(recorded, cursor, to, missed)
            conn.execute(
                "UPDATE cursors SET cursor = ?, gap_missed = ?, gap_after = ?, gap_through = ?"
                " WHERE box_id = ? AND device_id = ?",
                (to, gap.missed, gap.after, gap.through, box_id, device.bytes),
            )
            dropped += missed
        return dropped

    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        def body(conn: sqlite3.Connection) -> Enqueued:
            bid = _b(box_id)
            # The duplicate check comes before the cap: a retry of a message
            # that made it in must learn so, even if the box filled since. It
            # reads message_ids, which outlive compaction (migration 0005).
            seen = _row(
                conn,
                "SELECT position FROM message_ids WHERE box_id = ? AND message_id = ?",
                (bid, _b(message.message_id)),
            )
            if seen is not None:
                return Enqueued(position=seen["position"], duplicate=True)
            now = self._now()
            cap = self.options.pending_cap
            # From the most advanced device: one further behind overflows.
            if self._live_count(conn, bid, now, cap, self._send_floor(conn, bid)) >= cap:
                raise PendingCapExceeded(
                    f"box {box_id} already holds {cap} messages its most advanced device"
                    " has not acknowledged",
                    metadata={"pending_cap": str(cap)},
                )
            head = _row(
                conn, "UPDATE queues SET head = head + 1 WHERE box_id = ? RETURNING head", (bid,)
            )
            if head is None:
                raise NotFound(f"no box {box_id}")
            conn.execute(
                "INSERT INTO messages (box_id, position, message_id, sender_box, sender_device,"
                " received_at, expires_at, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bid,
                    head["head"],
                    _b(message.message_id),
                    _b(message.sender_box),
                    _b(message.sender_device),
                    now,
                    now + message.lifetime(self.options.message_ttl),
                    message.ciphertext,
                ),
            )
            # The id outlives a short-lived message: a retry after it
            # disappeared is still a duplicate, never a second copy.
            conn.execute(
                "INSERT INTO message_ids (box_id, message_id, position, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (bid, _b(message.message_id), head["head"], now + self.options.message_ttl),
            )
            return Enqueued(position=head["head"], duplicate=False)

        return await self._write(body)

    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        cap = self.options.pending_cap

        def first(conn: sqlite3.Connection) -> Page | None:
            """The page, or None when the device is over the cap. A short
            page of at most the cap rows says it is not, with no count."""
            page = body(conn)
            if not overflow.from_floor(after, page.cursor) or (limit <= cap and not page.more):
                return page
            over = self._live_count(conn, _b(box_id), self._now(), cap + 1, page.cursor) > cap
            return None if over else page

        def trimming(conn: sqlite3.Connection) -> Page:
            device = _active_cursor(conn, box_id, device_id)
            dropped = 0
            if overflow.from_floor(after, device["cursor"]):
                mine = {_b(device_id): (device["cursor"], _gap(device))}
                dropped = self._trim(conn, _b(box_id), mine, self._now())
            return body(conn, dropped)

        def body(conn: sqlite3.Connection, dropped: int = 0) -> Page:
            device = _active_cursor(conn, box_id, device_id)
            cursor, start = device["cursor"], device["start_position"]
            queue = _row(conn, "SELECT purged_through FROM queues WHERE box_id = ?", (_b(box_id),))
            purged = queue["purged_through"] if queue else 0
            # SQLite integers are signed 64-bit; a client's page token is not.
            lower = min(max(after, cursor - self.settle_window, start, purged), _MAX_POSITION)
            wanted = max(limit, 0)
            rows = _rows(
                conn,
                "SELECT position, message_id, sender_box, sender_device, received_at, ciphertext,"
                " expires_at FROM messages WHERE box_id = ? AND position > ? AND expires_at > ?"
                " ORDER BY position LIMIT ?",
                (_b(box_id), lower, self._now(), wanted + 1),
            )
            messages = [
                StoredMessage(
                    position=row["position"],
                    message_id=_u(row["message_id"]),
                    sender_box=_u(row["sender_box"]),
                    sender_device=_u(row["sender_device"]),
                    received_at=row["received_at"],
                    ciphertext=row["ciphertext"],
                    expires_at=row["expires_at"],
                )
                for row in rows[:wanted]
            ]
            return Page(
                messages=messages,
                more=len(rows) > wanted,
                cursor=cursor,
                gap=overflow.reported(_gap(device), after),
                dropped=dropped,
            )

        # The common fetch is a read; only a device over the cap needs the
        # writer (which checks again: the read was not in its transaction).
        page = await self._read(first)
        return page if page is not None else await self._write(trimming)

    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        def body(conn: sqlite3.Connection) -> Position:
            device = _active_cursor(conn, box_id, device_id)
            head = _value(conn, "SELECT head FROM queues WHERE box_id = ?", (_b(box_id),))
            target = min(through, head)
            # The ack, not the cursor (a trim already put it at the gap's
            # end), says whether the client has taken the gap in.
            clear = overflow.cleared(_gap(device), target)
            row = _row(
                conn,
                "UPDATE cursors SET cursor = max(cursor, ?),"
                " gap_missed = CASE WHEN ? THEN NULL ELSE gap_missed END,"
                " gap_after = CASE WHEN ? THEN NULL ELSE gap_after END,"
                " gap_through = CASE WHEN ? THEN NULL ELSE gap_through END"
                " WHERE box_id = ? AND device_id = ? RETURNING cursor",
                (target, clear, clear, clear, _b(box_id), _b(device_id)),
            )
            return int(row["cursor"])

        return await self._write(body)

    async def compact(self, box_id: uuid.UUID) -> Compaction:
        def body(conn: sqlite3.Connection) -> Compaction:
            bid = _b(box_id)
            queue = _row(conn, "SELECT head, purged_through FROM queues WHERE box_id = ?", (bid,))
            if queue is None:
                return Compaction(purged_through=0, removed=0)
            head, purged = queue["head"], queue["purged_through"]
            # Devices over the cap are trimmed first, so they no longer hold
            # compaction back (for up to the message TTL).
            active = {
                r["device_id"]: (int(r["cursor"]), _gap(r))
                for r in _rows(
                    conn,
                    f"SELECT c.device_id, c.cursor, {_GAP} FROM cursors c JOIN devices d"
                    " ON d.box_id = c.box_id AND d.device_id = c.device_id"
                    " WHERE c.box_id = ? AND d.state = ?",
                    (bid, DeviceState.ACTIVE.value),
                )
            }
            # (The read stops at cap + 1 rows of the primary key.)
            dropped = self._trim(conn, bid, active, self._now())
            low = _value(
                conn,
                "SELECT min(c.cursor) FROM cursors c JOIN devices d"
                " ON d.box_id = c.box_id AND d.device_id = c.device_id"
                " WHERE c.box_id = ? AND d.state = ?",
                (bid, DeviceState.ACTIVE.value),
            )
            # No active device: nobody can read what is queued, and a device
            # added later starts at the head, so all of it may go.
            bound = (head if low is None else low) - self.settle_window
            if bound <= purged:
                return Compaction(purged_through=purged, removed=0, dropped=dropped)
            removed = _changes(
                conn, "DELETE FROM messages WHERE box_id = ? AND position <= ?", (bid, bound)
            )
            conn.execute("UPDATE queues SET purged_through = ? WHERE box_id = ?", (bound, bid))
            return Compaction(purged_through=bound, removed=removed, dropped=dropped)

        return await self._write(body)

    async def pending_count(self, box_id: uuid.UUID) -> int:
        cap = self.options.pending_cap + 1
        return await self._run(lambda conn: self._live_count(conn, _b(box_id), self._now(), cap))


__all__ = ["SqliteQueue"]
