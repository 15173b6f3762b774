"""Per-box estimates of queued rows, so most Sends skip the pending count.

The pending cap needs the number of messages the box's most advanced device
has not acked (``rossby.store.overflow``), and Cassandra can only count by
reading them (a ``COUNT`` over the rows above that cursor). Doing that on
every Send made each one pay for the box's whole backlog. Instead a count
is kept for ``ttl`` seconds together with what this process queued since;
while that estimate is below half the cap, the Send needs no count. Near
the cap, or once the estimate is old, the Send counts again, so the cap is
still enforced exactly by one process and overshot by others only by what
they queue into a half-empty box within ``ttl`` (docs/store.md, "Pending
cap").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds a count is trusted (with this process's own sends added). Beyond it
#: other processes may have queued into the box unseen; below half the cap
#: that takes them cap/2 messages in this time to matter.
RECOUNT_AFTER = 5.0
MAX_BOXES = 100_000


@dataclass(slots=True)
class _Estimate:
    count: int
    floor: int  # the position counted from (the box's most advanced cursor then)
    at: float  # monotonic
    since: int = 0  # queued by this process after the count


class PendingEstimates:
    def __init__(
        self, ttl: float = RECOUNT_AFTER, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._boxes: dict[uuid.UUID, _Estimate] = {}

    def usable(self, box_id: uuid.UUID, cap: int) -> int | None:
        """The estimate, if it is fresh and below half the cap; else None
        (the caller counts)."""
        e = self._boxes.get(box_id)
        if e is None or self.clock() - e.at > self.ttl:
            return None
        estimate = e.count + e.since
        return estimate if estimate < cap // 2 else None

    def floor(self, box_id: uuid.UUID) -> int:
        """Where the last count started (the most advanced cursor then), 0
        when never counted. It moves back when that device is revoked: the
        caller recounts when its fresh view shows a lower floor."""
        e = self._boxes.get(box_id)
        return e.floor if e is not None else 0

    def counted(self, box_id: uuid.UUID, count: int, floor: int) -> None:
        if box_id not in self._boxes and len(self._boxes) >= MAX_BOXES:
            self._boxes.pop(next(iter(self._boxes)))
        self._boxes[box_id] = _Estimate(count, floor, self.clock())

    def queued(self, box_id: uuid.UUID) -> None:
        e = self._boxes.get(box_id)
        if e is not None:
            e.since += 1


__all__ = ["PendingEstimates"]
