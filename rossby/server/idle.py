"""Idle devices: the warning in Fetch and the server's own unlink.

A device that made no signed call for ``device_idle_days`` is unlinked by
the server (docs/security.md, "Idle devices"): an unsigned IDLE_UNLINK
key-log entry, then everything a revocation does (``Accounts.idle_unlink``).
For ``device_idle_warning_days`` before that, the box's *other* devices
see it in Fetch's ``idle_devices``.

There is no sweep over all devices (a full-table scan on Cassandra).
Unlinks happen lazily, on paths that read the box's device list anyway:
RequestKey (a correspondent about to encrypt to the box: the unlink lands
before the answer, so it never lists a device past its deadline) and the
Fetch warning check of the box's own devices (in the background, from the
cached device list). A box that nobody looks up and no device of which
fetches keeps its idle device, and costs nothing for it: its queue rows
expire with the message TTL.

The rule (``IdleRule``), the same on every process:

* a device's clock is its ``last_seen`` (``rossby.server.activity``); a
  device from before ``last_seen`` existed has none, counts as seen now and
  is recorded so (its clock starts the first time the server looks);
* the box's most recently seen device (ties: the larger id) is never
  unlinked: a box is never emptied, and a box whose devices all went quiet
  keeps the one used last, like Signal keeps the primary;
* every other device is unlinked once ``last_seen + idle`` has passed, and
  warned about from ``warning`` before that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from rossby import errors
from rossby.logging import get_logger
from rossby.store import Device, Store
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

DAY = 86400.0
#: Boxes whose device list one process keeps for the Fetch warning check.
MAX_BOXES = 100_000
#: Seconds a box's device list is reused for the warning check: a warning
#: about a device that came back through another process lingers this long.
VIEW_TTL = 3600.0

#: ``unlink(box id, device, rule)``: true when this call (or a concurrent
#: one) unlinked it (``Accounts.idle_unlink``).
Unlink = Callable[[uuid.UUID, Device, "IdleRule"], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class IdleRule:
    """When a device is idle; pure, so every process decides alike."""

    idle_seconds: float  # 0: never
    warning_seconds: float  # 0: no warning

    @classmethod
    def from_days(cls, idle_days: float, warning_days: float) -> IdleRule:
        return cls(idle_days * DAY, min(warning_days, idle_days) * DAY)

    @property
    def enabled(self) -> bool:
        return self.idle_seconds > 0

    @staticmethod
    def seen(device: Device, now: float) -> float:
        return now if device.last_seen is None else device.last_seen

    def keeper(self, devices: Sequence[Device], now: float) -> uuid.UUID | None:
        if not devices:
            return None
        best = max(devices, key=lambda d: (self.seen(d, now), d.device_id.bytes))
        return best.device_id

    def unlink_at(self, device: Device, now: float) -> float:
        return self.seen(device, now) + self.idle_seconds

    def due(self, devices: Sequence[Device], now: float) -> list[Device]:
        """The devices to unlink now."""
        if not self.enabled or len(devices) < 2:
            return []
        keep = self.keeper(devices, now)
        return [d for d in devices if d.device_id != keep and self.unlink_at(d, now) <= now]

    def warned(self, devices: Sequence[Device], now: float) -> list[Device]:
        """The devices inside their warning window (not yet due)."""
        if not self.enabled or self.warning_seconds <= 0 or len(devices) < 2:
            return []
        keep = self.keeper(devices, now)
        return [
            d
            for d in devices
            if d.device_id != keep
            and self.unlink_at(d, now) - self.warning_seconds <= now < self.unlink_at(d, now)
        ]


def warning_pb(rule: IdleRule, device: Device, now: float) -> rossby_pb2.IdleDeviceWarning:
    return rossby_pb2.IdleDeviceWarning(
        device_id=str(device.device_id),
        device_name=device.name,
        last_seen_ms=int(rule.seen(device, now) * 1000),
        unlink_at_ms=int(rule.unlink_at(device, now) * 1000),
    )


class IdleDevices:
    """The warning check for Fetch and the lazy unlink for RequestKey."""

    def __init__(
        self,
        store: Store,
        rule: IdleRule,
        *,
        clock: Callable[[], float],
        unlink: Unlink,
        start_clock: Callable[[uuid.UUID, uuid.UUID], None],
        view_ttl: float = VIEW_TTL,
    ) -> None:
        self.store = store
        self.rule = rule
        self.clock = clock
        self._unlink = unlink
        #: Records "seen now" for a device without ``last_seen``
        #: (``Activity.seen_device``), once per interval like a call.
        self._start_clock = start_clock
        #: box -> its active devices, for the warning check.
        self._views: TTLCache[uuid.UUID, tuple[Device, ...]] = TTLCache(
            MAX_BOXES, view_ttl, timer=clock
        )
        self._unlinking: dict[tuple[uuid.UUID, uuid.UUID], asyncio.Task[None]] = {}
        self._closed = False

    # -- told by others ------------------------------------------------------

    def device_seen(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """A device's ``last_seen`` moved: the box's view is stale."""
        self._views.pop(box_id, None)

    def devices_changed(self, box_id: uuid.UUID) -> None:
        """A device of the box was added, revoked or unlinked by this process."""
        self._views.pop(box_id, None)

    # -- Fetch ---------------------------------------------------------------

    def cached_warnings(
        self, box_id: uuid.UUID, caller: uuid.UUID
    ) -> list[rossby_pb2.IdleDeviceWarning] | None:
        """The warnings from the cached view, or None on a miss (then the
        caller asks ``warnings`` beside its other reads)."""
        if not self.rule.enabled:
            return []
        view = self._views.get(box_id)
        return None if view is None else self._warnings(box_id, view, caller)

    async def warnings(
        self, box_id: uuid.UUID, caller: uuid.UUID
    ) -> list[rossby_pb2.IdleDeviceWarning]:
        """Fetch's ``idle_devices`` for ``caller``: never the caller itself
        (it is making a call, so it is not idle whatever the store says).
        A store failure answers no warnings: a hint is not worth a Fetch."""
        cached = self.cached_warnings(box_id, caller)
        if cached is not None:
            return cached
        try:
            view = tuple(await self.store.list_devices(box_id))
        except errors.Unavailable as exc:
            log.warning("idle_check_failed", error=exc.reason)
            return []
        self._views[box_id] = view
        return self._warnings(box_id, view, caller)

    def _warnings(
        self, box_id: uuid.UUID, view: Sequence[Device], caller: uuid.UUID
    ) -> list[rossby_pb2.IdleDeviceWarning]:
        now = self.clock()
        self._start_clocks(box_id, view)
        for device in self.rule.due(view, now):
            self._unlink_later(box_id, device)
        return [
            warning_pb(self.rule, d, now)
            for d in self.rule.warned(view, now)
            if d.device_id != caller
        ]

    def _start_clocks(self, box_id: uuid.UUID, devices: Sequence[Device]) -> None:
        for d in devices:
            if d.last_seen is None:
                self._start_clock(box_id, d.device_id)

    def _unlink_later(self, box_id: uuid.UUID, device: Device) -> None:
        key = (box_id, device.device_id)
        if key in self._unlinking or self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._unlink_logged(box_id, device), name="rossby-idle-unlink"
        )
        self._unlinking[key] = task
        task.add_done_callback(lambda _: self._unlinking.pop(key, None))

    async def _unlink_logged(self, box_id: uuid.UUID, device: Device) -> None:
        try:
            await self._unlink(box_id, device, self.rule)
        except errors.Unavailable as exc:
            log.warning("idle_unlink_failed", error=exc.reason)
        finally:
            self.devices_changed(box_id)

    # -- RequestKey ------------------------------------------------------------

    async def resolve(self, box_id: uuid.UUID, devices: list[Device]) -> list[Device] | None:
        """Unlink what is due among ``devices`` (the box's list, just read)
        before it is handed to a correspondent. None when nothing was due
        (the common case: no store call at all); otherwise the box's
        devices read again, after the unlinks."""
        if not self.rule.enabled:
            return None
        self._start_clocks(box_id, devices)
        due = self.rule.due(devices, self.clock())
        if not due:
            return None
        for device in due:
            await self._unlink(box_id, device, self.rule)
        self.devices_changed(box_id)
        return await self.store.list_devices(box_id)

    async def close(self) -> None:
        """Let unlinks in flight finish: each is a few writes, and one cut
        between its key-log entry and the device change is completed by
        the next look at the box anyway."""
        self._closed = True
        tasks = list(self._unlinking.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["IdleDevices", "IdleRule", "warning_pb"]
