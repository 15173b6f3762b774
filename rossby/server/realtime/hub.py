"""The in-process hub: which streams this process holds, presence, fan-out.

Local: every open Subscribe stream is registered under its box. A message
queued through this process wakes the box's local streams at once (no store
round trip, no RPC); an ephemeral message is handed to them.

Across processes: for each (box, device) with at least one local stream the
hub keeps a presence row (``Store.put_presence``) naming this process's
server id and peer address, written *before* the stream's first read and
refreshed every ``presence_ttl / 3`` seconds. After a message is queued, the
hub reads the box's presence rows and posts a wake-up to every other process
listed (``PeerClient``), which wakes its own streams. The rows are hints:
a missing or stale one only delays delivery to the poll every stream does
anyway (docs/realtime.md argues why nothing is lost).

Fan-out is per box and serial: while one presence read for a box is in
flight, later wake-ups for that box wait and go out together after a fresh
read, so every wake-up is matched against presence read *after* its
message was queued.

The presence cache (``presence_cache_ttl`` seconds, 0: off) lets the
wake-ups of stored messages use a box's presence read up to that long
after the read *began*, so a busy box costs one presence read per TTL
instead of one per message. A stream that opened on another process after
such a read is not named in it; every stream therefore re-reads the store
once ``presence_cache_ttl`` (plus a margin) after its presence row was
written (``Stream`` "resync"), which reads any message whose wake-up went
by. Ephemeral messages cannot be re-read, so their fan-out always reads
presence afresh (and refreshes the cache). docs/realtime.md has the whole
argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache

from rossby import errors
from rossby.logging import get_logger
from rossby.server.realtime.metrics import RealtimeMetrics
from rossby.server.realtime.peer import PeerClient, Receiver
from rossby.server.realtime.stream import Stream
from rossby.store.base import Presence, Store
from rossby.v1 import rossby_pb2 as pb

log = get_logger(__name__)

DeviceKey = tuple[uuid.UUID, uuid.UUID]

#: Presence reads in flight at once (fan-out over many boxes).
FANOUT_CONCURRENCY = 64
#: Ephemeral messages waiting per box for a fan-out; older ones are dropped.
MAX_PENDING_EPHEMERAL = 100
#: Seconds ``close`` waits for its presence deletes.
CLOSE_TIMEOUT = 2.0
#: Refresh rounds between purges of expired presence rows.
PURGE_EVERY = 6
#: Boxes whose presence one process caches at most (least recent go first).
PRESENCE_CACHE_BOXES = 100_000


@dataclass(slots=True)
class _Pending:
    first: int | None = None
    last: int | None = None
    ephemeral: list[pb.QueuedMessage] = field(default_factory=list)

    def add(self, position: int | None, message: pb.QueuedMessage | None) -> None:
        if position is not None:
            self.first = position if self.first is None else min(self.first, position)
            self.last = position if self.last is None else max(self.last, position)
        if message is not None:
            self.ephemeral.append(message)
            if len(self.ephemeral) > MAX_PENDING_EPHEMERAL:
                del self.ephemeral[0]


class Hub(Receiver):
    def __init__(
        self,
        store: Store,
        metrics: RealtimeMetrics,
        peers: PeerClient,
        *,
        server_id: str,
        region: str,
        presence_ttl: float,
        presence_cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.time,
        on_stream_open: Callable[[uuid.UUID, uuid.UUID], None] | None = None,
    ) -> None:
        self.store = store
        #: Told when a device opens a stream here (push: the device is awake).
        self.on_stream_open = on_stream_open
        self.metrics = metrics
        self.server_id = server_id
        self.region = region
        self.presence_ttl = presence_ttl
        self.presence_cache_ttl = presence_cache_ttl
        self.clock = clock
        #: Where peers reach this process; set by ``Realtime.bind``.
        self.address = ""
        #: Wake-ups to other processes (rossby.server.realtime.peer).
        self.peers = peers
        #: False when the store declares no presence: in-process only.
        self.presence_enabled = True
        self._boxes: dict[uuid.UUID, set[Stream]] = {}
        self._devices: dict[DeviceKey, int] = {}
        self._since: dict[DeviceKey, float] = {}
        self._locks: dict[DeviceKey, asyncio.Lock] = {}
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._fanouts: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._fanout_slots = asyncio.Semaphore(FANOUT_CONCURRENCY)
        #: box -> (monotonic time its presence read began, the rows read).
        self._presence_cache: TTLCache[uuid.UUID, tuple[float, list[Presence]]] = TTLCache(
            PRESENCE_CACHE_BOXES, max(presence_cache_ttl, 0.001), timer=time.monotonic
        )
        self._background: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False
        if not store.capabilities.presence:
            self._no_presence()

    # -- streams -------------------------------------------------------------

    def streams_of(self, box_id: uuid.UUID, device_id: uuid.UUID) -> int:
        return self._devices.get((box_id, device_id), 0)

    def open_streams(self) -> int:
        return sum(len(s) for s in self._boxes.values())

    async def attach(self, stream: Stream, limit: int) -> None:
        """Register a stream, refusing it past ``limit`` streams of its device;
        the device's presence row is written before this returns."""
        key = (stream.box_id, stream.device_id)
        if self._devices.get(key, 0) >= limit:
            self.metrics.streams_refused.inc()
            raise errors.ResourceExhausted(
                f"this device already holds {limit} streams on this server",
                reason="STREAM_LIMIT",
                metadata={"limit": str(limit)},
            )
        self._boxes.setdefault(stream.box_id, set()).add(stream)
        self._devices[key] = self._devices.get(key, 0) + 1
        self.metrics.streams_open.inc()
        if self._devices[key] == 1:
            self._since[key] = self.clock()
        if self.on_stream_open is not None:
            self.on_stream_open(stream.box_id, stream.device_id)
        await self._put_presence(key)

    def recheck(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """The device changed (revoked, re-keyed): its streams check it now."""
        if (box_id, device_id) not in self._devices:
            return
        for stream in self._boxes.get(box_id, ()):
            if stream.device_id == device_id:
                stream.recheck_now()

    def detach(self, stream: Stream) -> None:
        key = (stream.box_id, stream.device_id)
        streams = self._boxes.get(stream.box_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._boxes[stream.box_id]
        self.metrics.streams_open.dec()
        left = self._devices[key] - 1
        if left:
            self._devices[key] = left
            return
        del self._devices[key]
        self._since.pop(key, None)
        if self.presence_enabled and not self._closed:
            self._spawn(self._delete_presence(key))

    # -- presence ----------------------------------------------------------

    def _lock(self, key: DeviceKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _presence(self, key: DeviceKey) -> Presence:
        now = self.clock()
        return Presence(
            box_id=key[0],
            device_id=key[1],
            server_id=self.server_id,
            address=self.address,
            region=self.region,
            since=self._since.get(key, now),
            expires_at=now + self.presence_ttl,
        )

    async def _put_presence(self, key: DeviceKey) -> None:
        if not self.presence_enabled or not self.address:
            return
        async with self._lock(key):
            if key not in self._devices:
                return  # the stream already ended
            try:
                await self.store.put_presence(self._presence(key))
            except errors.RossbyError as exc:
                # The stream still works (hub + poll); peers just cannot
                # wake it until the next refresh.
                self.metrics.presence_errors.labels("put").inc()
                log.warning("presence_write_failed", reason=exc.reason)

    async def _delete_presence(self, key: DeviceKey) -> None:
        async with self._lock(key):
            if key in self._devices:
                return  # a new stream of the device arrived meanwhile
            try:
                await self.store.delete_presence(key[0], key[1], self.server_id)
            except errors.RossbyError as exc:
                self.metrics.presence_errors.labels("delete").inc()
                log.info("presence_delete_failed", reason=exc.reason)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked() and key not in self._devices:
            del self._locks[key]

    def _no_presence(self) -> None:
        if self.presence_enabled:
            self.presence_enabled = False
            log.warning("presence_unsupported", hint="real-time delivery is in-process only")

    async def _refresh(self) -> None:
        """Re-write every row of this process in one store call (one SQLite
        transaction). A row deleted concurrently (its last stream ended) may
        come back until it expires: a stale hint, harmless."""
        rows = [self._presence(key) for key in self._devices]
        if not rows:
            return
        try:
            await self.store.put_presences(rows)
        except errors.RossbyError as exc:
            self.metrics.presence_errors.labels("put").inc()
            log.warning("presence_refresh_failed", reason=exc.reason, rows=len(rows))

    async def _refresh_forever(self) -> None:
        """Re-write this process's rows before they expire; now and then
        purge expired rows (SQLite; Cassandra expires them itself)."""
        interval = self.presence_ttl / 3
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            if not self.presence_enabled:
                return
            await self._refresh()
            rounds += 1
            if rounds % PURGE_EVERY:
                continue
            try:
                await self.store.purge_presence()
            except errors.RossbyError as exc:
                self.metrics.presence_errors.labels("purge").inc()
                log.info("presence_purge_failed", reason=exc.reason)

    # -- events from this process's Send -----------------------------------

    def queued(self, box_id: uuid.UUID, position: int) -> None:
        """A message was queued (or found already queued) at ``position``."""
        self.wake_local(box_id, position, position)
        self._schedule(box_id, position, None)

    def ephemeral(self, box_id: uuid.UUID, message: pb.QueuedMessage) -> None:
        """An ephemeral message for ``box_id``'s devices streaming anywhere now."""
        self.ephemeral_local(box_id, message)
        self._schedule(box_id, None, message)

    # -- delivery to local streams (from this process or a peer) ------------

    def wake_local(self, box_id: uuid.UUID, first: int, last: int) -> int:
        streams = self._boxes.get(box_id, ())
        for stream in streams:
            stream.wake(first, last)
        return len(streams)

    def ephemeral_local(self, box_id: uuid.UUID, message: pb.QueuedMessage) -> int:
        delivered = 0
        for stream in self._boxes.get(box_id, ()):
            if stream.offer_ephemeral(message):
                delivered += 1
        return delivered

    # -- fan-out to peers ----------------------------------------------------

    def _schedule(
        self, box_id: uuid.UUID, position: int | None, message: pb.QueuedMessage | None
    ) -> None:
        if not self.presence_enabled or not self.address or self._closed:
            return
        pending = self._pending.get(box_id)
        if pending is None:
            pending = self._pending[box_id] = _Pending()
        pending.add(position, message)
        if box_id not in self._fanouts:
            self._fanouts[box_id] = asyncio.create_task(self._fanout(box_id), name="rossby-fanout")

    async def _fanout(self, box_id: uuid.UUID) -> None:
        try:
            while (pending := self._pending.pop(box_id, None)) is not None:
                try:
                    rows = await self._presence_of(box_id, fresh=bool(pending.ephemeral))
                except errors.RossbyError as exc:
                    self.metrics.presence_errors.labels("list").inc()
                    log.info("presence_read_failed", reason=exc.reason)
                    continue
                targets = {(r.server_id, r.address) for r in rows if r.server_id != self.server_id}
                for target in targets:
                    self.peers.post(target, box_id, pending.first, pending.last, pending.ephemeral)
        finally:
            del self._fanouts[box_id]
            if box_id in self._pending and not self._closed:
                self._fanouts[box_id] = asyncio.create_task(
                    self._fanout(box_id), name="rossby-fanout"
                )

    async def presence(self, box_id: uuid.UUID) -> list[Presence]:
        """The box's presence rows for a push decision (``rossby.server.push``):
        the fan-out's cached read, so a push adds no presence read of its
        own while the cache holds one; empty when presence is off."""
        if not self.presence_enabled:
            return []
        return await self._presence_of(box_id, fresh=False)

    async def _presence_of(self, box_id: uuid.UUID, *, fresh: bool) -> list[Presence]:
        """The box's presence rows: cached if read at most ``presence_cache_ttl``
        ago (measured from the read's start) and ``fresh`` is not asked."""
        if self.presence_cache_ttl > 0 and not fresh:
            hit = self._presence_cache.get(box_id)
            if hit is not None and time.monotonic() - hit[0] <= self.presence_cache_ttl:
                self.metrics.presence_lookups.labels("cache").inc()
                return hit[1]
        began = time.monotonic()
        async with self._fanout_slots:
            rows = await self.store.list_presence(box_id)
        self.metrics.presence_lookups.labels("store").inc()
        if self.presence_cache_ttl > 0:
            self._presence_cache[box_id] = (began, rows)
        return rows

    # -- lifecycle -----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start(self) -> None:
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever(), name="rossby-presence")

    async def close(self) -> None:
        """Stop refreshing and drop this process's presence rows (best effort)."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._refresher, *self._fanouts.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        keys = list(self._devices)
        self._devices.clear()
        if self.presence_enabled and keys:
            deletes = [self._delete_presence(k) for k in keys]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*deletes), CLOSE_TIMEOUT)
        if self._background:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._background, return_exceptions=True), CLOSE_TIMEOUT
                )


__all__ = ["Hub"]
