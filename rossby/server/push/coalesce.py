"""Coalescing: at most one wake-up per sleeping device per interval.

A burst of messages to a sleeping phone must wake it once, not once per
message (push services throttle, and every wake-up costs battery). So a
device woken less than ``interval`` ago is not woken again at once; it is
*owed* one wake-up at the end of the interval instead, which the
dispatcher sends if the device is still asleep then. Without that
trailing wake-up, a message that arrived just after the device fetched
(woken by the previous one) would wait until the next message or until
the user opens the app.

A device that opens a stream is awake: its state is forgotten
(``awake``), so after the stream drops, its next message wakes it at once.
The hub calls ``awake`` for streams opened in this process; the dispatcher
for devices it finds in another process's presence rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Final

from cachetools import TTLCache

DeviceKey = tuple[uuid.UUID, uuid.UUID]

#: Devices one process remembers at most (least recent go first: forgetting
#: one costs at most one extra wake-up).
MAX_DEVICES: Final = 100_000


class Coalescer:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        #: device -> when it was last woken (monotonic); gone after ``interval``.
        self._woken: TTLCache[DeviceKey, float] = TTLCache(MAX_DEVICES, interval, timer=clock)
        #: devices owed a trailing wake-up (the dispatcher has one planned).
        self._owed: set[DeviceKey] = set()

    def admit(self, key: DeviceKey) -> float | None:
        """0.0: wake the device now (recorded as woken). A positive number:
        not now; the device is owed a wake-up in that many seconds and the
        caller should plan one. None: not now, one is already planned."""
        last = self._woken.get(key)
        if last is None:
            self._woken[key] = self._clock()
            return 0.0
        if key in self._owed:
            return None
        if len(self._owed) >= MAX_DEVICES:
            return None
        self._owed.add(key)
        return max(0.001, last + self.interval - self._clock())

    def settle(self, key: DeviceKey) -> bool:
        """The planned wake-up is due: True if the device is still owed it
        (it did not wake meanwhile); it is then recorded as woken now."""
        if key not in self._owed:
            return False
        self._owed.discard(key)
        self._woken[key] = self._clock()
        return True

    def awake(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """The device opened a stream: forget it, so that it is woken at once
        when it next sleeps with a message waiting."""
        key = (box_id, device_id)
        self._woken.pop(key, None)
        self._owed.discard(key)


__all__ = ["Coalescer", "DeviceKey"]
