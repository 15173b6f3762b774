"""Short-lived caches of authorization state on the Send and Fetch paths.

Every signed call needs the caller's Hawk key (a device row) and every Send
needs to know that the recipient accepts the sender (profile and sender
rule). Read from the store each time, those are two to four store round
trips in sequence before the one write that matters; cached for a second,
a busy device or box pays them about once a second instead.

The promise the caches keep (docs/security.md, "Authorization caches"): a
revoked device, a rotated key, a new block or a contacts-only switch takes
effect on *every* process and region at most ``ttl`` seconds after the
change is durable, and at once on the process that made it. The bound
holds without any message between processes because an entry expires
``ttl`` after its read *began*: a read that started after the change sees
it, and one that started before expires no later than ``ttl`` after it.

Only answers that grant something are cached. A missing device, a refused
sender or an unknown box is asked again every time, so a device or box
created a moment ago is never refused from a stale miss.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rossby.store import Profile

K = TypeVar("K")
V = TypeVar("V")

#: Entries kept per cache; beyond it the oldest are dropped first. A device
#: key entry is ~200 bytes, so the default costs well under 50 MiB.
MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    read_at: float  # monotonic, when the read began


class ExpiringCache(Generic[K, V]):
    """Granting answers of ``load(key)`` kept until ``ttl`` after the read began.

    ``ttl <= 0`` turns caching off (every call loads). Eviction is by age of
    insertion (a dict keeps insertion order), which needs no bookkeeping on
    a hit; under the TTL the oldest entries are also the first to expire.
    ``changed_at(key)`` (optional) answers when this process last changed
    what ``key`` depends on; entries read before that are stale. It lets a
    whole group of keys (every sender of one box) be invalidated in O(1).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        changed_at: Callable[[K], float] | None = None,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.changed_at = changed_at
        self._entries: dict[K, _Entry[V]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: K, load: Callable[[], Awaitable[V]], grants: Callable[[V], bool]) -> V:
        value, _ = await self.get_entry(key, load, grants)
        return value

    async def get_entry(
        self, key: K, load: Callable[[], Awaitable[V]], grants: Callable[[V], bool]
    ) -> tuple[V, float]:
        """``get``, and when the answer's read began (``clock`` time): who
        keeps acting on the answer (an open stream) may do so until
        ``read_at + ttl`` and no longer, the bound the cache itself keeps."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None:
            fresh = entry.read_at + self.ttl > now
            if fresh and (self.changed_at is None or self.changed_at(key) < entry.read_at):
                self.hits += 1
                return entry.value, entry.read_at
            del self._entries[key]
        self.misses += 1
        value = await load()
        newer = self._entries.get(key)
        if newer is not None and newer.read_at > now:
            return value, now  # ``put`` while this read was in flight: keep the newer
        if self.ttl > 0 and grants(value):
            self._store(key, _Entry(value, now))
        return value, now

    def peek(self, key: K) -> V | None:
        """The fresh answer for ``key`` without loading it (None: absent or
        stale), for a hot path that would otherwise start a task to ask."""
        entry = self._entries.get(key)
        if entry is None or entry.read_at + self.ttl <= self.clock():
            return None
        if self.changed_at is not None and self.changed_at(key) >= entry.read_at:
            return None
        self.hits += 1
        return entry.value

    def put(self, key: K, value: V) -> None:
        """An answer this process just learned without a ``load`` (the result
        of its own write); a load in flight meanwhile does not replace it."""
        if self.ttl > 0:
            self._entries.pop(key, None)
            self._store(key, _Entry(value, self.clock()))

    def _store(self, key: K, entry: _Entry[V]) -> None:
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = entry

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)


DeviceKey = tuple[uuid.UUID, uuid.UUID]  # (box id, device id)


@dataclass(frozen=True, slots=True)
class RecipientPolicy:
    """A box as the Send path sees it: its profile (None: no such box) and
    whether it holds any sender rule."""

    profile: Profile | None
    has_rules: bool


class AuthCache:
    """The two caches the server keeps, and the invalidations this process
    applies at once when it makes the change itself."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        #: Devices and boxes this process changed, and when (see ``_mark``).
        self._devices_changed: dict[DeviceKey, float] = {}
        self._rules_changed: dict[uuid.UUID, float] = {}
        #: (box, device) -> the active device's Hawk key.
        self.hawk_keys: ExpiringCache[DeviceKey, bytes | None] = ExpiringCache(
            ttl, clock=clock, changed_at=lambda key: self._devices_changed.get(key, -1.0)
        )
        #: (recipient box, sender box) -> may the sender queue messages there?
        self.deliverable: ExpiringCache[tuple[uuid.UUID, uuid.UUID], bool] = ExpiringCache(
            ttl, clock=clock, changed_at=lambda key: self._rules_changed.get(key[0], -1.0)
        )
        #: recipient box -> what decides for *every* sender when it holds no
        #: sender rules (most boxes): its profile. A pair is then decided
        #: without a read of its own, which matters because senders of a box
        #: are many and each pair repeats rarely.
        self.recipients: ExpiringCache[uuid.UUID, RecipientPolicy] = ExpiringCache(
            ttl, clock=clock, changed_at=lambda key: self._rules_changed.get(key, -1.0)
        )

    def _mark(self, changed: dict[Any, float], key: Any) -> None:
        """Record a change by this process. A mark (rather than deleting the
        entry) also defeats a read that began before the change and lands
        after it. Marks older than ``ttl`` can no longer invalidate anything
        and are pruned when the table grows."""
        now = self.clock()
        if len(changed) >= MAX_ENTRIES:
            horizon = now - self.ttl
            for old in [k for k, t in changed.items() if t <= horizon]:
                del changed[old]
        changed[key] = now

    def device_changed(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """A device was revoked or its keys rotated (``Accounts`` then tells
        the open streams: the cache knows nothing beyond itself)."""
        self._mark(self._devices_changed, (box_id, device_id))

    def box_rules_changed(self, box_id: uuid.UUID) -> None:
        """The box's profile (accept_from) or one of its sender rules changed."""
        self._mark(self._rules_changed, box_id)


__all__ = ["AuthCache", "ExpiringCache", "RecipientPolicy"]
