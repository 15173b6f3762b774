"""The Rossby gRPC service: wiring of handlers, Hawk, errors and logs.

Handlers live in ``registration`` (Register, Authorize) and ``inbox``
(RequestKey, Send, Fetch, Ack). This module gives each one its Hawk wrapper,
the single error hook that maps ``RossbyError`` to a status (and anything
else to a bare INTERNAL), and one structured log line per RPC.

The per-RPC line and the RPC metrics come from one wrapper around each
method handler (``_observed``), outside Hawk, so rejected calls are counted
and logged too. The line carries the method, the gRPC status, the error
reason, the duration and, for signed calls, a *box tag*: the first 12 hex
digits of an HMAC of the box id under a key derived from ``server_secret``
(``rossby.server.logtags``; no raw box or device id is ever logged).
Tags are stable across workers, restarts and regions (which share the
secret), so one box's calls can be followed, but a log reader cannot test
a known box id against them. Payloads, keys, codes and contacts are never
logged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from rossby import errors
from rossby.contacts import ContactHasher
from rossby.hawk import HawkVerifier, NonceCache
from rossby.logging import get_logger
from rossby.server.account_rpcs import AccountRpcs
from rossby.server.auth import HawkAuth, Identity, identity_lookup
from rossby.server.authcache import AuthCache
from rossby.server.compaction import Compactor
from rossby.server.hawkkeys import HawkKeyUnavailable
from rossby.server.inbox import Caller, Inbox
from rossby.server.logtags import box_tag, log_key
from rossby.server.metrics import MeteredNotifier, Metrics
from rossby.server.notify import Notifier, NotifierConfig, build_notifier
from rossby.server.ratelimit import RateLimit, device_key
from rossby.server.realtime import Realtime
from rossby.server.registration import ContactCodeLimit, Registrar
from rossby.server.replay import ReplayGuard
from rossby.server.secrets import load_hawk_keyring, load_secret
from rossby.server.sizes import limit_size, request_limits
from rossby.status import INTERNAL_STATUS, status_code, to_grpc_status
from rossby.store import DeviceState
from rossby.v1 import rossby_pb2 as pb

if TYPE_CHECKING:
    from rossby.config import Settings
    from rossby.server.app import RossbyServer

log = get_logger("rossby.rpc")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

#: Signed calls under ``account_rate_per_device``, counted per call before
#: it runs: each sends a code to a contact (AddContact: SMS cost, and the
#: per-contact limit does not stop one device trying many contacts) or
#: appends to the box's key log, which is kept forever and which every
#: correspondent downloads to verify (ApproveLink, RevokeDevice,
#: RotateKeys). Other account calls overwrite bounded rows or only read;
#: SetSenderRule is left out because the SDK sets one per new recipient
#: under contacts-only (docs/security.md, "Rate limits and abuse").
ACCOUNT_LIMITED = frozenset({"AddContact", "ApproveLink", "RevokeDevice", "RotateKeys"})

#: Calls whose handler may run while the request's replay claim is in
#: flight (``HawkAuth.unary``): reads, and Ack (a cursor only moves forward,
#: so a second Ack through the same position changes nothing).
CLAIM_ALONGSIDE = frozenset(
    {"RequestKey", "Fetch", "Ack", "GetLinkOffer", "KeyLog", "GetProfile", "ListSenderRules"}
)


def _always(request: object) -> bool:
    return True


def _stored_send(request: pb.SendRequest) -> bool:
    """A stored Send is idempotent by message id, so a replay's handler adds
    nothing (its copy is answered DUPLICATE or dropped by id in Fetch). An
    ephemeral one goes straight to live streams, so its claim comes first."""
    return not request.ephemeral


@dataclass(slots=True)
class CallInfo:
    """What the handler learns about the current RPC, for its log line."""

    box: str | None = None
    reason: str | None = None


_CALL: ContextVar[CallInfo | None] = ContextVar("rossby_rpc_call", default=None)


async def abort_with_error(exc: Exception, context: Any) -> None:
    """The single error hook: typed errors keep their code and reason."""
    info = _CALL.get()
    if isinstance(exc, errors.RossbyError) and status_code(exc) != grpc.StatusCode.INTERNAL:
        if info is not None:
            info.reason = exc.reason
        await context.abort_with_status(to_grpc_status(exc))
    if info is not None:
        info.reason = "INTERNAL"
    log.error("internal_error", exc_info=exc)
    await context.abort_with_status(INTERNAL_STATUS)


def notifier_config(settings: Settings) -> NotifierConfig:
    return NotifierConfig(
        kind=settings.notifier,  # type: ignore[arg-type]
        outbox_dir=settings.outbox_dir,
        smtp_host=settings.smtp_host or None,
        smtp_port=settings.smtp_port or None,
        smtp_security=settings.smtp_security,  # type: ignore[arg-type]
        smtp_username=settings.smtp_username or None,
        smtp_password=settings.smtp_password or None,
        smtp_from=settings.smtp_from or None,
        webhook_url=settings.webhook_url or None,
        webhook_token=settings.webhook_token or None,
        phone_via=settings.phone_via,  # type: ignore[arg-type]
        timeout_seconds=settings.notifier_timeout,
    )


def _observed(
    method: str, handler: grpc.RpcMethodHandler, metrics: Metrics
) -> grpc.RpcMethodHandler:
    """One log line and the RPC metrics per call of a unary handler.

    The status is what the client gets: OK, the code the error hook aborted
    with (Hawk failures included), CANCELLED, or UNKNOWN for an exception
    no hook handled.
    """
    inner = handler.unary_unary
    if inner is None:  # streaming methods: not wrapped yet
        return handler
    in_flight = metrics.rpc_in_flight.labels(method)

    async def behavior(request: Any, context: Any) -> Any:
        info = CallInfo()
        token = _CALL.set(info)
        in_flight.inc()
        start = time.perf_counter()
        code = "OK"
        try:
            return await inner(request, context)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except BaseException:
            aborted = context.code()
            code = aborted.name if isinstance(aborted, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            _CALL.reset(token)
            elapsed = time.perf_counter() - start
            in_flight.dec()
            metrics.observe_rpc(method, code, elapsed)
            fields: dict[str, Any] = {"method": method, "status": code}
            if info.reason is not None and code != "OK":
                fields["reason"] = info.reason
            fields["ms"] = round(elapsed * 1000, 2)
            if info.box is not None:
                fields["box"] = info.box
            log.info("rpc", **fields)

    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _caller(identity: Identity) -> Caller:
    return Caller(uuid.UUID(identity.box_id), uuid.UUID(identity.device_id))


class RossbyService:
    """Owns the per-process parts: notifier, Hawk verifier, nonce cache."""

    def __init__(self, app: RossbyServer, notifier: Notifier | None = None) -> None:
        settings = app.settings
        self.settings = settings
        self.store = app.store
        self.metrics = app.metrics
        self.notifier: Notifier = MeteredNotifier(
            notifier or build_notifier(notifier_config(settings)), app.metrics
        )
        hasher = ContactHasher(load_secret(settings, "contact_hash_key"))
        server_secret = load_secret(settings, "server_secret")
        self._log_key = log_key(server_secret)
        self.auth_cache = AuthCache(settings.auth_cache_ttl)
        self.hawk_keys = load_hawk_keyring(settings)
        self.registrar = Registrar(
            app.store,
            self.notifier,
            hasher,
            server_secret,
            self.hawk_keys,
            log_key=self._log_key,
            home_region=settings.region or "dc1",
            code_ttl=settings.code_ttl,
            code_attempts=settings.code_attempts,
            resend_interval=settings.resend_interval,
            max_contacts=settings.max_contacts,
            default_phone_region=settings.default_phone_region,
            clock=app.clock,
            contact_codes=ContactCodeLimit(
                settings.register_contact_limit,
                settings.register_contact_window,
                settings.register_contact_ceiling,
                tag_key=server_secret,
            ),
            register_per_address=RateLimit(
                "register_rate_per_address",
                settings.register_rate_per_address,
                reason="ADDRESS_RATE_LIMITED",
            ),
            authorize_failures_per_address=RateLimit(
                "authorize_failures_per_address",
                settings.authorize_failures_per_address,
                reason="ADDRESS_RATE_LIMITED",
            ),
        )
        self.compactor = Compactor(app.store, settings.compact_interval)
        self.inbox = Inbox(
            app.store,
            hasher,
            max_message_bytes=settings.max_message_bytes,
            max_recipients=settings.max_recipients,
            default_phone_region=settings.default_phone_region,
            clock=app.clock,
            auth_cache=self.auth_cache,
            send_limit=RateLimit(
                "send_rate_per_device", settings.send_rate_per_device, reason="SEND_RATE_LIMITED"
            ),
            compactor=self.compactor,
        )
        self.account_limit = RateLimit(
            "account_rate_per_device",
            settings.account_rate_per_device,
            reason="ACCOUNT_RATE_LIMITED",
        )
        self.account_rpcs = AccountRpcs(
            settings,
            app.store,
            self.registrar,
            self.inbox,
            self.notifier,
            hasher,
            server_secret,
            app.clock,
            self.auth_cache,
        )
        self.realtime = Realtime(app, server_secret)
        self.inbox.realtime = self.realtime
        # Open streams re-check their device like every call does (within
        # auth_cache_ttl), and at once when this process changes it.
        self.realtime.device_check = self._active_since
        self.auth_cache.device_listeners.append(self.realtime.device_changed)
        self.verifier = HawkVerifier(
            identity_lookup(self._hawk_key),
            host=settings.hawk_host,
            port=settings.public_port or app.port,
            nonce_cache=NonceCache(settings.hawk_skew),
            skew_seconds=settings.hawk_skew,
            clock=app.clock,
        )
        self.replay_guard = ReplayGuard(app.store, skew_seconds=settings.hawk_skew)

    async def _hawk_key(self, identity: Identity) -> bytes | None:
        """The caller's Hawk key, opened from its stored (wrapped) form.

        Unwrapping happens inside the cache's loader, so it costs one
        AES-GCM open per cache miss and nothing on a hit. A key that does
        not open (its master key was retired, or the row was tampered with)
        refuses the call like an unknown device, and is logged for the
        operator; refusals are not cached.
        """
        box_id, device_id = uuid.UUID(identity.box_id), uuid.UUID(identity.device_id)
        key, _ = await self._hawk_key_entry(box_id, device_id)
        return key

    async def _hawk_key_entry(
        self, box_id: uuid.UUID, device_id: uuid.UUID
    ) -> tuple[bytes | None, float]:
        async def load() -> bytes | None:
            device = await self.store.get_device(box_id, device_id)
            if device is None or device.state is not DeviceState.ACTIVE:
                return None
            try:
                return self.hawk_keys.unwrap(box_id, device_id, device.hawk_key)
            except HawkKeyUnavailable as exc:
                log.error(
                    "hawk_key_unavailable",
                    key_id=exc.key_id,
                    box=box_tag(self._log_key, str(box_id)),
                    hint="the master key that wrapped it is not in hawk_keys",
                )
                return None

        return await self.auth_cache.hawk_keys.get_entry(
            (box_id, device_id), load, lambda key: key is not None
        )

    async def _active_since(self, box_id: uuid.UUID, device_id: uuid.UUID) -> float | None:
        """For open streams: when "this device is active" was read (monotonic,
        as the auth cache keeps it), or None once it is not."""
        key, read_at = await self._hawk_key_entry(box_id, device_id)
        return None if key is None else read_at

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        auth = HawkAuth(
            self.verifier,
            service="rossby.v1.Rossby",
            on_error=abort_with_error,
            claim=self.replay_guard.claim,
        )

        def signed(
            method: str,
            fn: Callable[[Any, Caller], Awaitable[Resp]],
            req: type[Req],
            resp: type[Resp],
        ) -> grpc.RpcMethodHandler:
            limit = self.account_limit if method in ACCOUNT_LIMITED else None

            async def call(request: Req, context: Any, identity: Identity) -> Resp:
                info = _CALL.get()
                if info is not None:
                    info.box = box_tag(self._log_key, identity.box_id)
                if limit is not None:
                    await limit.hit(device_key(identity.box_id, identity.device_id))
                return await fn(request, _caller(identity))

            if method == "Send":
                return auth.unary(method, call, req, resp, overlap=_stored_send)
            if method in CLAIM_ALONGSIDE:
                return auth.unary(method, call, req, resp, overlap=_always)
            return auth.unary(method, call, req, resp)

        def public(
            method: str, fn: Callable[[Any], Awaitable[Resp]], req: type[Req], resp: type[Resp]
        ) -> grpc.RpcMethodHandler:
            async def call(request: Req, context: Any) -> Resp:
                return await fn(request)

            return auth.public_unary(call, req, resp)

        def public_with_peer(
            fn: Callable[[Any, str], Awaitable[Resp]], req: type[Req], resp: type[Resp]
        ) -> grpc.RpcMethodHandler:
            """A public call that learns the client's address (per-address limits)."""

            async def call(request: Req, context: Any) -> Resp:
                return await fn(request, context.peer())

            return auth.public_unary(call, req, resp)

        handlers = {
            "Register": public_with_peer(
                self.registrar.register, pb.RegisterRequest, pb.RegisterResponse
            ),
            "Authorize": public_with_peer(
                self.registrar.authorize, pb.AuthorizeRequest, pb.AuthorizeResponse
            ),
            "RequestKey": signed(
                "RequestKey", self.inbox.request_key, pb.RequestKeyRequest, pb.RequestKeyResponse
            ),
            "Send": signed("Send", self.inbox.send, pb.SendRequest, pb.SendResponse),
            "Fetch": signed("Fetch", self.inbox.fetch, pb.FetchRequest, pb.FetchResponse),
            "Ack": signed("Ack", self.inbox.ack, pb.AckRequest, pb.AckResponse),
        }
        for name, (fn, req, resp) in self.account_rpcs.signed().items():
            handlers[name] = signed(name, fn, req, resp)
        for name, (fn, req, resp) in self.account_rpcs.public().items():
            handlers[name] = public(name, fn, req, resp)
        # Inside the log wrapper, so a refused oversized call is logged and
        # counted with its reason like any other.
        limits = request_limits(self.settings)

        def sized(name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
            return limit_size(handler, limits[f"/rossby.v1.Rossby/{name}"], abort_with_error)

        observed = {
            name: _observed(name, sized(name, h), self.metrics) for name, h in handlers.items()
        }
        # A stream logs and counts itself (rossby.server.realtime).
        observed["Subscribe"] = sized(
            "Subscribe",
            self.realtime.subscribe_handler(
                auth, abort_with_error, lambda box_id: box_tag(self._log_key, box_id)
            ),
        )
        return observed

    async def start(self) -> None:
        await self.realtime.start()

    async def close(self) -> None:
        await self.realtime.close()
        await self.compactor.close()
        await self.notifier.close()


def add_rossby_service(server: grpc.aio.Server, app: RossbyServer) -> RossbyService:
    """Register the Rossby service's handlers on ``server``."""
    service = RossbyService(app, notifier=app.notifier)
    service.realtime.bind(reuse_port=app.reuse_port)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("rossby.v1.Rossby", service.handlers()),)
    )
    return service
