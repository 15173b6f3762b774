"""Hawk on grpc.aio: handlers that verify the exact request bytes first.

gRPC server interceptors never see the request message, and re-serializing a
parsed message does not reproduce the client's bytes (protobuf encoding is not
canonical). So instead of an interceptor, each Hawk-signed method is
registered *without* a request deserializer: gRPC hands the wrapper the raw
wire bytes, the wrapper verifies Hawk over exactly those bytes, and only then
parses them into the request type and calls the servicer::

    auth = HawkAuth(verifier, service="rossby.v1.Rossby", on_error=abort_with_status)
    handlers = {
        "Register": auth.public_unary(servicer.register, RegisterRequest, RegisterResponse),
        "Send": auth.unary("Send", servicer.send, SendRequest, SendResponse),
        ...
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("rossby.v1.Rossby", handlers),))

The method name is passed again because the Hawk resource is the full method
path and a grpc.aio servicer context does not expose it.

Exemptions are structural: health and reflection are separate services that
never go through this module, and Register/Authorize (``PUBLIC_METHODS``) are
registered with ``public_unary``, which skips Hawk but shares the error hook.

Errors: every exception a wrapped call raises (Hawk failures are
``rossby.errors.Unauthenticated``, a request that does not parse is
``InvalidArgument``, and whatever the servicer raises) goes to the single
``on_error(exc, context)`` hook, which is expected to end the RPC with the
mapped status, e.g. ``s = rossby.status.to_grpc_status(exc)`` (or
``INTERNAL_STATUS`` for a non-Rossby error) then ``await
context.abort(s.code, s.details, s.trailing_metadata)``. A ``HAWK_STALE``
error's metadata (``ts``, ``tsm``) must reach the client in the ErrorInfo:
that is how ``rossby.client.hawk`` corrects its clock. If the hook returns,
or no hook is given, the exception propagates to grpc, which answers
UNKNOWN. Aborts and cancellations are never passed to the hook.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from rossby.errors import InvalidArgument, Unauthenticated
from rossby.hawk import (
    HAWK_MALFORMED,
    HAWK_UNKNOWN_ID,
    HawkVerifier,
    Lookup,
    VerifiedRequest,
    server_authorization_header,
)

AUTHORIZATION: Final = "authorization"
SERVER_AUTHORIZATION: Final = "server-authorization"
PUBLIC_METHODS: Final = frozenset({"Register", "Authorize", "JoinLink", "CompleteLink"})

_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

#: ``(exception, context)``; should abort the RPC with the mapped status.
ErrorHook = Callable[[Exception, Any], Awaitable[object]]

#: Records a verified request deployment-wide; raises ``Unauthenticated``
#: (``HAWK_REPLAY``) when it was accepted before (``rossby.server.replay``).
Claim = Callable[[VerifiedRequest], Awaitable[None]]

#: Told ``(box id, device id)`` of every call whose Hawk header verified:
#: the device is active (``rossby.server.activity``). Must not block.
Verified = Callable[[str, str], None]

#: Whether a parsed request may run while its claim is still in flight: true
#: only when running a replay's handler changes nothing a client can observe
#: (see ``HawkAuth.unary``).
Overlap = Callable[[Any], bool]


def _never(request: Any) -> bool:
    return False


async def _claimed_alongside(claim: Awaitable[None], work: Awaitable[Resp]) -> Resp:
    """Run ``work`` while ``claim`` is in flight; the claim's failure wins.

    A replay is answered ``HAWK_REPLAY`` whatever its handler did, so the
    answer tells a replayer nothing about the handler's outcome.
    """
    pending = asyncio.ensure_future(claim)
    try:
        result = await work
    except asyncio.CancelledError:
        pending.cancel()
        raise
    except BaseException:
        await pending  # a replay's refusal replaces the handler's error
        raise
    await pending
    return result


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed the call: the Hawk id ``<box id>.<device id>``, parsed."""

    box_id: str
    device_id: str

    @property
    def hawk_id(self) -> str:
        return f"{self.box_id}.{self.device_id}"


def parse_hawk_id(hawk_id: str) -> Identity | None:
    """The identity in a Hawk id, or None unless both halves are canonical UUIDs.

    Canonical means lowercase with hyphens, the only form the server issues,
    so one id cannot be spelled two ways.
    """
    box_id, sep, device_id = hawk_id.partition(".")
    if sep and _UUID_RE.fullmatch(box_id) and _UUID_RE.fullmatch(device_id):
        return Identity(box_id, device_id)
    return None


def identity_lookup(lookup: Callable[[Identity], Awaitable[bytes | None]]) -> Lookup:
    """Adapt a key lookup by identity for ``HawkVerifier``.

    Ids that are not ``<uuid>.<uuid>`` are answered "unknown" without a store
    round trip, so garbage never reaches the store.
    """

    async def by_hawk_id(hawk_id: str) -> bytes | None:
        identity = parse_hawk_id(hawk_id)
        if identity is None:
            return None
        return await lookup(identity)

    return by_hawk_id


def authorization_header(context: Any) -> str | None:
    """The single ``authorization`` metadata value; two of them are malformed."""
    found: str | None = None
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            if found is not None:
                raise Unauthenticated("more than one authorization header", reason=HAWK_MALFORMED)
            found = value
    return found


def _identity(verified: VerifiedRequest) -> Identity:
    identity = parse_hawk_id(verified.id)
    if identity is None:  # only if the lookup issued a key for a non-device id
        raise Unauthenticated("Unknown credentials", reason=HAWK_UNKNOWN_ID)
    return identity


def _parse(request_type: type[Req], raw: bytes) -> Req:
    try:
        return request_type.FromString(raw)
    except DecodeError:
        name = request_type.DESCRIPTOR.full_name
        raise InvalidArgument(f"request is not a valid {name}") from None


class HawkAuth:
    """Builds grpc method handlers for one service that share a verifier and a hook.

    ``sign_responses`` adds a Hawk ``server-authorization`` trailer over the
    exact response bytes to every successful unary call, so a client can
    authenticate answers end to end; it costs one HMAC and one hash.
    """

    __slots__ = (
        "_claim",
        "_host",
        "_on_error",
        "_on_verified",
        "_port",
        "_service",
        "_sign_responses",
        "_verifier",
    )

    def __init__(
        self,
        verifier: HawkVerifier,
        *,
        service: str,
        on_error: ErrorHook | None = None,
        sign_responses: bool = True,
        claim: Claim | None = None,
        on_verified: Verified | None = None,
    ) -> None:
        self._verifier = verifier
        self._claim = claim
        self._on_verified = on_verified
        self._service = service
        self._on_error = on_error
        self._sign_responses = sign_responses
        self._host = verifier.host
        self._port = verifier.port

    def resource(self, method: str) -> str:
        return f"/{self._service}/{method}"

    async def _failed(self, exc: Exception, context: Any) -> None:
        if self._on_error is not None:
            await self._on_error(exc, context)

    async def authenticate(self, raw: bytes, context: Any, resource: str) -> VerifiedRequest:
        """Verify the call's Hawk header over ``raw`` and claim its nonce
        deployment-wide; for custom handlers."""
        verified = await self._verify(raw, context, resource)
        if self._claim is not None:
            await self._claim(verified)
        identity = parse_hawk_id(verified.id)
        if identity is not None and self._on_verified is not None:
            self._on_verified(identity.box_id, identity.device_id)
        return verified

    async def _verify(self, raw: bytes, context: Any, resource: str) -> VerifiedRequest:
        return await self._verifier.verify(
            authorization_header(context), resource=resource, payload=raw
        )

    def unary(
        self,
        method: str,
        handler: Callable[[Req, Any, Identity], Awaitable[Resp]],
        request_type: type[Req],
        response_type: type[Resp],
        *,
        overlap: Overlap = _never,
    ) -> grpc.RpcMethodHandler:
        """A Hawk-verified unary-unary handler; ``handler(request, context, identity)``.

        The request's deployment-wide claim (``claim``) normally completes
        before the handler starts. When ``overlap(request)`` is true the
        handler runs while the claim is in flight, saving the claim's round
        trips on the call's latency; that is only right for a request whose
        handler, run once more by a replay, changes nothing a client can
        observe (a read; an idempotent write), because a replay's handler
        then runs before the claim refuses it.
        """
        resource = self.resource(method)
        sign = self._sign_responses
        host, port = self._host, self._port
        claim = self._claim
        on_verified = self._on_verified

        async def behavior(raw: bytes, context: Any) -> bytes:
            try:
                verified = await self._verify(raw, context, resource)
                identity = _identity(verified)
                if on_verified is not None:
                    on_verified(identity.box_id, identity.device_id)
                request = _parse(request_type, raw)
                if claim is not None and overlap(request):
                    response = await _claimed_alongside(
                        claim(verified), handler(request, context, identity)
                    )
                else:
                    if claim is not None:
                        await claim(verified)
                    response = await handler(request, context, identity)
                body = response.SerializeToString()
                if sign:
                    context.set_trailing_metadata(
                        (
                            (
                                SERVER_AUTHORIZATION,
                                server_authorization_header(
                                    verified,
                                    verified.key,
                                    resource=resource,
                                    host=host,
                                    port=port,
                                    payload=body,
                                ),
                            ),
                        )
                    )
                return body
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._failed(exc, context)
                raise

        return grpc.unary_unary_rpc_method_handler(behavior)

    def unary_stream(
        self,
        method: str,
        handler: Callable[[Req, Any, Identity], AsyncIterator[Resp]],
        request_type: type[Req],
        response_type: type[Resp],
    ) -> grpc.RpcMethodHandler:
        """A Hawk-verified server-streaming handler (an async generator).

        Verification happens once, when the stream opens: the single request
        message is covered by the payload hash. Streamed responses are not
        signed individually.
        """
        resource = self.resource(method)

        async def behavior(raw: bytes, context: Any) -> AsyncIterator[bytes]:
            try:
                verified = await self.authenticate(raw, context, resource)
                identity = _identity(verified)
                async for item in handler(_parse(request_type, raw), context, identity):
                    yield item.SerializeToString()
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._failed(exc, context)
                raise

        return grpc.unary_stream_rpc_method_handler(behavior)

    def public_unary(
        self,
        handler: Callable[[Req, Any], Awaitable[Resp]],
        request_type: type[Req],
        response_type: type[Resp],
    ) -> grpc.RpcMethodHandler:
        """An unauthenticated unary handler (Register, Authorize) with the same hook.

        It parses the request itself so that garbage answers INVALID_ARGUMENT
        like on the signed methods, not grpc's generic INTERNAL.
        """

        async def behavior(raw: bytes, context: Any) -> bytes:
            try:
                response = await handler(_parse(request_type, raw), context)
                return response.SerializeToString()
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._failed(exc, context)
                raise

        return grpc.unary_unary_rpc_method_handler(behavior)


__all__ = [
    "AUTHORIZATION",
    "PUBLIC_METHODS",
    "SERVER_AUTHORIZATION",
    "Claim",
    "ErrorHook",
    "HawkAuth",
    "Identity",
    "Overlap",
    "Verified",
    "authorization_header",
    "identity_lookup",
    "parse_hawk_id",
]
