"""The Rossby gRPC service: wiring of handlers, Hawk, errors and logs.

Handlers live in ``registration`` (Register, Authorize) and ``inbox``
(RequestKey, Send, Fetch, Ack). This module gives each one its Hawk wrapper,
the single error hook that maps ``RossbyError`` to a status (and anything
else to a bare INTERNAL), and one structured log line per RPC.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from rossby import errors
from rossby.contacts import ContactHasher
from rossby.hawk import HawkVerifier, NonceCache
from rossby.logging import get_logger
from rossby.server.auth import HawkAuth, Identity, identity_lookup
from rossby.server.inbox import Caller, Inbox
from rossby.server.notify import Notifier, NotifierConfig, build_notifier
from rossby.server.registration import Registrar
from rossby.server.secrets import load_secret
from rossby.status import INTERNAL_STATUS, status_code, to_grpc_status
from rossby.store import DeviceState
from rossby.v1 import rossby_pb2 as pb

if TYPE_CHECKING:
    from rossby.config import Settings
    from rossby.server.app import RossbyServer

log = get_logger("rossby.rpc")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


async def abort_with_error(exc: Exception, context: Any) -> None:
    """The single error hook: typed errors keep their code and reason."""
    if isinstance(exc, errors.RossbyError) and status_code(exc) != grpc.StatusCode.INTERNAL:
        await context.abort_with_status(to_grpc_status(exc))
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


def _logged(method: str, fn: Callable[..., Awaitable[Resp]]) -> Callable[..., Awaitable[Resp]]:
    """One line per RPC: method, status, duration. Never payloads or ids."""

    async def wrapper(*args: Any) -> Resp:
        start = time.perf_counter()
        status = "OK"
        try:
            return await fn(*args)
        except errors.RossbyError as exc:
            status = f"{exc.code}:{exc.reason}"
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            log.info(
                "rpc",
                method=method,
                status=status,
                ms=round((time.perf_counter() - start) * 1000, 2),
            )

    return wrapper


def _caller(identity: Identity) -> Caller:
    return Caller(uuid.UUID(identity.box_id), uuid.UUID(identity.device_id))


class RossbyService:
    """Owns the per-process parts: notifier, Hawk verifier, nonce cache."""

    def __init__(self, app: RossbyServer, notifier: Notifier | None = None) -> None:
        settings = app.settings
        self.store = app.store
        self.notifier = notifier or build_notifier(notifier_config(settings))
        hasher = ContactHasher(load_secret(settings, "contact_hash_key"))
        self.registrar = Registrar(
            app.store,
            self.notifier,
            hasher,
            load_secret(settings, "server_secret"),
            home_region=settings.region or "dc1",
            code_ttl=settings.code_ttl,
            code_attempts=settings.code_attempts,
            resend_interval=settings.resend_interval,
            max_contacts=settings.max_contacts,
            default_phone_region=settings.default_phone_region,
            clock=app.clock,
        )
        self.inbox = Inbox(
            app.store,
            hasher,
            max_message_bytes=settings.max_message_bytes,
            max_recipients=settings.max_recipients,
            default_phone_region=settings.default_phone_region,
            clock=app.clock,
        )
        self.verifier = HawkVerifier(
            identity_lookup(self._hawk_key),
            host=settings.hawk_host,
            port=settings.public_port or app.port,
            nonce_cache=NonceCache(settings.hawk_skew),
            skew_seconds=settings.hawk_skew,
            clock=app.clock,
        )

    async def _hawk_key(self, identity: Identity) -> bytes | None:
        device = await self.store.get_device(
            uuid.UUID(identity.box_id), uuid.UUID(identity.device_id)
        )
        if device is None or device.state is not DeviceState.ACTIVE:
            return None
        return device.hawk_key

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        auth = HawkAuth(self.verifier, service="rossby.v1.Rossby", on_error=abort_with_error)

        def signed(
            method: str,
            fn: Callable[[Any, Caller], Awaitable[Resp]],
            req: type[Req],
            resp: type[Resp],
        ) -> grpc.RpcMethodHandler:
            async def call(request: Req, context: Any, identity: Identity) -> Resp:
                return await fn(request, _caller(identity))

            return auth.unary(method, _logged(method, call), req, resp)

        def public(
            method: str, fn: Callable[[Any], Awaitable[Resp]], req: type[Req], resp: type[Resp]
        ) -> grpc.RpcMethodHandler:
            async def call(request: Req, context: Any) -> Resp:
                return await fn(request)

            return auth.public_unary(_logged(method, call), req, resp)

        return {
            "Register": public(
                "Register", self.registrar.register, pb.RegisterRequest, pb.RegisterResponse
            ),
            "Authorize": public(
                "Authorize", self.registrar.authorize, pb.AuthorizeRequest, pb.AuthorizeResponse
            ),
            "RequestKey": signed(
                "RequestKey", self.inbox.request_key, pb.RequestKeyRequest, pb.RequestKeyResponse
            ),
            "Send": signed("Send", self.inbox.send, pb.SendRequest, pb.SendResponse),
            "Fetch": signed("Fetch", self.inbox.fetch, pb.FetchRequest, pb.FetchResponse),
            "Ack": signed("Ack", self.inbox.ack, pb.AckRequest, pb.AckResponse),
        }

    async def close(self) -> None:
        await self.notifier.close()


def add_rossby_service(server: grpc.aio.Server, app: RossbyServer) -> RossbyService:
    """Register the Rossby service's handlers on ``server``."""
    service = RossbyService(app, notifier=app.notifier)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("rossby.v1.Rossby", service.handlers()),)
    )
    return service
