"""The Rossby gRPC service: wiring of handlers, Hawk, errors and logs.

Handlers live in ``registration`` (Register, Authorize), ``inbox``
(RequestKey, Send, Fetch, Ack), ``prekeys`` (UploadPrekeys,
GetPrekeyStatus, ClaimPrekeys), ``push.rpcs`` (GetPushConfig,
SetPushTarget, ClearPushTarget), ``account_rpcs`` and ``realtime``
(Subscribe); ``rossby.server.wiring`` builds them and hands them to
``RossbyService``. This module gives each one its Hawk wrapper,
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
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from rossby import errors
from rossby.config import Settings
from rossby.hawk import HawkVerifier
from rossby.logging import get_logger
from rossby.server.account_rpcs import AccountRpcs
from rossby.server.activity import Activity
from rossby.server.auth import HawkAuth, Identity
from rossby.server.caller import Caller
from rossby.server.compaction import Compactor
from rossby.server.idle import IdleDevices
from rossby.server.inbox import Inbox
from rossby.server.logtags import box_tag
from rossby.server.metrics import Metrics
from rossby.server.notify import Notifier
from rossby.server.prekeys import Prekeys
from rossby.server.push.dispatch import Dispatcher
from rossby.server.push.rpcs import PushRpcs
from rossby.server.ratelimit import RateLimit, device_key
from rossby.server.realtime import Realtime
from rossby.server.registration import Registrar
from rossby.server.replay import ReplayGuard
from rossby.server.sizes import limit_size, request_limits
from rossby.status import INTERNAL_STATUS, status_code, to_grpc_status
from rossby.v1 import rossby_pb2 as pb

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
#: so a second Ack through the same position changes nothing). Not
#: UploadPrekeys (a replay would put back one-time keys claimed since) nor
#: ClaimPrekeys (a replay would take more).
CLAIM_ALONGSIDE = frozenset(
    {
        "RequestKey",
        "Fetch",
        "Ack",
        "GetLinkOffer",
        "KeyLog",
        "GetProfile",
        "ListSenderRules",
        "GetPrekeyStatus",
        "GetPushConfig",
    }
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
    """The Rossby service of one process: its handlers, each wrapped once.

    Receives every part built (``rossby.server.wiring``); owns only the
    per-RPC concerns: Hawk, the error hook, the log line and metrics.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        notifier: Notifier,
        log_key: bytes,
        registrar: Registrar,
        inbox: Inbox,
        prekeys: Prekeys,
        compactor: Compactor,
        account_rpcs: AccountRpcs,
        account_limit: RateLimit,
        realtime: Realtime,
        verifier: HawkVerifier,
        replay_guard: ReplayGuard,
        activity: Activity | None = None,
        idle: IdleDevices | None = None,
        push_rpcs: PushRpcs,
        dispatcher: Dispatcher,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier
        self._log_key = log_key
        self.registrar = registrar
        self.inbox = inbox
        self.prekeys = prekeys
        self.compactor = compactor
        self.account_rpcs = account_rpcs
        self.account_limit = account_limit
        self.realtime = realtime
        self.verifier = verifier
        self.replay_guard = replay_guard
        #: Told of every verified call (``rossby.server.activity``).
        self.activity = activity
        self.idle = idle
        self.push_rpcs = push_rpcs
        self.dispatcher = dispatcher

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        auth = HawkAuth(
            self.verifier,
            service="rossby.v1.Rossby",
            on_error=abort_with_error,
            claim=self.replay_guard.claim,
            on_verified=None if self.activity is None else self.activity.seen,
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
            "UploadPrekeys": signed(
                "UploadPrekeys",
                self.prekeys.upload,
                pb.UploadPrekeysRequest,
                pb.UploadPrekeysResponse,
            ),
            "GetPrekeyStatus": signed(
                "GetPrekeyStatus",
                self.prekeys.get_status,
                pb.GetPrekeyStatusRequest,
                pb.GetPrekeyStatusResponse,
            ),
            "ClaimPrekeys": signed(
                "ClaimPrekeys",
                self.prekeys.claim,
                pb.ClaimPrekeysRequest,
                pb.ClaimPrekeysResponse,
            ),
        }
        for name, (fn, req, resp) in self.account_rpcs.signed().items():
            handlers[name] = signed(name, fn, req, resp)
        for name, (fn, req, resp) in self.push_rpcs.signed().items():
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
        await self.dispatcher.close()
        await self.compactor.close()
        if self.idle is not None:
            await self.idle.close()
        if self.activity is not None:
            await self.activity.close()
        await self.notifier.close()


def add_rossby_service(server: grpc.aio.Server, service: RossbyService) -> None:
    """Register the Rossby service's handlers on ``server``."""
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("rossby.v1.Rossby", service.handlers()),)
    )
