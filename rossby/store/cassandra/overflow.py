"""Counting a box's queue, and per-device overflow on Cassandra: a mixin of
``CassandraStore`` under ``CassandraQueue``.

The rule is ``rossby.store.overflow``'s; this module reads what it needs (the
``pending_cap + 1`` newest live positions above the lowest cursor trimmed,
positions only, newest bucket first) and writes each trim as one row of the
box partition: the cursor and its gap, ``USING TIMESTAMP`` of the new cursor
(schema 12). Counting costs what it reads: ``_count`` reads every row it
counts, server-side, and the trim's ``missed`` count reads the dropped range
once, when it is dropped (docs/store.md, "Overflow", for what that costs and
how exact it is).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from rossby.replication.consistency import Op
from rossby.store import overflow
from rossby.store.cassandra.positions import bucket_of, write_timestamp
from rossby.store.cassandra.routing import CassandraRouting
from rossby.store.model import Gap, Position

#: More rows than any count stops at (a count of the dropped range).
_NO_CAP = 2**62


def _ms(unix_seconds: float) -> int:
    return math.floor(unix_seconds * 1000)


def recorded_gap(row: Any) -> Gap | None:
    """The gap a device row reports: none once acknowledged (``gap_missed``
    null), nor on rows from before schema 12."""
    if row.get("gap_missed") is None or row.get("gap_through") is None:
        return None
    return Gap(
        missed=int(row["gap_missed"]),
        after=int(row["gap_after"] or 0),
        through=int(row["gap_through"]),
    )


def dropped_floor(row: Any) -> Position:
    """Nothing at or below this is handed out to the device again: the end
    of its last gap, kept after the ack (the settle window re-reads below
    the cursor, and must not bring a dropped message back)."""
    return int(row.get("gap_through") or 0)


class CassandraOverflow(CassandraRouting):
    """``_count`` of queued rows, ``_trim`` of devices over the cap."""

    async def _count(
        self,
        box_id: uuid.UUID,
        home: str,
        floor: Position,
        cap: int,
        upper: Position | None = None,
    ) -> int:
        """Live rows in (max(floor, horizon), upper], counted by the server
        per bucket, stopping once past ``cap``. Reads above ``floor`` only,
        so the cost is the rows actually counted, never compacted ones."""
        lower = max(floor, self._horizon())
        top = self._upper() if upper is None else upper
        now_ms = _ms(self.options.clock())
        total = 0
        for bucket in range(bucket_of(lower + 1), bucket_of(top) + 1):
            rows = await self._run_home(
                self._cql.message_count, (box_id, bucket, lower, top, now_ms), Op.QUEUE, home
            )
            total += int(rows[0]["count"]) if rows else 0
            if total > cap:
                return cap + 1
        return total

    async def _newest(
        self, box_id: uuid.UUID, home: str, floor: Position, want: int
    ) -> list[Position]:
        """Up to ``want`` live positions above ``floor``, newest first,
        reading down from the read bound bucket by bucket."""
        lower, upper = max(floor, self._horizon()), self._upper()
        now_ms = _ms(self.options.clock())
        out: list[Position] = []
        for bucket in range(bucket_of(upper), bucket_of(lower + 1) - 1, -1):
            if len(out) >= want:
                break
            rows = await self._run_home(
                self._cql.message_newest,
                (box_id, bucket, lower, upper, now_ms, want - len(out)),
                Op.QUEUE,
                home,
            )
            out.extend(int(r["position"]) for r in rows)
        return out

    async def _trim(
        self,
        box_id: uuid.UUID,
        home: str,
        devices: Mapping[uuid.UUID, tuple[Position, Gap | None]],
        front: Position,
        newest: list[Position] | None = None,
    ) -> tuple[int, dict[uuid.UUID, Position]]:
        """Move the cursors of the devices over the cap, never past
        ``front`` (the box's most advanced cursor less the settle window,
        ``overflow.plan``), and record their gaps;
        answer (messages dropped, the new cursors). ``newest``: the newest
        positions above the lowest of their cursors, when the caller read
        them already."""
        if not devices:
            return 0, {}
        cap = self.options.pending_cap
        low = min(cursor for cursor, _ in devices.values())
        if newest is None:
            newest = await self._newest(box_id, home, low, cap + 1)
        moves = overflow.plan({d: c for d, (c, _) in devices.items()}, newest, cap, front)
        dropped = 0
        for device_id, to in moves.items():
            cursor, recorded = devices[device_id]
            missed = await self._count(box_id, home, cursor, _NO_CAP, upper=to)
            gap = overflow.widened(recorded, cursor, to, missed)
            await self._run_home(
                self._cql.cursor_trim,
                (write_timestamp(to), to, gap.missed, gap.after, gap.through, box_id, device_id),
                Op.CURSOR,
                home,
            )
            dropped += missed
        return dropped, moves


__all__ = ["CassandraOverflow", "dropped_floor", "recorded_gap"]
