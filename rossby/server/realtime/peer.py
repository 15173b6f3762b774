"""``rossby.v1.Peer/Notify``: wake-ups between Rossby server processes.

Authentication (proto/rossby/v1/peer.proto): the metadata
``rossby-peer-mac`` is an HMAC-SHA256, under a key derived from the shared
``server_secret``, of a context string and the exact request bytes. Like the
Hawk methods, Notify is registered without a request deserializer, so the
MAC is checked over the bytes as received and only then parsed. A request
also names its receiver (``to_server``), carries a timestamp (within
``hawk_skew``) and a nonce (remembered for twice the skew), so a captured
request cannot be replayed, nor aimed at another process.

The sending side batches: each target process has at most
``MAX_IN_FLIGHT`` Notify calls in flight; what arrives meanwhile is merged
(per box, the lowest and highest position) and goes in the next call. A
call that fails is dropped (the streams' poll recovers it) and the target
is skipped for ``DOWN_FOR`` seconds, so a dead process whose presence rows
have not expired yet costs one failed connect, not one per Send.

A call that only ran out of time (DEADLINE_EXCEEDED) is not a dead process:
under load the target, or this process, is slow. Its wake-ups go back into
the outbox (merged with what came meanwhile) for the next call, and the
target stays up, so a busy moment delays wake-ups instead of dropping
``DOWN_FOR`` seconds of them to the poll. Its ephemeral messages are
dropped (the call may have delivered them; they are best effort), and
wake-ups are hints, so one delivered twice costs a read, never a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from rossby import errors
from rossby.hawk import NonceCache
from rossby.logging import get_logger
from rossby.server.realtime.metrics import RealtimeMetrics
from rossby.server.sizes import PEER_EPHEMERAL_BUDGET, PEER_MAX_WAKES
from rossby.status import to_grpc_status
from rossby.v1 import peer_pb2
from rossby.v1 import rossby_pb2 as pb

log = get_logger(__name__)

SERVICE: Final = "rossby.v1.Peer"
NOTIFY_PATH: Final = f"/{SERVICE}/Notify"
MAC_HEADER: Final = "rossby-peer-mac"
KEY_CONTEXT: Final = b"rossby/v1 peer key"
MAC_CONTEXT: Final = b"rossby/v1/peer-notify\x00"

#: Seconds one Notify call may take.
CALL_TIMEOUT = 2.0
#: Seconds a target that failed a call is skipped.
DOWN_FOR = 5.0
#: Per call at most this many boxes and ephemeral messages, and ephemeral
#: messages up to MAX_EPHEMERAL_BYTES (at least one); the rest goes next. The
#: receiver refuses a larger Notify (rossby.server.sizes).
MAX_WAKES = PEER_MAX_WAKES
MAX_EPHEMERAL = 200
MAX_EPHEMERAL_BYTES = PEER_EPHEMERAL_BUDGET
#: Per target at most this many ephemeral messages wait; older ones are dropped.
MAX_PENDING_EPHEMERAL = 1000
#: Targets remembered before idle ones are swept.
MAX_TARGETS = 1000
#: Notify calls in flight per target; what arrives meanwhile is merged.
MAX_IN_FLIGHT = 4


def peer_key(server_secret: bytes) -> bytes:
    return hmac.new(server_secret, KEY_CONTEXT, hashlib.sha256).digest()


def peer_mac(key: bytes, raw: bytes) -> str:
    return hmac.new(key, MAC_CONTEXT + raw, hashlib.sha256).hexdigest()


class Receiver:
    """What a Notify is delivered to (the hub)."""

    def wake_local(self, box_id: uuid.UUID, first: int, last: int) -> int:
        raise NotImplementedError

    def ephemeral_local(self, box_id: uuid.UUID, message: pb.QueuedMessage) -> int:
        raise NotImplementedError


class PeerService:
    """The receiving side: verify, then wake local streams."""

    def __init__(
        self,
        key: bytes,
        server_id: str,
        receiver: Receiver,
        metrics: RealtimeMetrics,
        *,
        skew_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._server_id = server_id
        self._receiver = receiver
        self._metrics = metrics
        self._skew = skew_seconds
        self._clock = clock
        self._nonces = NonceCache(skew_seconds)

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {"Notify": grpc.unary_unary_rpc_method_handler(self._behavior)}

    async def _behavior(self, raw: bytes, context: Any) -> bytes:
        try:
            response = self.notify(raw, _mac_header(context))
        except errors.RossbyError as exc:
            self._metrics.peer_notifies.labels("received", exc.reason).inc()
            await context.abort_with_status(to_grpc_status(exc))
            raise AssertionError("abort returned") from None
        self._metrics.peer_notifies.labels("received", "ok").inc()
        return response.SerializeToString()

    def notify(self, raw: bytes, mac: str | None) -> peer_pb2.NotifyResponse:
        """Verify and deliver one request; raise a ``RossbyError`` otherwise."""
        if not mac:
            raise errors.Unauthenticated("peer MAC missing", reason="PEER_MAC_MISSING")
        if not hmac.compare_digest(peer_mac(self._key, raw), mac.strip().lower()):
            raise errors.Unauthenticated("peer MAC does not verify", reason="PEER_BAD_MAC")
        try:
            request = peer_pb2.NotifyRequest.FromString(raw)
        except DecodeError:
            raise errors.InvalidArgument("not a NotifyRequest") from None
        now = self._clock()
        if abs(request.sent_at_ms / 1000 - now) > self._skew:
            raise errors.Unauthenticated("peer request is stale", reason="PEER_STALE")
        if request.to_server != self._server_id:
            raise errors.FailedPrecondition(
                "this is not the server the request names", reason="PEER_UNKNOWN"
            )
        nonce = request.nonce.hex()
        if not self._nonces.check_and_add(
            request.from_server, nonce, request.sent_at_ms // 1000, now
        ):
            raise errors.Unauthenticated("peer request replayed", reason="PEER_REPLAY")
        streams = 0
        for wake in request.wakes:
            box = _uuid(wake.box_id)
            if box is not None:
                streams += self._receiver.wake_local(box, wake.first, wake.last)
        for item in request.ephemeral:
            box = _uuid(item.box_id)
            if box is not None:
                streams += self._receiver.ephemeral_local(box, item.message)
        return peer_pb2.NotifyResponse(streams=streams)


def _take_ephemeral(
    waiting: list[peer_pb2.EphemeralDelivery],
) -> list[peer_pb2.EphemeralDelivery]:
    """Remove and answer the ephemeral messages for one call: at most
    ``MAX_EPHEMERAL`` and ``MAX_EPHEMERAL_BYTES``, but always the first."""
    taken, size = 0, 0
    for item in waiting[:MAX_EPHEMERAL]:
        size += item.ByteSize()
        if taken and size > MAX_EPHEMERAL_BYTES:
            break
        taken += 1
    out = waiting[:taken]
    del waiting[:taken]
    return out


def _mac_header(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == MAC_HEADER and isinstance(value, str):
            return value
    return None


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


Target = tuple[str, str]  # (server id, address)


@dataclass(slots=True)
class _Outbox:
    """What waits for one target: per box (first, last) and ephemeral items."""

    wakes: dict[str, tuple[int, int]] = field(default_factory=dict)
    ephemeral: list[peer_pb2.EphemeralDelivery] = field(default_factory=list)
    down_until: float = 0.0
    senders: int = 0  # calls in flight

    def empty(self) -> bool:
        return not self.wakes and not self.ephemeral

    def add_wake(self, key: str, first: int, last: int) -> None:
        """Merge a wake-up into what waits for this box: lowest and highest position."""
        old = self.wakes.get(key)
        if old is not None:
            first, last = min(old[0], first), max(old[1], last)
        self.wakes[key] = (first, last)


ChannelFactory = Callable[[str], grpc.aio.Channel]


class _Outcome(enum.Enum):
    OK = "ok"
    SLOW = "slow"  # out of time: retry its wake-ups, keep the target
    DOWN = "down"  # refused or broken: skip the target for DOWN_FOR


class PeerClient:
    """The sending side: one batching sender per target process."""

    def __init__(
        self,
        key: bytes,
        server_id: str,
        metrics: RealtimeMetrics,
        channel_factory: ChannelFactory,
        *,
        clock: Callable[[], float] = time.time,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self._key = key
        self._server_id = server_id
        self._metrics = metrics
        self._channel_factory = channel_factory
        self._clock = clock
        self._call_timeout = call_timeout
        self._outboxes: dict[Target, _Outbox] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def post(
        self,
        target: Target,
        box_id: uuid.UUID,
        first: int | None,
        last: int | None,
        ephemeral: list[pb.QueuedMessage],
    ) -> None:
        """Queue a wake (positions ``first``..``last``) and ephemeral messages."""
        if self._closed:
            return
        box = self._outboxes.get(target)
        if box is None:
            if len(self._outboxes) >= MAX_TARGETS:
                self._sweep()
            box = self._outboxes[target] = _Outbox()
        if box.down_until > time.monotonic():
            return  # recently unreachable: the poll covers it
        key = str(box_id)
        if first is not None and last is not None:
            box.add_wake(key, first, last)
        for message in ephemeral:
            box.ephemeral.append(peer_pb2.EphemeralDelivery(box_id=key, message=message))
        if len(box.ephemeral) > MAX_PENDING_EPHEMERAL:
            del box.ephemeral[: len(box.ephemeral) - MAX_PENDING_EPHEMERAL]
        if box.senders < MAX_IN_FLIGHT and not box.empty():
            box.senders += 1
            task = asyncio.create_task(self._send_all(target, box), name="rossby-peer-notify")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_all(self, target: Target, box: _Outbox) -> None:
        try:
            while not box.empty() and not self._closed:
                wakes = list(box.wakes.items())[:MAX_WAKES]
                for key, _ in wakes:
                    del box.wakes[key]
                ephemeral = _take_ephemeral(box.ephemeral)
                request = peer_pb2.NotifyRequest(
                    from_server=self._server_id,
                    to_server=target[0],
                    sent_at_ms=int(self._clock() * 1000),
                    nonce=os.urandom(16),
                    wakes=[
                        peer_pb2.BoxWake(box_id=key, first=first, last=last)
                        for key, (first, last) in wakes
                    ],
                    ephemeral=ephemeral,
                )
                outcome = await self._call(target, request)
                if outcome is _Outcome.SLOW:
                    for key, (first, last) in wakes:
                        box.add_wake(key, first, last)
                elif outcome is _Outcome.DOWN:
                    box.down_until = time.monotonic() + DOWN_FOR
                    box.wakes.clear()
                    box.ephemeral.clear()
        finally:
            box.senders -= 1
            if not box.senders and box.empty() and box.down_until <= time.monotonic():
                if self._outboxes.get(target) is box:
                    del self._outboxes[target]

    def _sweep(self) -> None:
        """Forget idle targets whose down time is over (dead processes)."""
        now = time.monotonic()
        for target, box in list(self._outboxes.items()):
            if not box.senders and box.empty() and box.down_until <= now:
                del self._outboxes[target]

    async def _call(self, target: Target, request: peer_pb2.NotifyRequest) -> _Outcome:
        raw = request.SerializeToString()
        channel = self._channels.get(target[1])
        if channel is None:
            channel = self._channels[target[1]] = self._channel_factory(target[1])
        invoke = channel.unary_unary(
            NOTIFY_PATH, request_serializer=None, response_deserializer=None
        )
        try:
            mac = peer_mac(self._key, raw)
            await invoke(raw, metadata=((MAC_HEADER, mac),), timeout=self._call_timeout)
        except grpc.aio.AioRpcError as exc:
            self._metrics.peer_notifies.labels("sent", exc.code().name).inc()
            log.info("peer_notify_failed", peer=target[1], code=exc.code().name)
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return _Outcome.SLOW
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                stale = self._channels.pop(target[1], None)
                if stale is not None:
                    await stale.close()
            return _Outcome.DOWN
        self._metrics.peer_notifies.labels("sent", "ok").inc()
        return _Outcome.OK

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._outboxes.clear()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


__all__ = [
    "MAC_HEADER",
    "NOTIFY_PATH",
    "SERVICE",
    "PeerClient",
    "PeerService",
    "Receiver",
    "peer_key",
    "peer_mac",
]
