"""Real-time delivery: Subscribe streams, the hub, presence and peer notify.

``Realtime`` is the one object the rest of the server sees:

* the process wiring (``rossby.server.wiring``) builds it with what it
  needs (settings, store, metrics, the stopping event, the device check),
  hands it to the inbox (Send calls ``queued``/``ephemeral`` after each
  enqueue) and its ``subscribe_handler`` to the Rossby service;
* the server calls ``bind`` before serving: it builds the internal
  ``rossby.v1.Peer`` service's own gRPC server on its own port
  (``peer_listen``, by default a free port on the listen host; with
  ``--workers`` one per worker, since the shared port reaches a random
  worker) and works out the address peers reach it at (``peer_address``);
  the server's ``start`` then calls ``start``;
* ``close`` runs when the service closes, after the streams ended.

The design and why it loses nothing is in docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from rossby import errors
from rossby.config import Settings
from rossby.errors import ConfigError
from rossby.hawk import HAWK_UNKNOWN_ID
from rossby.logging import get_logger
from rossby.server import validate
from rossby.server.auth import HawkAuth, parse_hawk_id
from rossby.server.metrics import Metrics
from rossby.server.realtime.hub import Hub
from rossby.server.realtime.metrics import RealtimeMetrics
from rossby.server.realtime.peer import SERVICE as PEER_SERVICE
from rossby.server.realtime.peer import PeerClient, PeerService, peer_key
from rossby.server.realtime.stream import Stream
from rossby.server.sizes import SMALL, limit_size, request_limits
from rossby.server.tls import peer_channel_factory, server_credentials
from rossby.status import INTERNAL_STATUS, to_grpc_status
from rossby.store import Store
from rossby.v1 import rossby_pb2 as pb

log = get_logger("rossby.realtime")

#: Seconds in-flight Notify calls get when the process stops.
PEER_GRACE = 1.0
#: Seconds past ``presence_cache_ttl`` a new stream waits for its resync
#: read: room for scheduling and for clocks that tick at slightly other rates.
RESYNC_MARGIN = 0.1
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})

ErrorHook = Callable[[Exception, Any], Awaitable[object]]
DeviceCheck = Callable[[uuid.UUID, uuid.UUID], Awaitable[float | None]]
PrekeysLow = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]


def split_peer_address(value: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port or None)."""
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host.strip("[]"), int(port) or None
    return value.strip("[]"), None


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _own_host() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class Realtime:
    """Subscribe, the hub, presence and the peer service of one process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        stopping: asyncio.Event,
        server_secret: bytes,
        device_check: DeviceCheck,
        prekeys_low: PrekeysLow | None = None,
        on_stream_open: Callable[[uuid.UUID, uuid.UUID], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        #: Set when the server begins to stop: every open stream ends then.
        self.stopping = stopping
        self.rpc_metrics = metrics
        self.server_id = uuid.uuid4().hex
        self.metrics = RealtimeMetrics(metrics.registry)
        key = peer_key(server_secret)
        self.peers = PeerClient(
            key, self.server_id, self.metrics, peer_channel_factory(settings), clock=clock
        )
        self.hub = Hub(
            store,
            self.metrics,
            self.peers,
            server_id=self.server_id,
            region=settings.region or "",
            presence_ttl=settings.presence_ttl,
            presence_cache_ttl=settings.presence_cache_ttl,
            clock=clock,
            on_stream_open=on_stream_open,
        )
        self.peer_service = PeerService(
            key,
            self.server_id,
            self.hub,
            self.metrics,
            skew_seconds=settings.hawk_skew,
            clock=clock,
        )
        self.address = ""
        #: When "this device is active" was read, None once it is not (the
        #: Hawk key lookup through the auth cache, ``DeviceKeys.active_since``).
        self.device_check = device_check
        #: The device's ``prekeys_low`` hint for ``live`` and heartbeat
        #: events (``PrekeyStatus.low``, cached per device).
        self.prekeys_low = prekeys_low
        self._streams: set[Stream] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._server: grpc.aio.Server | None = None

    # -- wiring --------------------------------------------------------------

    def bind(self, *, reuse_port: bool) -> str:
        """Build the Peer service's own gRPC server, bind its port, and work
        out the address peers reach it at; answer that address. ``start``
        starts it.

        The Peer service never shares a server with the public API: the
        public port does not serve Peer, and the Peer port serves nothing
        else (a worker's private port once reached the whole API, so a
        replay could be aimed at a chosen worker).
        """
        s = self.settings
        host, fixed = split_peer_address(s.peer_address) if s.peer_address else ("", None)
        if s.peer_listen:
            listen_host, listen_port = split_peer_address(s.peer_listen)
        else:
            listen_host, listen_port = s.listen_host, fixed
        if reuse_port and (fixed is not None or listen_port is not None):
            raise ConfigError(
                "invalid setting peer_address/peer_listen: with several workers give only a "
                "host; each worker binds a Peer port of its own"
            )
        limits = request_limits(s)
        notify_limit = limits[f"/{PEER_SERVICE}/Notify"]
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                # Notify's own limit, plus room so a request a little over it
                # still gets the typed answer (rossby.server.sizes).
                ("grpc.max_receive_message_length", notify_limit + SMALL),
            ]
        )
        address = _format(listen_host or "::", listen_port or 0)
        credentials = server_credentials(s)
        try:
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind a peer port on {address}: {exc}") from None
        handlers = {
            name: limit_size(handler, limits[f"/{PEER_SERVICE}/{name}"], _abort)
            for name, handler in self.peer_service.handlers().items()
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PEER_SERVICE, handlers),)
        )
        self._server = server
        if not host:
            host = listen_host
            if host in WILDCARD_HOSTS:
                host = _own_host()
                log.warning(
                    "peer_address_guessed",
                    address=host,
                    hint="set peer_address to the address other Rossby servers reach this one at",
                )
        self.address = self.hub.address = _format(host, fixed or bound)
        return self.address

    async def start(self) -> None:
        """Serve Peer and start the hub; after ``bind``."""
        if self._server is None:
            raise RuntimeError("bind the peer port first")
        await self._server.start()
        self.hub.start()
        self._watcher = asyncio.create_task(self._watch_stopping(), name="rossby-rt-stop")
        log.info("realtime", peer_address=self.address, server_id=self.server_id)

    async def _watch_stopping(self) -> None:
        await self.stopping.wait()
        for stream in list(self._streams):
            stream.stop()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for stream in list(self._streams):
            stream.stop()
        await self.hub.close()
        await self.peers.close()
        if self._server is not None:
            await self._server.stop(PEER_GRACE)
            self._server = None

    # -- hooks for Send and account changes -----------------------------------

    def device_changed(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """This process revoked or re-keyed the device: its streams here
        check it again now (a revoked one ends before its next event)."""
        self.hub.recheck(box_id, device_id)

    def queued(self, box_id: uuid.UUID, position: int) -> None:
        self.hub.queued(box_id, position)

    def ephemeral(self, box_id: uuid.UUID, message: pb.QueuedMessage) -> None:
        self.hub.ephemeral(box_id, message)

    # -- Subscribe -------------------------------------------------------------

    def subscribe_handler(
        self, auth: HawkAuth, on_error: ErrorHook, tag: Callable[[str], str]
    ) -> grpc.RpcMethodHandler:
        """``rossby.v1.Rossby/Subscribe``: Hawk over the request bytes, once."""
        resource = auth.resource("Subscribe")
        metrics = self.rpc_metrics

        async def behavior(raw: bytes, context: Any) -> None:
            start = time.perf_counter()
            code, reason, box = "OK", None, None
            stream: Stream | None = None
            try:
                verified = await auth.authenticate(raw, context, resource)
                identity = parse_hawk_id(verified.id)
                if identity is None:
                    raise errors.Unauthenticated("Unknown credentials", reason=HAWK_UNKNOWN_ID)
                box = tag(identity.box_id)
                request = _parse(raw)
                stream = self._stream(identity.box_id, identity.device_id, request)
                self._streams.add(stream)
                await stream.run(context, limit=self.settings.stream_limit)
            except grpc.aio.AbortError:
                code = _code(context)
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception as exc:
                reason = getattr(exc, "reason", "INTERNAL")
                try:
                    await on_error(exc, context)
                finally:
                    code = _code(context)
                raise
            finally:
                if stream is not None:
                    self._streams.discard(stream)
                metrics.rpc_requests.labels("Subscribe", code).inc()
                fields: dict[str, Any] = {"method": "Subscribe", "status": code}
                if reason is not None and code != "OK":
                    fields["reason"] = reason
                fields["s"] = round(time.perf_counter() - start, 3)
                if stream is not None:
                    fields["events"] = stream.events_sent
                    if code == "OK" and stream.ended_by is not None:
                        fields["ended"] = stream.ended_by
                if box is not None:
                    fields["box"] = box
                log.info("rpc", **fields)

        return grpc.unary_stream_rpc_method_handler(behavior)

    def _stream(self, box_id: str, device_id: str, request: pb.SubscribeRequest) -> Stream:
        limit = validate.page_limit(request.limit)
        s = self.settings
        box, device = uuid.UUID(box_id), uuid.UUID(device_id)
        check = self.device_check

        async def authorized() -> float | None:
            return await check(box, device)

        low = self.prekeys_low
        prekeys_low = None
        if low is not None:

            async def prekeys_low() -> bool:
                return await low(box, device)

        return Stream(
            store=self.store,
            hub=self.hub,
            metrics=self.metrics,
            box_id=box,
            device_id=device,
            after=request.after,
            limit=limit,
            bound=s.stream_buffer,
            poll=s.stream_poll,
            stall=s.stream_stall,
            heartbeat=s.stream_heartbeat,
            write_timeout=s.stream_write_timeout,
            max_age=s.stream_max_age,
            clock=self.clock,
            authorized=authorized,
            prekeys_low=prekeys_low,
            recheck=s.auth_cache_ttl,
            resync_after=s.presence_cache_ttl + RESYNC_MARGIN if s.presence_cache_ttl else 0.0,
        )


def _parse(raw: bytes) -> pb.SubscribeRequest:
    try:
        return pb.SubscribeRequest.FromString(raw)
    except DecodeError:
        raise errors.InvalidArgument("request is not a valid rossby.v1.SubscribeRequest") from None


async def _abort(exc: Exception, context: Any) -> None:
    """The peer service's error hook: the typed status, nothing logged."""
    if isinstance(exc, errors.RossbyError):
        await context.abort_with_status(to_grpc_status(exc))
    await context.abort_with_status(INTERNAL_STATUS)


def _code(context: Any) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


__all__ = ["Realtime", "split_peer_address"]
