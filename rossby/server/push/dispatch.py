"""The wake-up dispatcher: which devices a queued message wakes, and when.

Send tells the dispatcher ``queued(box_id)`` after a message is queued and
goes on: that call only notes the box and schedules a task, so the Send
answers before any push is attempted, and nothing a push service does (an
error, a hang) can fail or slow a Send.

Off the Send path, per box:

1. The box's push targets: one partition read, cached per process for
   ``push_target_cache_ttl`` (a box without targets, the common case for a
   server without mobile clients, then costs no store read per Send);
   ``SetPushTarget``/``ClearPushTarget`` on this process and a "gone"
   answer drop the cached read at once.
2. Which of those devices sleep: no stream in this process
   (``Liveness.streams_of``) and no presence row of another process, from
   the hub's presence read (``Liveness.presence``, the same cached read the
   real-time fan-out uses; read only when a device with a target has no
   local stream). A device seen streaming is awake for the coalescer.
3. Coalescing (``rossby.server.push.coalesce``): a sleeping device gets a
   wake-up now, or, when it was woken less than ``push_coalesce_seconds``
   ago, one at the end of that interval if it still sleeps then.
4. The wake-up carries ``Store.pending_count`` of the box and the device's
   hint, nothing else (``rossby.server.push.base``).
5. Delivery through the pusher of the target's kind, at most
   ``push_concurrency`` requests in flight; RETRY answers are retried with
   exponential back-off (``push_retry_base`` doubling, with jitter, at
   least the push service's Retry-After) for ``push_retry_attempts``
   attempts, unless the device opens a stream meanwhile; GONE deletes the
   target, but only that registration (``delete_push_target(...,
   registered_at=...)``), so a "gone" for an old subscription never
   removes the one the device has just registered.

Everything waiting is bounded (boxes waiting for step 1, wake-ups in
delivery); past the bounds wake-ups are dropped and counted, never queued
without limit. A wake-up is a hint: dropping one delays a device until its
user opens the app or the next message, and loses no message.

Coalescing and caches are per process: with several processes a device
may get one wake-up per process per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from rossby import errors
from rossby.logging import get_logger
from rossby.server.push.base import Pusher, PushOutcome, PushResult, WakeUp
from rossby.server.push.coalesce import Coalescer
from rossby.server.push.metrics import PushMetrics
from rossby.store import Store
from rossby.store.base import Presence
from rossby.store.pushtargets import PushKind, PushTarget

log = get_logger(__name__)

#: Boxes waiting for their targets to be read, at most.
MAX_WAITING_BOXES = 10_000
#: Wake-ups being delivered or waiting for a retry, at most.
MAX_DELIVERIES = 10_000
#: Target reads (and presence reads) in flight at once.
READ_CONCURRENCY = 32
#: Boxes whose targets one process caches at most.
TARGET_CACHE_BOXES = 100_000
#: A retry never waits longer than this, whatever the back-off says.
MAX_RETRY_DELAY = 300.0
#: Seconds ``close`` waits for deliveries in flight.
CLOSE_TIMEOUT = 2.0


class Liveness(Protocol):
    """Who streams where: the real-time hub (``rossby.server.realtime.hub``)."""

    server_id: str

    def streams_of(self, box_id: uuid.UUID, device_id: uuid.UUID) -> int: ...

    async def presence(self, box_id: uuid.UUID) -> list[Presence]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    base: float

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``: the back-off with jitter
        (so wake-ups refused together do not return together), at least
        the push service's Retry-After."""
        backoff = self.base * 2 ** (attempt - 1)
        jittered = backoff * random.uniform(0.5, 1.0)
        return float(min(MAX_RETRY_DELAY, max(jittered, retry_after or 0.0)))


class Dispatcher:
    def __init__(
        self,
        store: Store,
        pushers: Mapping[PushKind, Pusher],
        liveness: Liveness,
        coalescer: Coalescer,
        metrics: PushMetrics,
        *,
        retry: RetryPolicy,
        concurrency: int,
        target_cache_ttl: float,
    ) -> None:
        self.store = store
        self.pushers = dict(pushers)
        self.liveness = liveness
        self.coalescer = coalescer
        self.metrics = metrics
        self.retry = retry
        self.target_cache_ttl = target_cache_ttl
        self._targets_cache: TTLCache[uuid.UUID, tuple[PushTarget, ...]] = TTLCache(
            TARGET_CACHE_BOXES, max(target_cache_ttl, 0.001), timer=time.monotonic
        )
        self._waiting: set[uuid.UUID] = set()
        self._read_slots = asyncio.Semaphore(READ_CONCURRENCY)
        self._push_slots = asyncio.Semaphore(concurrency)
        self._deliveries = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[tuple[uuid.UUID, uuid.UUID], asyncio.TimerHandle] = {}
        self._closed = False

    # -- from the Send path (synchronous: schedules, never awaits) ----------

    def queued(self, box_id: uuid.UUID) -> None:
        """A new message was queued for ``box_id``."""
        if self._closed or not self.pushers or box_id in self._waiting:
            return  # a task for the box has not started yet: it sees this one too
        if len(self._waiting) >= MAX_WAITING_BOXES:
            self.metrics.dropped.labels("queue_full").inc()
            return
        self._waiting.add(box_id)
        self._spawn(self._box(box_id))

    def targets_changed(self, box_id: uuid.UUID) -> None:
        """The box's targets changed (set, cleared, removed): read them anew."""
        self._targets_cache.pop(box_id, None)

    # -- per box -------------------------------------------------------------

    async def _targets(self, box_id: uuid.UUID) -> tuple[PushTarget, ...]:
        if self.target_cache_ttl > 0:
            hit = self._targets_cache.get(box_id)
            if hit is not None:
                return hit
        targets = tuple(await self.store.list_push_targets(box_id))
        if self.target_cache_ttl > 0:
            self._targets_cache[box_id] = targets
        return targets

    async def _asleep(self, box_id: uuid.UUID, targets: Sequence[PushTarget]) -> list[PushTarget]:
        """The targets whose device has no stream anywhere; the others are
        told to the coalescer as awake."""
        sleeping: list[PushTarget] = []
        for t in targets:
            if self.liveness.streams_of(box_id, t.device_id) > 0:
                self.coalescer.awake(box_id, t.device_id)
                self.metrics.awake.inc()
            else:
                sleeping.append(t)
        if not sleeping:
            return []
        try:
            rows = await self.liveness.presence(box_id)
        except errors.RossbyError as exc:
            # Waking a device that streams elsewhere costs a wake-up; not
            # waking a sleeping one costs a delay: wake.
            log.info("push_presence_failed", reason=exc.reason)
            rows = []
        elsewhere = {r.device_id for r in rows if r.server_id != self.liveness.server_id}
        awake = [t for t in sleeping if t.device_id in elsewhere]
        for t in awake:
            self.coalescer.awake(box_id, t.device_id)
            self.metrics.awake.inc()
        return [t for t in sleeping if t.device_id not in elsewhere]

    async def _box(self, box_id: uuid.UUID) -> None:
        async with self._read_slots:
            self._waiting.discard(box_id)
            try:
                targets = await self._targets(box_id)
                if not targets:
                    return
                asleep = await self._asleep(box_id, targets)
            except errors.RossbyError as exc:
                self.metrics.dropped.labels("store_error").inc()
                log.info("push_targets_read_failed", reason=exc.reason)
                return
        due: list[PushTarget] = []
        for t in asleep:
            wait = self.coalescer.admit((box_id, t.device_id))
            if wait == 0:
                due.append(t)
                continue
            self.metrics.coalesced.inc()
            if wait is not None:
                self._plan_trailing(box_id, t.device_id, wait)
        if due:
            await self._wake(box_id, due)

    async def _wake(self, box_id: uuid.UUID, due: Sequence[PushTarget]) -> None:
        try:
            pending = await self.store.pending_count(box_id)
        except errors.RossbyError as exc:
            # The count is a courtesy; the wake-up is what matters.
            log.info("push_pending_count_failed", reason=exc.reason)
            pending = 0
        for t in due:
            if self._deliveries >= MAX_DELIVERIES:
                self.metrics.dropped.labels("queue_full").inc()
                continue
            self._deliveries += 1
            self._spawn(self._deliver(t, WakeUp(pending=pending, hint=t.hint)))

    # -- the trailing wake-up of a coalesced device ---------------------------

    def _plan_trailing(self, box_id: uuid.UUID, device_id: uuid.UUID, wait: float) -> None:
        if self._closed:
            return
        key = (box_id, device_id)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(wait, self._trailing_due, box_id, device_id)

    def _trailing_due(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        self._timers.pop((box_id, device_id), None)
        if not self._closed:
            self._spawn(self._trailing(box_id, device_id))

    async def _trailing(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        key = (box_id, device_id)
        try:
            async with self._read_slots:
                targets = [t for t in await self._targets(box_id) if t.device_id == device_id]
                asleep = await self._asleep(box_id, targets) if targets else []
        except errors.RossbyError as exc:
            self.metrics.dropped.labels("store_error").inc()
            log.info("push_targets_read_failed", reason=exc.reason)
            asleep = []
        if asleep and self.coalescer.settle(key):
            await self._wake(box_id, asleep)
        else:
            self.coalescer.awake(box_id, device_id)  # nothing owed any more

    # -- delivery ------------------------------------------------------------

    async def _push_once(self, pusher: Pusher, target: PushTarget, wake: WakeUp) -> PushResult:
        kind = target.kind.value
        async with self._push_slots:
            start = time.perf_counter()
            try:
                result = await pusher.push(target, wake)
            except Exception as exc:  # a pusher must not raise; never let one escape
                log.error("push_error", kind=kind, exc_info=exc)
                result = PushResult(PushOutcome.FAILED)
            finally:
                self.metrics.duration.labels(kind).observe(time.perf_counter() - start)
        self.metrics.attempts.labels(kind, result.outcome.value).inc()
        return result

    async def _deliver(self, target: PushTarget, wake: WakeUp) -> None:
        kind = target.kind.value
        box_id, device_id = target.box_id, target.device_id
        self.metrics.in_flight.inc()
        try:
            pusher = self.pushers.get(target.kind)
            if pusher is None:  # that kind was configured when the target was set
                self.metrics.wakeups.labels(kind, "failed").inc()
                return
            for attempt in range(1, self.retry.attempts + 1):
                result = await self._push_once(pusher, target, wake)
                if result.outcome is PushOutcome.DELIVERED:
                    self.metrics.wakeups.labels(kind, "delivered").inc()
                    return
                if result.outcome is PushOutcome.FAILED:
                    self.metrics.wakeups.labels(kind, "failed").inc()
                    return
                if result.outcome is PushOutcome.GONE:
                    await self._remove(target)
                    self.metrics.wakeups.labels(kind, "removed").inc()
                    return
                if attempt == self.retry.attempts:
                    break
                await asyncio.sleep(self.retry.delay(attempt, result.retry_after))
                if self.liveness.streams_of(box_id, device_id) > 0:
                    self.metrics.wakeups.labels(kind, "skipped").inc()
                    return
            self.metrics.wakeups.labels(kind, "gave_up").inc()
        finally:
            self._deliveries -= 1
            self.metrics.in_flight.dec()

    async def _remove(self, target: PushTarget) -> None:
        try:
            await self.store.delete_push_target(
                target.box_id, target.device_id, registered_at=target.registered_at
            )
        except errors.RossbyError as exc:
            # The next wake-up hears "gone" again and retries the removal.
            log.warning("push_target_remove_failed", reason=exc.reason)
        self.targets_changed(target.box_id)

    # -- lifecycle -----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name="rossby-push")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop: planned wake-ups are dropped, deliveries get a moment to end."""
        if self._closed:
            return
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), CLOSE_TIMEOUT
                )
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pusher in self.pushers.values():
            await pusher.close()


__all__ = ["Dispatcher", "Liveness", "RetryPolicy"]
