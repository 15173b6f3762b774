"""Recording that a device made a signed call, without costing the call.

Idle-device unlinking (``rossby.server.idle``, docs/security.md "Idle
devices") needs to know when each device was last active, to the day, not
to the millisecond. So a process writes a device's ``last_seen`` at most
once per ``interval`` (``max(1 h, device_idle_days / 45)``: a day at the
default 45 days), remembered in a bounded TTL cache, and the write runs in
a background task: the RPC that triggered it never waits for it, and a
failed write is only logged (the next call after the interval tries again).

The cost on the hot path is one dict lookup per signed call. ``last_seen``
is therefore up to ``interval`` (plus the other processes' own intervals)
old; the idle deadline is 45 days away, so that is noise.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from cachetools import TTLCache

from rossby import errors
from rossby.logging import get_logger
from rossby.store import Store

log = get_logger(__name__)

#: Devices one process remembers having recorded; beyond it, the oldest are
#: forgotten and simply recorded again on their next call.
MAX_DEVICES = 200_000
#: Writes in flight at once; calls beyond it are recorded on a later call.
MAX_IN_FLIGHT = 256
MIN_INTERVAL = 3600.0
DAY = 86400.0
#: What the interval is derived from when idle unlinking is off: recording
#: goes on, so turning it on later does not find every device "idle".
DEFAULT_IDLE_DAYS = 45.0


def record_interval(idle_days: float) -> float:
    """Seconds between two records of one device by one process."""
    days = idle_days if idle_days > 0 else DEFAULT_IDLE_DAYS
    return max(MIN_INTERVAL, days * DAY / 45)


class Activity:
    """``seen(hawk id)`` on every verified call; records at most once per interval."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float,
        clock: Callable[[], float],
        on_recorded: Callable[[uuid.UUID, uuid.UUID], None] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        #: Told after a record landed (``IdleDevices.device_seen``): the box's
        #: cached idle view is stale.
        self.on_recorded = on_recorded
        self._recent: TTLCache[str, bool] = TTLCache(MAX_DEVICES, interval, timer=clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def seen(self, box_id: str, device_id: str) -> None:
        """The device ``<box>.<device>`` (canonical ids) just made a verified call."""
        key = f"{box_id}.{device_id}"
        if key in self._recent or self._closed or len(self._tasks) >= MAX_IN_FLIGHT:
            return
        self._recent[key] = True
        task = asyncio.get_running_loop().create_task(
            self._record(key, uuid.UUID(box_id), uuid.UUID(device_id), self.clock()),
            name="rossby-device-seen",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def seen_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        self.seen(str(box_id), str(device_id))

    async def _record(self, key: str, box_id: uuid.UUID, device_id: uuid.UUID, at: float) -> None:
        try:
            await self.store.record_device_seen(box_id, device_id, at)
        except errors.Unavailable as exc:
            self._recent.pop(key, None)  # the next call tries again
            log.warning("device_seen_failed", error=exc.reason)
            return
        if self.on_recorded is not None:
            self.on_recorded(box_id, device_id)

    async def close(self) -> None:
        """Let the records in flight land (they are few and short)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["Activity", "record_interval"]
