"""Real time: listen to a Subscribe stream, send typing indicators and read receipts.

``listen()`` is an async iterator over a Subscribe stream::

    async with RossbyClient.open(home, passphrase) as c:
        async for event in c.listen(receipts=True):
            if isinstance(event, ReceivedMessage): ...
            elif isinstance(event, Typing): ...      # "alice is typing..."
            elif isinstance(event, ReadReceipt): ... # alice read your message

It yields what ``fetch_messages`` yields (verified, decrypted, deduplicated
by message id) plus ``Typing``, ``ReadReceipt``, ``UpToDate`` and
``Reconnecting``. A message counts as processed once the consumer asks for
the next event; processed messages are acked in batches (whenever no more
events are waiting, or every ``ack_every`` messages), so a consumer that
stops half-way gets the rest again next time. A dropped stream is reopened
with the highest processed position as the resume point, after a jittered
exponential back-off; repeats the server sends around that point are
dropped by message id, so nothing is lost and nothing is shown twice. Acks
and the resume point go no further than the stream's ``ack_limit``: a
message that landed below what the stream already sent comes with the
re-read below them, which a higher ack could start above it
(docs/store.md, "Long sweeps").

Typing indicators are ephemeral Sends (never stored, only devices
streaming right now see them). Read receipts are ordinary stored messages
of kind ``receipt``: the server cannot tell them from text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc

from rossby import errors
from rossby.client.bodies import (
    RECEIPT_KIND,
    TEXT_KIND,
    TYPING_KIND,
    decode_receipt,
    encode_receipt,
    encode_typing,
)
from rossby.client.contacts import ContactLike, parse_contact
from rossby.client.directory import Directory
from rossby.client.errors import ClientError, InvalidMessage, UnknownSender
from rossby.client.messaging import Messaging
from rossby.client.models import (
    Event,
    KeyChange,
    Outcome,
    ReceivedMessage,
    RecipientResult,
    SendReport,
)
from rossby.client.session import Session, now_ms
from rossby.client.sessions import Reader, Sessions
from rossby.client.state import PinnedDevice
from rossby.client.wire import dropped_from
from rossby.crypto import RecipientDevice, SenderIdentity, seal_envelope
from rossby.logging import get_logger
from rossby.status import from_rpc_error
from rossby.v1 import rossby_pb2 as pb

log = get_logger(__name__)

SUBSCRIBE = "Subscribe"

#: Stream errors worth reconnecting after; anything else is raised.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # STREAM_LIMIT, SLOW_CONSUMER
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
#: Seconds a final ack/receipt flush may take when listening ends.
FLUSH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Typing:
    """A contact's device is typing (``active``) or stopped; ephemeral."""

    sender_box: uuid.UUID
    sender_device: uuid.UUID
    sender_contact: str | None
    sender_device_name: str
    active: bool
    sent_at_ms: int


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """``reader_box`` read the messages with these ids (a stored message)."""

    reader_box: uuid.UUID
    reader_device: uuid.UUID
    reader_contact: str | None
    message_ids: tuple[uuid.UUID, ...]
    read_at_ms: int
    position: int


@dataclass(frozen=True, slots=True)
class UpToDate:
    """Everything that was pending has been delivered; from now on messages
    arrive as they are sent. ``after`` is the highest position so far."""

    after: int


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The stream ended (``reason``: a gRPC status name, ``CATCH_UP``,
    ``SERVER_CLOSED``: the server stopped, or the stream reached the server's
    ``stream_max_age``, or ``IDLE``); it reopens after ``delay`` seconds."""

    reason: str
    delay: float


LiveEvent = Event | Typing | ReadReceipt | UpToDate | Reconnecting


def receipt_of(message: ReceivedMessage) -> ReadReceipt | None:
    """The receipt a ``receipt``-kind message carries, else None."""
    if message.kind != RECEIPT_KIND or message.outgoing:
        return None
    try:
        ids, at = decode_receipt(message.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return ReadReceipt(
        reader_box=message.sender_box,
        reader_device=message.sender_device,
        reader_contact=message.sender_contact,
        message_ids=ids,
        read_at_ms=at,
        position=message.position,
    )


@dataclass(slots=True)
class _End:
    """The stream's end as the pump saw it: None for status OK."""

    error: BaseException | None


class Live:
    """Listening, typing and receipts, on top of the messaging paths."""

    def __init__(
        self, session: Session, directory: Directory, messaging: Messaging, sessions: Sessions
    ) -> None:
        self._session = session
        self._directory = directory
        self._messaging = messaging
        self._sessions = sessions

    # -- sending ephemeral and receipt messages ---------------------------------

    async def typing(self, contact: ContactLike, *, active: bool = True) -> SendReport:
        wanted = parse_contact(contact)
        state = self._session.state
        box_id = state.book.get(wanted)
        pin = state.pins.get(box_id) if box_id is not None else None
        changes: list[KeyChange] = []
        if box_id is None or pin is None:
            info = await self._directory.lookup(wanted)
            box_id = info.box_id
            if info.key_change is not None:
                changes.append(info.key_change)
        return await self._send_kind(
            box_id, TYPING_KIND, encode_typing(active), ephemeral=True, changes=changes
        )

    async def send_receipt(self, box_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> SendReport:
        if not message_ids:
            raise ClientError("no message ids to acknowledge")
        body = encode_receipt(message_ids, now_ms())
        return await self._send_kind(box_id, RECEIPT_KIND, body, ephemeral=False, changes=[])

    async def _send_kind(
        self,
        box_id: uuid.UUID,
        kind: str,
        body: bytes,
        *,
        ephemeral: bool,
        changes: list[KeyChange],
    ) -> SendReport:
        """Seal one message of ``kind`` to every other device of ``box_id``
        (looked up first when not pinned) and send it."""
        s = self._session
        s.require_authorized()
        own_box = s.box_id
        assert own_box is not None
        pin = s.state.pins.get(box_id)
        if pin is None:
            contact = s.state.contact_of(box_id)
            info = await self._directory.lookup(contact, box_id=None if contact else box_id)
            if info.key_change is not None:
                changes.append(info.key_change)
            pin = s.state.pins.get(box_id)
        if pin is None:
            raise ClientError(f"no keys known for box {box_id}")
        devices = [d for d in _devices(pin.devices) if d.device_id != s.device_id]
        if not devices:
            raise ClientError("no other device could read this message")
        mid = uuid.uuid4()
        sent_at = now_ms()
        if ephemeral:
            # Typing stays v1 (sealed to identity keys): an ephemeral message
            # is never stored, so a ratchet step for it would be a skipped key
            # for every device offline at the time; enough typing while a
            # peer is away would push its next real message past MAX_SKIP.
            sender = SenderIdentity(own_box, s.device_id, s.keyfile.keys.signing_private)
            readers = [RecipientDevice(d.device_id, d.encryption_key) for d in devices]
            envelope = seal_envelope(sender, box_id, readers, mid, kind, body, now_ms=sent_at)
        else:
            sealed = await self._sessions.seal(
                box_id, [Reader(box_id, d) for d in devices], mid, kind, body, sent_at_ms=sent_at
            )
            envelope = sealed.envelope
        request = pb.SendRequest(
            ephemeral=ephemeral,
            messages=[
                pb.OutgoingMessage(
                    recipient_box_id=str(box_id), message_id=str(mid), ciphertext=envelope
                )
            ],
        )
        reply = await s.call("Send", request, pb.SendResponse)
        outcomes: dict[int, Outcome] = {
            pb.SEND_OUTCOME_QUEUED: "queued",
            pb.SEND_OUTCOME_DUPLICATE: "duplicate",
            pb.SEND_OUTCOME_EPHEMERAL: "ephemeral",
        }
        results = tuple(
            RecipientResult(
                box_id=uuid.UUID(r.recipient_box_id),
                contact=self._directory.contact_of(uuid.UUID(r.recipient_box_id)),
                outcome=outcomes.get(r.outcome, "rejected"),
                position=r.position,
                code=r.code,
                reason=r.reason,
            )
            for r in reply.results
        )
        if not ephemeral:
            s.state.seen.add(str(mid))
            s.save()
        return SendReport(mid, sent_at, results, tuple(changes))

    # -- listening ---------------------------------------------------------------

    async def listen(
        self,
        *,
        receipts: bool = False,
        ack_every: int = 50,
        reconnect: bool = True,
        idle_timeout: float | None = 75.0,
        min_backoff: float = 0.25,
        max_backoff: float = 15.0,
        page_size: int = 0,
        max_messages: int = 0,
    ) -> AsyncIterator[LiveEvent]:
        self._session.require_authorized()
        state = _ListenState()
        backoff = min_backoff
        try:
            while True:
                refreshed: set[uuid.UUID] = set()
                async for event in self._messaging.release_held(refreshed):
                    yield _live(event)
                queue: asyncio.Queue[pb.SubscribeEvent | _End] = asyncio.Queue()
                pump = asyncio.create_task(self._pump(queue, state.resume, page_size))
                reason = "SERVER_CLOSED"
                try:
                    while True:
                        if state.unacked and queue.empty():
                            await self._flush(state, receipts)
                        try:
                            # asyncio.timeout, not wait_for: on 3.11 wait_for can
                            # swallow a cancellation that lands as the item arrives.
                            async with asyncio.timeout(idle_timeout):
                                item = await queue.get()
                        except TimeoutError:
                            reason = "IDLE"
                            break
                        if isinstance(item, _End):
                            reason = self._end_reason(item, reconnect)
                            break
                        kind = item.WhichOneof("event")
                        if kind == "message":
                            try:
                                events = (
                                    await self._messaging.process(item.message, refreshed) or []
                                )
                            except errors.RossbyError as exc:
                                if not _retryable(exc):
                                    raise
                                reason = exc.reason  # keystore trouble: retry the message later
                                break
                            for event in events:
                                shown = _live(event)
                                yield shown
                                if isinstance(shown, ReceivedMessage):
                                    state.messages += 1
                            state.processed(item.message.position, item.ack_limit)
                            if receipts:
                                state.want_receipts(self._session.box_id, events)
                            if max_messages and state.messages >= max_messages:
                                await self._flush(state, receipts)
                                return
                            if state.unacked >= ack_every:
                                await self._flush(state, receipts)
                        elif kind == "gap":
                            # Yielded before the messages above it; counted as
                            # processed so the next ack (at least its end)
                            # ends the server's report of it.
                            yield dropped_from(item.gap)
                            state.processed(item.gap.through)
                            state.gap_through = max(state.gap_through, item.gap.through)
                        elif kind == "ephemeral":
                            ephemeral = await self._open_ephemeral(item.ephemeral, refreshed)
                            if ephemeral is not None:
                                yield ephemeral
                        elif kind == "live":
                            state.limit = max(state.limit, item.ack_limit)
                            backoff = min_backoff
                            yield UpToDate(item.live.after)
                            # Also rotates a signed prekey that is due.
                            await self._messaging.maintain_prekeys(low=item.live.prekeys_low)
                        elif kind == "heartbeat":
                            if item.heartbeat.prekeys_low:
                                await self._messaging.maintain_prekeys(low=True)
                        elif kind == "catch_up":
                            reason = "CATCH_UP"  # the reopened stream reads what waits
                            break
                finally:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump
                await self._flush(state, receipts)
                if not reconnect:
                    return
                delay = backoff * random.uniform(0.5, 1.0)
                if reason in ("SERVER_CLOSED", "CATCH_UP"):
                    delay = min_backoff * random.uniform(0.0, 1.0)
                else:
                    backoff = min(max_backoff, backoff * 2)
                yield Reconnecting(reason, delay)
                await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._flush(state, receipts), FLUSH_TIMEOUT)
            self._session.save()

    def _end_reason(self, end: _End, reconnect: bool) -> str:
        """The reason to report, or raise when the error is not retryable."""
        exc = end.error
        if exc is None:
            return "SERVER_CLOSED"
        if isinstance(exc, grpc.aio.AioRpcError):
            if exc.code() in RETRYABLE and reconnect:
                return str(exc.code().name)
            raise from_rpc_error(exc) from exc
        raise exc

    async def _pump(
        self, queue: asyncio.Queue[pb.SubscribeEvent | _End], after: int, page_size: int
    ) -> None:
        stream = self._session.stream(
            SUBSCRIBE, pb.SubscribeRequest(after=after, limit=page_size), pb.SubscribeEvent
        )
        try:
            async for event in stream:
                await queue.put(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put(_End(exc))
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # cancels the call at once
        await queue.put(_End(None))

    async def _open_ephemeral(
        self, m: pb.QueuedMessage, refreshed: set[uuid.UUID]
    ) -> Typing | ReceivedMessage | None:
        """Verify and open an ephemeral message; None if it does not verify
        (ephemeral messages are never held or reported as rejected)."""
        try:
            mid = uuid.UUID(m.message_id)
            box, device = uuid.UUID(m.sender_box_id), uuid.UUID(m.sender_device_id)
        except ValueError:
            return None
        if (box, device) == (self._session.box_id, self._session.device_id):
            return None
        try:
            message = await self._messaging.open(m, mid, box, device, refreshed, [])
        except (InvalidMessage, UnknownSender, errors.RossbyError):
            return None
        if message.kind != TYPING_KIND:
            return message
        try:
            doc = json.loads(message.body.decode("utf-8"))
            active = bool(doc["typing"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        return Typing(
            sender_box=message.sender_box,
            sender_device=message.sender_device,
            sender_contact=message.sender_contact,
            sender_device_name=message.sender_device_name,
            active=active,
            sent_at_ms=message.sent_at_ms,
        )

    async def _flush(self, state: _ListenState, receipts: bool) -> None:
        """Ack what was processed (seen ids saved first), then send receipts."""
        if state.unacked:
            self._session.save()  # a crash before the ack only repeats, and repeats are dropped
            try:
                reply = await self._session.call(
                    "Ack", pb.AckRequest(through=state.resume), pb.AckResponse
                )
            except errors.RossbyError as exc:
                if not _retryable(exc):
                    raise
                return  # the next flush tries again
            state.unacked = 0
            self._messaging.stats.acked_through = reply.cursor
        if receipts and state.receipts:
            pending, state.receipts = state.receipts, {}
            for box_id, ids in pending.items():
                try:
                    await self.send_receipt(box_id, ids)
                except (errors.RossbyError, ClientError) as exc:
                    log.info("receipt_not_sent", box=str(box_id), error=str(exc))


@dataclass(slots=True)
class _ListenState:
    high: int = 0  # highest position processed
    #: The highest ``SubscribeEvent.ack_limit`` of a processed event (0:
    #: none, a backend with ordered visibility). A limit stays valid on later
    #: streams: it says what this device has processed.
    limit: int = 0
    #: The end of the last overflow gap yielded: the server moved this
    #: device's cursor past it already, so it may be acked whatever the limit.
    gap_through: int = 0
    unacked: int = 0
    messages: int = 0  # ReceivedMessage events processed
    receipts: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)

    @property
    def resume(self) -> int:
        """Where to ack through and resume after: the highest position
        processed, but no further than the stream's ``ack_limit`` (a
        yielded gap's end aside)."""
        bounded = min(self.high, self.limit) if self.limit else self.high
        return max(bounded, self.gap_through)

    def processed(self, position: int, ack_limit: int = 0) -> None:
        if position > self.high:
            self.high = position
        self.limit = max(self.limit, ack_limit)
        self.unacked += 1

    def want_receipts(self, own_box: uuid.UUID | None, events: list[Event]) -> None:
        for event in events:
            if (
                isinstance(event, ReceivedMessage)
                and event.kind == TEXT_KIND
                and not event.outgoing
                and event.sender_box != own_box
            ):
                self.receipts.setdefault(event.sender_box, []).append(event.message_id)


def _retryable(exc: errors.RossbyError) -> bool:
    """An outage or a dropped call (the server stopping), not a refusal."""
    if isinstance(exc, errors.Unavailable):
        return True
    cause = exc.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code() in RETRYABLE


def _live(event: Event) -> Event | ReadReceipt:
    if isinstance(event, ReceivedMessage):
        receipt = receipt_of(event)
        if receipt is not None:
            return receipt
    return event


def _devices(devices: dict[uuid.UUID, PinnedDevice]) -> list[PinnedDevice]:
    return list(devices.values())


__all__ = [
    "Live",
    "LiveEvent",
    "ReadReceipt",
    "Reconnecting",
    "Typing",
    "UpToDate",
    "receipt_of",
]
