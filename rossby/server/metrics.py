"""Prometheus metrics: what one server process counts, and how it is exported.

``Metrics`` owns one ``CollectorRegistry`` per ``RossbyServer`` (tests run
many servers in one process, so nothing touches prometheus-client's global
registry). Three seams feed it, none of them in a handler:

* the per-RPC wrapper in ``rossby.server.service`` (requests, latency,
  in-flight calls; every status, Hawk rejections included);
* ``MeteredStore``, a ``Store`` that times every call of the store it wraps
  and reads what the results already say: pending-cap rejections,
  compactions, the backlog and cursor lag a Fetch reveals;
* ``MeteredNotifier``, the same for one-time-code deliveries.

Several worker processes (``rossby serve --workers N``) use
prometheus-client's multiprocess mode: the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh private directory before it spawns
the workers, each worker's values live in memory-mapped files there, and the
supervisor alone serves ``metrics_listen`` with a ``MultiProcessCollector``
that adds them up. So there is one scrape target per server, whatever the
number of cores. See docs/operations.md, "Reading the metrics".
"""

from __future__ import annotations

import inspect
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from threading import Thread
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

from rossby.contacts import ContactKind, NormalizedContact
from rossby.server.notify import Notifier
from rossby.store import (
    Compaction,
    Enqueued,
    NewMessage,
    Page,
    PendingCapExceeded,
    Position,
    Store,
)
from rossby.store.base import HomeRegions

T = TypeVar("T")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: RPC latency buckets (seconds): sub-millisecond SQLite reads up to calls
#: that ran into a store timeout.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DEPTH_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10000)
LAG_BUCKETS = (0, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)


def multiprocess_mode() -> bool:
    """True in a worker whose values go to the shared multiprocess directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """Every metric of one server process, registered on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if not multiprocess_mode():
            # Per-process CPU and memory; meaningless summed over workers.
            ProcessCollector(registry=r)
        self.rpc_requests = Counter(
            "rossby_rpc_requests",
            "Rossby RPCs finished, by method and gRPC status code.",
            ["method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "rossby_rpc_duration_seconds",
            "Time from receiving an RPC to its answer, by method and gRPC status code.",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.rpc_in_flight = Gauge(
            "rossby_rpc_in_flight",
            "Rossby RPCs being handled right now (the server's request queue).",
            ["method"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.store_duration = Histogram(
            "rossby_store_request_duration_seconds",
            "Latency of Store calls, by operation and outcome (ok or the error class).",
            ["operation", "outcome"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_up = Gauge(
            "rossby_store_up",
            "1 while the health check's store ping succeeds, 0 while the store is unreachable "
            "(the minimum over live workers).",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.enqueued = Counter(
            "rossby_messages_enqueued",
            "Messages accepted into a box, by outcome (queued: new; duplicate: a retry).",
            ["outcome"],
            registry=r,
        )
        self.pending_cap_rejections = Counter(
            "rossby_pending_cap_rejections",
            "Messages refused because the recipient box already held pending_cap messages.",
            registry=r,
        )
        self.overflow_dropped = Counter(
            "rossby_overflow_dropped_messages",
            "Messages dropped for one device because it fell more than pending_cap behind "
            "the box's most advanced device (each counted once, when dropped; the device "
            "is told by a gap on its next Fetch or Subscribe).",
            registry=r,
        )
        self.queue_depth = Histogram(
            "rossby_queue_depth_messages",
            "Messages waiting above the fetching device's cursor, as seen by each Fetch "
            "(one page at most: a value at the page size means at least that many).",
            buckets=DEPTH_BUCKETS,
            registry=r,
        )
        self.cursor_lag = Histogram(
            "rossby_cursor_lag_seconds",
            "Age of the oldest message waiting above the fetching device's cursor, "
            "per Fetch (0 when the device is caught up).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.compactions = Counter(
            "rossby_compaction_runs",
            "Compaction runs after an Ack, by result (noop: nothing to remove; "
            "deleted: a range was removed; error: the store failed).",
            ["result"],
            registry=r,
        )
        self.compacted_rows = Counter(
            "rossby_compaction_rows_removed",
            "Message rows removed by compaction, where the backend reports a count "
            "(SQLite; Cassandra range deletes do not).",
            registry=r,
        )
        self.expired_rows = Counter(
            "rossby_expired_rows_purged",
            "Expired rows removed by housekeeping (backends without native TTL).",
            registry=r,
        )
        self.notifications = Counter(
            "rossby_notifier_deliveries",
            "One-time code deliveries, by contact kind and outcome (ok or failed).",
            ["kind", "outcome"],
            registry=r,
        )
        self.notifier_failures = Counter(
            "rossby_notifier_failures",
            "One-time code deliveries that failed (the client saw NOTIFIER_FAILED).",
            ["kind"],
            registry=r,
        )
        self.notifier_duration = Histogram(
            "rossby_notifier_duration_seconds",
            "Time to hand a one-time code to SMTP, the webhook or the outbox.",
            ["kind"],
            buckets=RPC_BUCKETS,
            registry=r,
        )

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_requests.labels(method, code).inc()
        self.rpc_duration.labels(method, code).observe(seconds)


# -- the store ---------------------------------------------------------------


class MeteredStore(Store):
    """A ``Store`` that delegates every call of the contract and times it.

    One generic wrapper (``_timed``) serves every coroutine of ``Store``,
    the account and presence parts included: ``_wrap_the_contract`` below
    fills them in, so a method added to the contract is timed without
    anyone writing it here. Written out are only the calls whose results
    feed other metrics (enqueue, fetch, compact, purge_expired) and
    ``close`` (not a store request). Behaviour is the wrapped store's,
    exceptions included; its capabilities are the wrapped store's too.
    """

    def __init__(self, inner: Store, metrics: Metrics, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.metrics = metrics
        self.options = inner.options
        self.capabilities = inner.capabilities
        self.settle_window = inner.settle_window
        self._clock = clock

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        outcome = "ok"
        try:
            return await call
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self.metrics.store_duration.labels(operation, outcome).observe(
                time.perf_counter() - start
            )

    async def close(self) -> None:
        await self.inner.close()

    def home_regions(self) -> HomeRegions:
        return self.inner.home_regions()

    # calls whose results feed other metrics

    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        try:
            queued = await self._timed("enqueue", self.inner.enqueue(box_id, message))
        except PendingCapExceeded:
            self.metrics.pending_cap_rejections.inc()
            raise
        self.metrics.enqueued.labels("duplicate" if queued.duplicate else "queued").inc()
        return queued

    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        page = await self._timed(
            "fetch", self.inner.fetch(box_id, device_id, after=after, limit=limit)
        )
        waiting = [m for m in page.messages if m.position > page.cursor]
        self.metrics.queue_depth.observe(len(waiting))
        oldest = min((m.received_at for m in waiting), default=None)
        lag = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
        self.metrics.cursor_lag.observe(lag)
        if page.dropped:
            self.metrics.overflow_dropped.inc(page.dropped)
        return page

    async def compact(self, box_id: uuid.UUID) -> Compaction:
        try:
            done = await self._timed("compact", self.inner.compact(box_id))
        except BaseException:
            self.metrics.compactions.labels("error").inc()
            raise
        if done.removed == 0:
            self.metrics.compactions.labels("noop").inc()
        else:
            self.metrics.compactions.labels("deleted").inc()
            if done.removed:
                self.metrics.compacted_rows.inc(done.removed)
        if done.dropped:
            self.metrics.overflow_dropped.inc(done.dropped)
        return done

    async def purge_expired(self) -> int:
        removed = await self._timed("purge_expired", self.inner.purge_expired())
        if removed:
            self.metrics.expired_rows.inc(removed)
        return removed


def _delegate(name: str) -> Callable[..., Awaitable[object]]:
    async def method(self: MeteredStore, *args: object, **kwargs: object) -> object:
        return await self._timed(name, getattr(self.inner, name)(*args, **kwargs))

    method.__name__ = method.__qualname__ = name
    return method


def _wrap_the_contract() -> None:
    """Timed pass-throughs for every ``Store`` coroutine not written out
    above, the operation label being the method's name.

    Without it, a method added to the contract would leave ``MeteredStore``
    abstract (the server would not start) or, for a method with a default
    body, silently run the default instead of the backend's.
    """
    for name in dir(Store):
        if name.startswith("_") or name in MeteredStore.__dict__:
            continue
        if inspect.iscoroutinefunction(getattr(Store, name)):
            setattr(MeteredStore, name, _delegate(name))
    MeteredStore.__abstractmethods__ = frozenset(
        name
        for name in MeteredStore.__abstractmethods__
        if getattr(getattr(MeteredStore, name), "__isabstractmethod__", False)
    )


_wrap_the_contract()


def metered_store(inner: Store, metrics: Metrics, clock: Callable[[], float]) -> Store:
    """``inner`` behind a ``MeteredStore``, typed as the contract it wraps.

    The class is complete only once ``_wrap_the_contract`` ran, which a
    type checker cannot see: this is the one place that says so.
    """
    return MeteredStore(inner, metrics, clock)  # type: ignore[abstract]


# -- the notifier --------------------------------------------------------------


class MeteredNotifier(Notifier):
    """A ``Notifier`` that counts deliveries and failures by contact kind."""

    def __init__(self, inner: Notifier, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def supports(self, kind: ContactKind) -> bool:
        return self.inner.supports(kind)

    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        kind = contact.kind.value
        start = time.perf_counter()
        try:
            await self.inner.send_code(contact, code, ttl_seconds, device_name=device_name)
        except Exception:
            self.metrics.notifications.labels(kind, "failed").inc()
            self.metrics.notifier_failures.labels(kind).inc()
            raise
        finally:
            self.metrics.notifier_duration.labels(kind).observe(time.perf_counter() - start)
        self.metrics.notifications.labels(kind, "ok").inc()

    async def close(self) -> None:
        await self.inner.close()


# -- export ------------------------------------------------------------------


class Exporter:
    """The ``/metrics`` HTTP endpoint (prometheus-client's threaded server)."""

    def __init__(self, httpd: WSGIServer, thread: Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port = int(httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def split_host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def start_exporter(listen: str, registry: CollectorRegistry) -> Exporter:
    """Serve ``registry`` on ``listen`` (host:port); ``OSError`` names the address."""
    host, port = split_host_port(listen)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot listen on {listen} (metrics_listen): {exc}") from None
    return Exporter(httpd, thread)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that sums the values every worker left in ``path``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


__all__ = [
    "MULTIPROC_ENV",
    "Exporter",
    "MeteredNotifier",
    "MeteredStore",
    "Metrics",
    "metered_store",
    "multiprocess_mode",
    "multiprocess_registry",
    "start_exporter",
]
