"""Server lifecycle: build the grpc.aio server, serve, stop gracefully.

``RossbyServer`` is used in-process by tests and by ``rossby serve``; the
latter adds signal handling. Health and reflection are always registered so
``grpcurl -plaintext 127.0.0.1:1205 list`` works without .proto files.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rossby.config import Settings
from rossby.logging import get_logger
from rossby.server.notify import Notifier
from rossby.server.registration import EXPIRED_GRACE
from rossby.server.service import RossbyService, add_rossby_service
from rossby.store import Store, StoreOptions, open_store
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

SERVICE_NAME = rossby_pb2.DESCRIPTOR.services_by_name["Rossby"].full_name


def store_options(settings: Settings, clock: Callable[[], float] = time.time) -> StoreOptions:
    return StoreOptions(
        message_ttl=settings.message_ttl,
        pending_cap=settings.pending_cap,
        registration_ttl=float(settings.code_ttl) + EXPIRED_GRACE,
        clock=clock,
    )


class RossbyServer:
    """One server process: a store, the Rossby service, health, reflection."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store or open_store(settings.store, store_options(settings, clock))
        self.notifier = notifier
        self.service: RossbyService | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._stopped = asyncio.Event()

    def _build_server(self) -> grpc.aio.Server:
        # SO_REUSEPORT off: a second server on a busy port must fail, not
        # silently share it (multi-worker mode turns it on deliberately).
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
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
        self.server = self._build_server()
        try:
            self.port = self.server.add_insecure_port(self.settings.listen)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.settings.listen}: {exc}") from None
        # Built after binding: Hawk signs the real port when listening on :0.
        self.service = add_rossby_service(self.server, self)
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            listen=f"{self.settings.listen_host}:{self.port}",
            store=self.settings.store.split("?")[0],
            region=self.settings.region or None,
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new RPCs, let in-flight ones finish within ``grace``."""
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


async def run(settings: Settings) -> None:
    """``rossby serve``: serve until SIGINT or SIGTERM, then stop cleanly."""
    server = RossbyServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", grace=settings.grace)
    await server.stop()
