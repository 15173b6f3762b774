"""When an Ack compacts its box: at most once per ``compact_interval`` per box.

Why: compaction (``Store.compact``) reads the box's devices and range-deletes
what every active device has acked, so running it after every Ack costs a
busy box a view read and several deletes per Ack (three more statements in
sequence on Cassandra, one more SQLite transaction). What it removes is
already acked: nothing depends on it happening at once, only on it
happening soon: rows below every cursor are never handed out again; they
take space, and SQLite's pending cap counts them until they go (at most
one interval's worth).

The rule, per box and per process:

* The first Ack of a box in ``interval`` compacts before it answers, as
  every Ack did before (a lone device's Ack still leaves its box compact).
* Acks within ``interval`` of that compaction answer at once; one trailing
  compaction runs in the background when the interval is over, so the last
  Ack of a burst is compacted within ``interval`` too.
* A failed compaction (store unavailable) is only logged: the ack itself is
  durable, and a later Ack compacts.

``interval = 0`` compacts on every Ack. Other processes keep their own
rhythm; two processes compacting one box is harmless (idempotent deletes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

from cachetools import TTLCache

from rossby import errors
from rossby.logging import get_logger
from rossby.store.base import Store

log = get_logger(__name__)

#: Boxes whose last compaction time one process remembers at most.
MAX_BOXES = 100_000


class Compactor:
    def __init__(
        self, store: Store, interval: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        #: box -> when its last compaction began (monotonic).
        self._last: TTLCache[uuid.UUID, float] = TTLCache(
            MAX_BOXES, max(interval, 0.001), timer=clock
        )
        self._trailing: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._closed = False

    async def acked(self, box_id: uuid.UUID) -> None:
        """An Ack of ``box_id`` moved a cursor: compact now, or soon."""
        if self.interval <= 0:
            await self._compact(box_id)
            return
        last = self._last.get(box_id)
        now = self.clock()
        if last is None or now - last >= self.interval:
            self._last[box_id] = now
            await self._compact(box_id)
            return
        if box_id not in self._trailing and not self._closed:
            delay = last + self.interval - now
            self._trailing[box_id] = asyncio.create_task(
                self._later(box_id, delay), name="rossby-compact"
            )

    async def _later(self, box_id: uuid.UUID, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._last[box_id] = self.clock()
            await self._compact(box_id)
        finally:
            self._trailing.pop(box_id, None)

    async def _compact(self, box_id: uuid.UUID) -> None:
        try:
            await self.store.compact(box_id)
        except errors.Unavailable as exc:
            log.warning("compaction_failed", error=exc.reason)

    async def close(self) -> None:
        """Drop the trailing compactions (later Acks, or expiry, cover them)."""
        self._closed = True
        tasks = list(self._trailing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["Compactor"]
