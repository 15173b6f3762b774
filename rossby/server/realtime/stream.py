"""One Subscribe stream: a producer that reads the store, a bounded queue,
and the RPC task that writes the queue to the client.

The producer never holds messages the store does not: it reads a page only
when woken (a message was queued, here or on a peer), on the safety-net
poll, or to continue paging, and it hands messages over one by one, waiting
while the queue holds ``bound`` events. The store is the buffer; memory per
stream is at most ``bound`` queued events plus the page being handed over.

Back-pressure: a client that reads slowly simply receives slowly. A client
that stops reading fills the queue; once the producer has waited
``stall`` seconds with no write completing, the stream *falls behind*: the
queued events are dropped, a ``catch_up`` event is queued in their place,
and the stream ends after writing it. A write that does not complete within
``write_timeout`` seconds ends the RPC with RESOURCE_EXHAUSTED
``SLOW_CONSUMER`` instead (the client's transport is stuck; HTTP/2 flow
control bounds what it holds).

Lifetime: a stream ends with status OK after ``max_age`` seconds, less a
random part of up to ``MAX_AGE_JITTER`` so streams opened together (after
a restart) do not all come back at once. Clients resubscribe with their
resume point, as after a server stop, so long-lived streams move to fresh
connections and other processes, and none outlives a connection whose
client vanished by more than ``max_age``. What was queued but not written
is not lost: it is still in the store and read again by the next stream.

Waits use ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11
``wait_for`` swallows a cancellation that arrives as the awaited event
fires, and a producer that missed its cancel would then sleep through a
whole ``poll`` while the ended stream's RPC waited for it.

Resync: ``resync_after`` seconds after its presence row was written, a
stream re-reads the store once as if polled. Other processes may fan a
message out against a cached presence read that began before the row
existed (the hub's presence cache); that read began less than
``presence_cache_ttl`` before the message's wake-up went by, so a read
this much later sees the message (docs/realtime.md, "Why nothing is lost").

Ordering: each read answers messages in position order, and reads start at
the highest position already sent, so a stream sends positions in
increasing order. A backend with a settle window (Cassandra) can make a
message visible after a higher one; the stream re-reads the window (on the
poll, and when a wake-up names a position below what it sent) and sends
such a message late, skipping ids it already sent. Clients drop repeats by
message id, as with Fetch.

Acks: the stream reads with ``after``, like a long Fetch sweep, so a message
that lands below a page already read is skipped until a later read goes
below it; a client that acked (or resumed after) the highest position sent
could put every later re-read above it (docs/store.md, "Long sweeps").
Every ``message`` and ``live`` event therefore carries ``ack_limit``, the
most the client may ack once it processed that event: every message at or
below ``ack_limit - settle`` was queued before it. Only a drain that starts
at or below that floor raises it, to at most its first page's
``Page.ack_limit``; the poll, the retries and the resync re-read from there
(or from ``high - settle``, whichever is lower), so the limit keeps up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from rossby import errors
from rossby.hawk import HAWK_UNKNOWN_ID
from rossby.server.messages import delivery_gap, queued_message
from rossby.server.realtime.metrics import RealtimeMetrics
from rossby.store.base import Store
from rossby.v1 import rossby_pb2 as pb

#: A stream's lifetime is ``max_age`` less up to this fraction of it.
MAX_AGE_JITTER = 0.1
#: When a wake-up names a message the stream cannot see yet (replication
#: lag behind a notify from another region), re-read after these delays.
RETRY_FIRST = 0.05
RETRY_MAX = 1.6


class _FellBehind(Exception):
    pass


#: What ``_next`` answers when the device must be checked before anything else.
_RECHECK = pb.SubscribeEvent()
#: Events that carry something for the device: written only while it is
#: known to be active (heartbeats, ``live`` and ``catch_up`` reveal nothing).
_GUARDED = frozenset({"message", "ephemeral", "gap"})


class Registry(Protocol):
    """What a stream needs of the hub: to be counted in while it runs.

    Named here rather than importing the hub, which itself drives streams
    (wakes, ephemeral offers, rechecks): the hub depends on streams, a
    stream only on this."""

    async def attach(self, stream: Stream, limit: int) -> None: ...

    def detach(self, stream: Stream) -> None: ...


class Stream:
    """State of one open Subscribe RPC."""

    def __init__(
        self,
        *,
        store: Store,
        hub: Registry,
        metrics: RealtimeMetrics,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        after: int,
        limit: int,
        bound: int,
        poll: float,
        stall: float,
        heartbeat: float,
        write_timeout: float,
        max_age: float,
        clock: Callable[[], float] = time.time,
        authorized: Callable[[], Awaitable[float | None]] | None = None,
        prekeys_low: Callable[[], Awaitable[bool]] | None = None,
        recheck: float = 1.0,
        resync_after: float = 0.0,
    ) -> None:
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.box_id = box_id
        self.device_id = device_id
        self.limit = limit
        self.bound = bound
        self.poll = poll
        self.stall = stall
        self.heartbeat = heartbeat
        self.write_timeout = write_timeout
        self.max_age = max_age * (1.0 - MAX_AGE_JITTER * random.random())
        self.clock = clock
        #: When "the device is active" was read (monotonic), None once it is
        #: not; asked before a message or ephemeral is written once the last
        #: answer is ``recheck`` (auth_cache_ttl) old, so a revocation
        #: elsewhere stops the stream within the bound every call keeps.
        self.authorized = authorized
        self.recheck = recheck
        #: The device's ``prekeys_low`` hint, carried by ``live`` and
        #: heartbeats so a device that only listens still learns to refill.
        self.prekeys_low = prekeys_low
        self.resync_after = resync_after
        self._resync = False
        self._valid_until = -1.0
        self._recheck_now = False
        self.settle = store.settle_window
        self.start_after = after
        #: Highest position handed to the queue (or the client's resume point).
        self.high = after
        #: Highest position written to the client.
        self.sent_high = 0
        #: What the client may ack once it processed the events queued so
        #: far: every message at or below ``ack_limit - settle`` is queued
        #: (the client's resume point starts it; see "Acks" above).
        self.ack_limit = after
        #: Whether the store bounds acks (``Page.ack_limit``; not SQLite).
        self._limited = False
        self.events_sent = 0
        #: Why the stream ended with OK: "max_age", "catch_up" or "stopping".
        self.ended_by: str | None = None
        self._recent: dict[str, int] = {}  # ids sent within the settle window
        #: The overflow gap last queued on this stream: each gap the store
        #: reports is sent once, before the messages above it.
        self._gap: pb.DeliveryGap | None = None
        self._queue: deque[pb.SubscribeEvent] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._hint_first: int | None = None
        self._expect = 0
        self._last_progress = time.monotonic()
        self._live = False
        self._fell_behind = False
        self._done = False
        self._stopping = False
        self._error: Exception | None = None

    # -- called by the hub ---------------------------------------------------

    def wake(self, first: int, last: int) -> None:
        """Messages were queued at positions ``first``..``last``."""
        self._hint_first = first if self._hint_first is None else min(self._hint_first, first)
        self._expect = max(self._expect, last)
        self._wake.set()

    def resync(self) -> None:
        """Re-read the store once, as the poll does (see the module's "Resync")."""
        self._resync = True
        self._wake.set()

    def offer_ephemeral(self, message: pb.QueuedMessage) -> bool:
        if self._done or self._fell_behind or self._stopping:
            return False
        if (message.sender_box_id, message.sender_device_id) == (
            str(self.box_id),
            str(self.device_id),
        ):
            return False  # the sending device itself (device ids are per box)
        if len(self._queue) >= self.bound:
            self.metrics.ephemeral_dropped.inc()
            return False
        self._enqueue(pb.SubscribeEvent(ephemeral=message))
        return True

    def recheck_now(self) -> None:
        """The device changed on this process: check it before anything else."""
        self._recheck_now = True
        self._ready.set()

    async def _check_device(self) -> None:
        if self.authorized is None:
            return
        if not self._recheck_now and time.monotonic() < self._valid_until:
            return
        self._recheck_now = False
        read_at = await self.authorized()
        if read_at is None:
            self._queue.clear()
            raise errors.Unauthenticated("this device was revoked", reason=HAWK_UNKNOWN_ID)
        self._valid_until = read_at + self.recheck

    def stop(self, why: str = "stopping") -> None:
        """End the stream (status OK) promptly: the server is stopping, or
        the stream reached its ``max_age``."""
        if not self._stopping:
            self._stopping = True
            self.ended_by = self.ended_by or why
        self._ready.set()

    def _expire(self) -> None:
        if self._stopping or self._done:
            return  # ending anyway: stopping, or a catch-up or an error is on its way
        self.metrics.stream_max_age_ends.inc()
        self.stop("max_age")

    # -- the RPC task (consumer) ----------------------------------------------

    async def run(self, context: Any, *, limit: int) -> None:
        """Attach to the hub, stream until done, detach. Raises the error the
        stream ended with (STREAM_LIMIT, SLOW_CONSUMER, a store error)."""
        producer: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(self.max_age, self._expire)
        resync: asyncio.TimerHandle | None = None
        try:
            await self.hub.attach(self, limit)
            if self.resync_after > 0:
                resync = loop.call_later(self.resync_after, self.resync)
            producer = asyncio.create_task(self._produce(), name="rossby-stream")
            await self._consume(context)
        finally:
            expiry.cancel()
            if resync is not None:
                resync.cancel()
            if producer is not None:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
            self.hub.detach(self)
        if self._error is not None:
            raise self._error

    async def _consume(self, context: Any) -> None:
        while True:
            event = await self._next()
            if event is None:
                return
            kind = event.WhichOneof("event") or "unknown"
            if event is _RECHECK or kind in _GUARDED:
                await self._check_device()
            if event is _RECHECK:
                continue
            if kind == "message" and self._expired(event.message):
                continue  # a disappearing message that ran out while queued here
            try:
                async with asyncio.timeout(self.write_timeout):
                    await context.write(event.SerializeToString())
            except TimeoutError:
                self.metrics.stream_slow_aborts.inc()
                raise errors.ResourceExhausted(
                    "the stream was not read for too long", reason="SLOW_CONSUMER"
                ) from None
            self._last_progress = time.monotonic()
            if len(self._queue) < self.bound:
                self._room.set()
            self.events_sent += 1
            self.metrics.stream_events.labels(kind).inc()
            if kind == "message":
                self.sent_high = max(self.sent_high, event.message.position)
                if self._live:
                    lag = self.clock() - event.message.received_at_ms / 1000
                    self.metrics.delivery_latency.observe(max(0.0, lag))
            elif kind == "live":
                self._live = True
            elif kind == "catch_up":
                self.ended_by = "catch_up"
                return

    async def _next(self) -> pb.SubscribeEvent | None:
        while True:
            if self._stopping:
                return None
            if self._recheck_now:
                return _RECHECK
            if self._queue:
                event = self._queue.popleft()
                return event
            if self._fell_behind:
                self._fell_behind = False
                self._done = True
                return pb.SubscribeEvent(
                    catch_up=pb.StreamCatchUp(after=self.sent_high, reason="SLOW_CONSUMER")
                )
            if self._done:
                return None
            self._ready.clear()
            try:
                async with asyncio.timeout(self.heartbeat):
                    await self._ready.wait()
            except TimeoutError:
                now_ms = int(self.clock() * 1000)
                return pb.SubscribeEvent(
                    heartbeat=pb.StreamHeartbeat(
                        server_time_ms=now_ms, prekeys_low=await self._low()
                    )
                )

    def _expired(self, message: pb.QueuedMessage) -> bool:
        """Past its ``expires_at``: the store no longer hands it out, and
        neither may this stream's queue (checked last, right before the write)."""
        return 0 < message.expires_at_ms <= int(self.clock() * 1000)

    async def _low(self) -> bool:
        return False if self.prekeys_low is None else await self.prekeys_low()

    # -- the producer ------------------------------------------------------------

    def _enqueue(self, event: pb.SubscribeEvent) -> None:
        self._queue.append(event)
        self.metrics.note_buffered(len(self._queue))
        self._ready.set()

    async def _put(self, event: pb.SubscribeEvent) -> None:
        """Queue an event, waiting for room; ``_FellBehind`` after ``stall``
        seconds without a completed write."""
        if len(self._queue) >= self.bound:
            blocked_since = time.monotonic()
            while len(self._queue) >= self.bound:
                self._room.clear()
                idle = time.monotonic() - max(self._last_progress, blocked_since)
                if idle >= self.stall:
                    raise _FellBehind
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.stall - idle):
                        await self._room.wait()
        self._enqueue(event)

    async def _produce(self) -> None:
        # Beside the first drain, so a counts read does not delay ``live``.
        low = asyncio.ensure_future(self._low())
        try:
            await self._drain(self._initial_after())
            live = pb.StreamLive(after=self.high, prekeys_low=await low)
            await self._put(pb.SubscribeEvent(live=live, ack_limit=self._limit()))
            retry: float | None = None
            while True:
                woke = await self._wait_wake(self.poll if retry is None else retry)
                hint, self._hint_first = self._hint_first, None
                resync, self._resync = self._resync, False
                if woke and retry is None and not resync:
                    after = self.high
                    if self.settle and hint is not None and hint <= self.high:
                        after = max(0, hint - 1)  # a late message below what was sent
                else:  # the poll, a retry or the resync: re-read the whole settle window
                    after = max(0, self._settled() - self.settle) if self.settle else self.high
                await self._drain(after)
                if self.settle and self._expect > self.high:
                    retry = RETRY_FIRST if retry is None else retry * 2
                    if retry > RETRY_MAX:
                        retry, self._expect = None, 0
                else:
                    retry, self._expect = None, 0
        except _FellBehind:
            self._queue.clear()
            self._fell_behind = True
            self.metrics.stream_catch_ups.inc()
        except Exception as exc:  # ends the stream with this error
            self._error = exc
        finally:
            low.cancel()  # nothing when it is done
            if low.done() and not low.cancelled():
                low.exception()  # retrieved: the stream ended for its own reason
            self._done = True
            self._ready.set()

    def _initial_after(self) -> int:
        after = self.start_after
        if after and self.settle:
            after = after - self.settle if after > self.settle else 0
        return after

    async def _wait_wake(self, seconds: float) -> bool:
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        woke = self._wake.is_set()
        self._wake.clear()
        return woke

    def _settled(self) -> int:
        """The position a re-read starts a settle window below: the highest
        sent, or the ack limit when that is lower (so the re-read is one that
        may raise it; see "Acks" above)."""
        return min(self.high, self.ack_limit) if self._limited else self.high

    def _limit(self) -> int:
        """``SubscribeEvent.ack_limit`` for an event queued now (0: none)."""
        return self.ack_limit if self._limited else 0

    def _raise_limit(self, bound: int | None, through: int) -> None:
        """Every message up to ``through`` this drain read is queued: a
        message its pages passed over before it landed lies above its first
        page's ``ack_limit`` (``bound``) less the settle window, so acks may
        reach ``min(through + settle, bound)``."""
        if bound is not None:
            self.ack_limit = max(self.ack_limit, min(through + self.settle, bound))

    async def _drain(self, after: int) -> None:
        """Read every page after ``after`` and queue what was not sent yet.

        A drain that starts at or below ``ack_limit - settle`` (nothing
        unsent below it) raises ``ack_limit`` as it goes, to at most its
        first page's ``Page.ack_limit``; one that starts higher (a wake-up
        reading after ``high``) leaves it."""
        covering = after <= max(0, self.ack_limit - self.settle)
        bound: int | None = None
        first = True
        while True:
            try:
                page = await self.store.fetch(
                    self.box_id, self.device_id, after=after, limit=self.limit
                )
            except errors.NotFound:
                # The device went away between checks (revoked elsewhere):
                # end as every other check of a revoked device does.
                self._recheck_now = True
                await self._check_device()
                raise
            if first:
                first, self._limited = False, page.ack_limit is not None
                bound = page.ack_limit if covering else None
            gap = delivery_gap(page.gap)
            if gap is not None and gap != self._gap:
                await self._put(pb.SubscribeEvent(gap=gap))
                self._gap = gap
            for m in page.messages:
                self._raise_limit(bound, m.position)
                key = str(m.message_id)
                if self.settle and key in self._recent:
                    continue
                event = pb.SubscribeEvent(message=queued_message(m), ack_limit=self._limit())
                await self._put(event)
                if self.settle:
                    self._recent[key] = m.position
                if m.position > self.high:
                    self.high = m.position
            if not page.more or not (page.messages or page.read_through):
                break
            last = page.messages[-1].position if page.messages else 0
            after = max(last, page.read_through)
            self._raise_limit(bound, after)
        if bound is not None:
            self.ack_limit = max(self.ack_limit, bound)
        if self.settle and self._recent:
            # Kept down to where the next poll re-reads, so it repeats nothing.
            floor = self._settled() - self.settle
            self._recent = {k: p for k, p in self._recent.items() if p > floor}


__all__ = ["Registry", "Stream"]
