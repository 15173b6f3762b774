"""Server lifecycle: build the grpc.aio server, serve, stop gracefully.

``RossbyServer`` is used in-process by tests and by ``rossby serve``; the
latter adds signal handling, the metrics endpoint and, with several
workers, a supervisor (``rossby.server.workers``). Health and reflection are
always registered so ``grpcurl -plaintext 127.0.0.1:1205 list`` works
without .proto files; health follows a background ping of the store. The
store every handler sees is a ``MeteredStore`` (``rossby.server.metrics``).
TLS, optionally mutual, comes from the ``tls_*`` settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rossby.config import Settings
from rossby.logging import get_logger
from rossby.server.metrics import Metrics, metered_store, start_exporter
from rossby.server.notify import Notifier
from rossby.server.registration import EXPIRED_GRACE
from rossby.server.service import RossbyService, add_rossby_service
from rossby.server.sizes import max_receive_bytes
from rossby.store import Connection, Store, StoreOptions, open_store
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

SERVICE_NAME = rossby_pb2.DESCRIPTOR.services_by_name["Rossby"].full_name


def store_options(settings: Settings, clock: Callable[[], float] = time.time) -> StoreOptions:
    return StoreOptions(
        message_ttl=settings.message_ttl,
        pending_cap=settings.pending_cap,
        registration_ttl=float(settings.code_ttl) + EXPIRED_GRACE,
        clock=clock,
        connection=Connection(
            username=settings.cassandra_username,
            password=settings.cassandra_password,
            tls_ca=settings.cassandra_tls_ca,
            tls_cert=settings.cassandra_tls_cert,
            tls_key=settings.cassandra_tls_key,
            tls_check_hostname=settings.cassandra_tls_check_hostname,
        ),
    )


#: Seconds past ``stream_max_age`` a connection past its age gets before
#: the calls still on it are cut: room for a stream's last write.
AGE_GRACE_MARGIN = 60.0


def connection_options(settings: Settings) -> list[tuple[str, int]]:
    """HTTP/2 keepalive and connection lifetimes (docs/realtime.md).

    * Keepalive: the server pings every ``keepalive_time`` and closes a
      connection whose ping goes unanswered for ``keepalive_timeout``, so a
      client that vanished without FIN or RST releases its streams (and
      their ``stream_limit`` slots) in about a minute, not after a TCP
      timeout. It pings idle connections too (permit without calls), and
      lets clients ping down to ``keepalive_min_interval`` even when idle;
      faster pings are strikes, and the third is GOAWAY "too_many_pings".
    * ``connection_idle``: a connection with no call that long gets GOAWAY;
      the client reconnects when it next calls.
    * Age: a connection gets GOAWAY after ``stream_max_age`` (gRPC adds
      +-10%), so with SO_REUSEPORT or a TCP load balancer a resubscribing
      client lands on a fresh connection and possibly another process. The
      grace covers every stream still on it: each ends by its own max age.
    """
    s = settings
    return [
        ("grpc.keepalive_time_ms", _ms(s.keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(s.keepalive_timeout)),
        # The wait that actually applies to an unanswered ping in gRPC core
        # (1.85): without it a vanished client is noticed only after 60 s.
        ("grpc.http2.ping_timeout_ms", _ms(s.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS; gRPC ignores
        # unknown names silently, so tests/api/test_stream_lifetime.py checks it bites.
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(s.keepalive_min_interval)),
        ("grpc.max_connection_idle_ms", _ms(s.connection_idle)),
        ("grpc.max_connection_age_ms", _ms(s.stream_max_age)),
        ("grpc.max_connection_age_grace_ms", _ms(s.stream_max_age + AGE_GRACE_MARGIN)),
    ]


def _ms(seconds: float) -> int:
    """Milliseconds as a gRPC channel argument: a C int, where INT_MAX is "never"."""
    return max(1, min(2**31 - 1, round(seconds * 1000)))


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from ``tls_cert``/``tls_key`` (None: plaintext).

    With ``tls_client_ca`` the server asks for a client certificate and
    refuses a client without one signed by that CA (mutual TLS).
    """
    if not settings.tls_cert:
        return None
    try:
        cert = Path(settings.tls_cert).read_bytes()
        key = Path(settings.tls_key).read_bytes()
        client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise OSError(f"cannot read TLS files: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class RossbyServer:
    """One server process: a store, the Rossby service, health, reflection.

    ``reuse_port`` is for ``rossby serve --workers N`` only: each worker
    process binds the same port with SO_REUSEPORT and the kernel spreads
    connections over them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or Metrics()
        raw = store or open_store(settings.store, store_options(settings, clock))
        self.store: Store = metered_store(raw, self.metrics, clock)
        self.notifier = notifier
        self.reuse_port = reuse_port
        self.service: RossbyService | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        #: Set when stopping begins: streaming handlers end their streams
        #: (status OK) when they see it, before ``grace`` runs out.
        self.stopping = asyncio.Event()
        self.store_ok = True
        self._housekeeper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    def _build_server(self) -> grpc.aio.Server:
        # SO_REUSEPORT off: a second server on a busy port must fail, not
        # silently share it (multi-worker mode turns it on deliberately).
        reuse = 1 if self.reuse_port else 0
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", reuse),
                # The largest method's need (a full group Send); each method
                # refuses more than its own share (rossby.server.sizes).
                ("grpc.max_receive_message_length", max_receive_bytes(self.settings)),
                *connection_options(self.settings),
            ]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

    async def start(self) -> int:
        """Check the schema, bind, start serving; answer the bound port."""
        await self.store.check_schema()
        credentials = server_credentials(self.settings)
        self.server = self._build_server()
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(self.settings.listen)
            else:
                self.port = self.server.add_secure_port(self.settings.listen, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.settings.listen}: {exc}") from None
        # Built after binding: Hawk signs the real port when listening on :0.
        self.service = add_rossby_service(self.server, self)
        await self.service.start()
        await self.server.start()
        await self._set_health(True)
        self._watcher = asyncio.create_task(self._watch_store(), name="rossby-health")
        self._housekeeper = asyncio.create_task(self._housekeep(), name="rossby-housekeeping")
        log.info(
            "serving",
            listen=f"{self.settings.listen_host}:{self.port}",
            tls="mutual" if self.settings.tls_client_ca else bool(credentials),
            store=self.settings.store.split("?")[0],
            region=self.settings.region or None,
        )
        return self.port

    async def _set_health(self, ok: bool) -> None:
        self.store_ok = ok
        self.metrics.store_up.set(1 if ok else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_store(self) -> None:
        """Ping the store every ``health_interval``; health follows the answer.

        A ping that fails, or has not answered within ``health_timeout``,
        turns health NOT_SERVING; the first ping that succeeds turns it back.
        At most one ping is in flight: a slow one is waited for, never
        stacked (a wedged SQLite file would otherwise queue a ping per tick
        behind it).
        """
        interval, timeout = self.settings.health_interval, self.settings.health_timeout
        ping: asyncio.Task[None] | None = None
        try:
            while True:
                if ping is None:
                    ping = asyncio.create_task(self.store.ping())
                done, _ = await asyncio.wait({ping}, timeout=timeout)
                error: BaseException | None
                if done:
                    error = None if ping.cancelled() else ping.exception()
                    ping = None
                else:
                    error = TimeoutError(f"no answer within {timeout}s")
                ok = error is None
                if ok != self.store_ok:
                    if ok:
                        log.info("store_reachable")
                    else:
                        reason = getattr(error, "reason", None) or type(error).__name__
                        log.warning("store_unreachable", reason=reason)
                    await self._set_health(ok)
                await asyncio.sleep(interval)
        finally:
            if ping is not None:
                ping.cancel()

    async def _housekeep(self) -> None:
        """Purge expired rows every ``housekeeping_interval`` seconds.

        Backends with native TTL (Cassandra) answer 0 at no cost; SQLite
        deletes in small batches. Failures are logged and retried next time:
        expired rows are already invisible to reads, so a late purge only
        costs disk space.
        """
        while True:
            await asyncio.sleep(self.settings.housekeeping_interval)
            try:
                removed = await self.store.purge_expired()
            except Exception as exc:
                log.warning("housekeeping_failed", error=type(exc).__name__)
                continue
            if removed:
                log.info("expired_purged", rows=removed)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new RPCs, let in-flight ones finish within ``grace``."""
        self.stopping.set()
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(self.settings.grace if grace is None else grace)
            self.server = None
        if self.service is not None:
            await self.service.close()
        await self.store.close()
        self._stopped.set()
        log.info("stopped")

    async def wait_closed(self) -> None:
        await self._stopped.wait()


async def run(
    settings: Settings,
    *,
    reuse_port: bool = False,
    export_metrics: bool = True,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """One serving process: serve until a signal, then stop cleanly.

    ``rossby serve`` with one worker calls this directly; with several, each
    worker calls it with ``reuse_port`` and without its own metrics endpoint
    (the supervisor serves theirs, see ``rossby.server.workers``).
    """
    server = RossbyServer(settings, reuse_port=reuse_port)
    exporter = None
    # Handlers first: a signal during start-up stops the server right after.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if export_metrics and settings.metrics_listen:
            exporter = start_exporter(settings.metrics_listen, server.metrics.registry)
            host = settings.metrics_listen.rpartition(":")[0]
            log.info("metrics", listen=f"{host}:{exporter.port}")
    except BaseException:
        await server.stop(0)
        raise
    try:
        await stop.wait()
        log.info("stopping", grace=settings.grace)
        await server.stop()
    finally:
        if exporter is not None:
            exporter.close()


async def serve(settings: Settings) -> int:
    """``rossby serve``: one process, or a supervisor of ``workers`` processes."""
    from rossby.server.workers import supervise, worker_count

    workers = worker_count(settings)
    log.info("config", workers=workers, settings=settings.redacted())
    if workers == 1:
        await run(settings)
        return 0
    return await supervise(settings, workers)
