"""Client side of Hawk over gRPC: sign the exact bytes that go on the wire.

The server verifies the payload hash over the raw request bytes it receives,
and protobuf serialization is not canonical, so the client must hash the very
bytes it sends. The helpers here serialize the request once, sign those bytes
and hand gRPC the same bytes through a multicallable without a request
serializer. Responses arrive as bytes too, so the ``server-authorization``
trailer can be checked over exactly what the server signed.

A server that finds the timestamp stale answers UNAUTHENTICATED with its time
and a MAC of it (``ts``/``tsm``, in a ``google.rpc.ErrorInfo`` or a Hawk
``www-authenticate`` trailer). The helpers verify ``tsm`` with the caller's
key, adopt the offset and retry once; an unverifiable answer never moves the
clock.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from rossby.errors import DOMAIN
from rossby.hawk import (
    CONTENT_TYPE,
    HAWK_STALE,
    ServerAuthenticationError,
    clock_offset,
    parse_www_authenticate,
    sign_request,
    verify_server_authorization,
)

AUTHORIZATION: Final = "authorization"
SERVER_AUTHORIZATION: Final = "server-authorization"
WWW_AUTHENTICATE: Final = "www-authenticate"
STATUS_DETAILS: Final = "grpc-status-details-bin"

Resp = TypeVar("Resp", bound=Message)


def new_nonce() -> str:
    """72 random bits in 12 URL-safe characters, all legal in a Hawk attribute."""
    return secrets.token_urlsafe(9)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A header and the artifacts needed later to check the server's answer."""

    header: str
    ts: int
    nonce: str

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [(AUTHORIZATION, self.header)]


class HawkSigner:
    """Signs calls with one device's Hawk credentials for one server address.

    ``host``/``port`` must be the server's configured public address, which
    is what it verifies against, not necessarily the address dialled (e.g.
    behind a proxy). ``offset`` is the learned correction to ``clock`` in
    seconds; it only ever comes from a ``tsm``-verified server answer.
    """

    __slots__ = ("_clock", "_key", "_nonce_factory", "credentials_id", "host", "offset", "port")

    def __init__(
        self,
        credentials_id: str,
        key: bytes,
        host: str,
        port: int,
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> None:
        self.credentials_id = credentials_id
        self._key = key
        self.host = host
        self.port = port
        self._clock = clock
        self._nonce_factory = nonce_factory
        self.offset = 0.0

    def timestamp(self) -> int:
        return math.floor(self._clock() + self.offset)

    def sign_request(self, method_path: str, payload: bytes) -> SignedRequest:
        ts, nonce = self.timestamp(), self._nonce_factory()
        header = sign_request(
            self.credentials_id,
            self._key,
            method="POST",
            resource=method_path,
            host=self.host,
            port=self.port,
            payload=payload,
            content_type=CONTENT_TYPE,
            ts=ts,
            nonce=nonce,
        )
        return SignedRequest(header, ts, nonce)

    def sign(self, method_path: str, payload: bytes) -> list[tuple[str, str]]:
        """gRPC metadata authenticating ``payload`` for ``method_path``."""
        return self.sign_request(method_path, payload).metadata

    def adjust_clock(self, ts: str, tsm: str) -> float:
        """Adopt the server's time as an offset once ``tsm`` proves it genuine."""
        self.offset = clock_offset(ts, tsm, self._key, now=self._clock())
        return self.offset

    def verify_response(
        self, signed: SignedRequest, method_path: str, header: str, body: bytes
    ) -> str:
        """Check a ``server-authorization`` trailer; answer its signed ``ext``."""
        return verify_server_authorization(
            header,
            self._key,
            ts=signed.ts,
            nonce=signed.nonce,
            resource=method_path,
            host=self.host,
            port=self.port,
            payload=body,
        )


def _metadata_value(metadata: Any, key: str) -> Any:
    for k, v in metadata or ():
        if k == key:
            return v
    return None


def stale_challenge(error: grpc.aio.AioRpcError) -> tuple[str, str] | None:
    """``(ts, tsm)`` if the server refused the call as stale, else None.

    Looks for the ``HAWK_STALE`` ErrorInfo first (how Rossby reports every
    error), then for a Hawk ``www-authenticate`` trailer.
    """
    if error.code() != grpc.StatusCode.UNAUTHENTICATED:
        return None
    trailers = error.trailing_metadata()
    details = _metadata_value(trailers, STATUS_DETAILS)
    if isinstance(details, bytes):
        status = status_pb2.Status()
        try:
            status.ParseFromString(details)
        except DecodeError:
            status = status_pb2.Status()
        for detail in status.details:
            if not detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                continue
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN and info.reason == HAWK_STALE:
                ts, tsm = info.metadata.get("ts"), info.metadata.get("tsm")
                if isinstance(ts, str) and isinstance(tsm, str):
                    return ts, tsm
    challenge = _metadata_value(trailers, WWW_AUTHENTICATE)
    if isinstance(challenge, str):
        return parse_www_authenticate(challenge)
    return None


def _correct_clock(signer: HawkSigner, error: grpc.aio.AioRpcError) -> bool:
    challenge = stale_challenge(error)
    if challenge is None:
        return False
    try:
        signer.adjust_clock(*challenge)
    except ServerAuthenticationError as exc:
        raise ServerAuthenticationError(f"stale-time answer does not verify: {exc}") from error
    return True


async def call_signed(
    channel: grpc.aio.Channel,
    signer: HawkSigner,
    path: str,
    request: Message,
    response_type: type[Resp],
    *,
    deadline: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    require_server_authorization: bool = False,
) -> Resp:
    """One Hawk-signed unary call; retried once after a verified clock correction.

    A ``server-authorization`` trailer, when present (or when required), must
    verify over the exact response bytes, else ``ServerAuthenticationError``.
    ``deadline`` is gRPC's per-call timeout in seconds (sent to the server)
    and applies to each attempt.
    """
    payload = request.SerializeToString()
    invoke = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    for attempt in range(2):
        signed = signer.sign_request(path, payload)
        call = invoke(payload, metadata=(*metadata, *signed.metadata), timeout=deadline)
        try:
            body: bytes = await call
        except grpc.aio.AioRpcError as exc:
            if attempt == 0 and _correct_clock(signer, exc):
                continue
            raise
        header = _metadata_value(await call.trailing_metadata(), SERVER_AUTHORIZATION)
        if header is not None or require_server_authorization:
            if not isinstance(header, str):
                raise ServerAuthenticationError("missing server-authorization")
            signer.verify_response(signed, path, header, body)
        return response_type.FromString(body)
    raise AssertionError("unreachable")


async def stream_signed(
    channel: grpc.aio.Channel,
    signer: HawkSigner,
    path: str,
    request: Message,
    response_type: type[Resp],
    *,
    deadline: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> AsyncIterator[Resp]:
    """A Hawk-signed server-streaming call; retried once if refused as stale.

    The retry only happens before the first message, so nothing is yielded
    twice.
    """
    payload = request.SerializeToString()
    invoke = channel.unary_stream(
        path, request_serializer=None, response_deserializer=response_type.FromString
    )
    for attempt in range(2):
        signed = signer.sign_request(path, payload)
        call = invoke(payload, metadata=(*metadata, *signed.metadata), timeout=deadline)
        received = False
        try:
            async for item in call:
                received = True
                yield item
            return
        except grpc.aio.AioRpcError as exc:
            if attempt == 0 and not received and _correct_clock(signer, exc):
                continue
            raise
        finally:
            if not call.done():
                call.cancel()


__all__ = [
    "AUTHORIZATION",
    "SERVER_AUTHORIZATION",
    "HawkSigner",
    "SignedRequest",
    "call_signed",
    "new_nonce",
    "stale_challenge",
    "stream_signed",
]
