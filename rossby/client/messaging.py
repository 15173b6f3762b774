"""Messages in and out: send, the fetch/ack loop, and opening what arrives.

Sending encrypts once per recipient box (a v2 envelope, its content key
carried to each reader device by ``rossby.client.sessions``) to the devices
the directory has pinned. Every message that arrives (fetched here, or
streamed by ``rossby.client.live``) goes through ``process``: dropped if
seen before, BEFORE any ratchet runs (a message's ratchet key is spent once
it opened), verified against the sender's pinned keys (looking them up once
when unknown or changed), then decrypted (v2 on its session, v1 with the
device's X25519 key for envelopes queued before the upgrade); held when the
sender cannot be looked up yet, rejected when it does not verify or open.
The seen set, sessions, held and rejected lists live in the session's state,
saved before every Ack, so a repeat is dropped across runs too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from rossby import errors
from rossby.client.account import Account
from rossby.client.bodies import SYNC_KIND, TEXT_KIND, apply_sync, decode_text, encode_text
from rossby.client.contacts import ContactLike, parse_contact
from rossby.client.directory import Directory
from rossby.client.errors import ClientError, InvalidMessage, UnknownSender, UntrustedKeys
from rossby.client.models import (
    ContactInfo,
    Event,
    FetchStats,
    HeldMessage,
    MessagesDropped,
    Outcome,
    ReceivedMessage,
    RecipientResult,
    RejectedMessage,
    SendReport,
)
from rossby.client.prekeys import Prekeys
from rossby.client.session import Session, now_ms
from rossby.client.sessions import Reader, Sessions
from rossby.client.state import MAX_HELD, HeldEnvelope
from rossby.client.wire import dropped_from, queued_from
from rossby.contacts import NormalizedContact
from rossby.crypto import EnvelopeHeader, InvalidEnvelope, OpenedMessage, open_envelope, peek_header
from rossby.crypto.envelope_v2 import (
    ParsedEnvelope,
    parse_envelope,
    peek_version,
    verify_envelope,
)
from rossby.logging import get_logger
from rossby.v1 import rossby_pb2 as pb

log = get_logger(__name__)

FETCH_PAGE = 100


class _Unverified(Exception):
    """The envelope's signature does not verify under the key we tried."""


class _Replayed(InvalidMessage):
    """A verified v2 envelope at or below its sender's replay floor.

    Caught before the ratchet decrypt: its message key is spent, so it would
    otherwise show up as a failure to decrypt rather than as the repeat it is.
    """


_OUTCOMES: dict[int, Outcome] = {
    pb.SEND_OUTCOME_QUEUED: "queued",
    pb.SEND_OUTCOME_DUPLICATE: "duplicate",
}


class Messaging:
    """Send, fetch and open messages through the session and the directory."""

    def __init__(
        self,
        session: Session,
        directory: Directory,
        account: Account,
        sessions: Sessions,
        prekeys: Prekeys,
    ) -> None:
        self._session = session
        self._directory = directory
        self._account = account
        self._sessions = sessions
        self._prekeys = prekeys
        self.stats = FetchStats()

    # -- sending ---------------------------------------------------------------

    async def send(
        self,
        contacts: Sequence[ContactLike],
        text: str,
        *,
        message_id: uuid.UUID | None = None,
        expire_after: int = 0,
    ) -> SendReport:
        if not contacts:
            raise ClientError("name at least one recipient")
        if not 0 <= expire_after < 2**32:
            raise ClientError("expire_after must be a number of seconds, 0 for none")
        s = self._session
        wanted = [parse_contact(c) for c in contacts]
        own = await self._directory.lookup_own()
        changes = [own.key_change] if own.key_change else []
        targets: dict[uuid.UUID, ContactInfo] = {}
        for contact in wanted:
            info = await self._directory.lookup(contact)
            if info.key_change is not None:
                changes.append(info.key_change)
            targets.setdefault(info.box_id, info)
        mid = message_id or uuid.uuid4()
        sent_at = now_ms()
        body = encode_text(text, list(targets))
        assert s.box_id is not None
        own_pin = s.state.pins[s.box_id].devices
        others = [Reader(s.box_id, d) for d in own_pin.values() if d.device_id != s.device_id]
        # Our other devices read the one envelope that reaches our own box:
        # the one to our box when it is a recipient, else the first one,
        # whose copy goes to our box too (one ratchet step per device, not
        # one per recipient box).
        own_reader_box = s.box_id if s.box_id in targets else next(iter(targets))
        outgoing: list[pb.OutgoingMessage] = []
        for box_id in targets:
            readers = [
                Reader(box_id, d)
                for d in s.state.pins[box_id].devices.values()
                if (box_id, d.device_id) != (s.box_id, s.device_id)
            ]
            if box_id == own_reader_box and box_id != s.box_id:
                readers += others
            if not readers:
                raise ClientError("no other device could read this message")
            sealed = await self._sessions.seal(
                box_id, readers, mid, TEXT_KIND, body, sent_at_ms=sent_at
            )
            envelope = sealed.envelope
            if box_id == own_reader_box:
                others = [o for o in others if o.device.device_id not in sealed.unreachable]
            outgoing.append(
                pb.OutgoingMessage(
                    recipient_box_id=str(box_id),
                    message_id=str(mid),
                    ciphertext=envelope,
                    expire_after_seconds=expire_after,
                )
            )
        await self._account.accept_recipients(list(targets))
        own_copy = bool(others) and s.box_id not in targets
        if own_copy:
            # The first recipient's envelope lists our other devices as readers.
            outgoing.append(
                pb.OutgoingMessage(
                    recipient_box_id=str(s.box_id),
                    message_id=str(mid),
                    ciphertext=outgoing[0].ciphertext,
                    expire_after_seconds=expire_after,
                )
            )
        s.save()
        reply = await s.call("Send", pb.SendRequest(messages=outgoing), pb.SendResponse)
        results = []
        for r in reply.results:
            box_id = uuid.UUID(r.recipient_box_id)
            outcome = _OUTCOMES.get(r.outcome, "rejected")
            results.append(
                RecipientResult(
                    box_id=box_id,
                    contact=self._directory.contact_of(box_id),
                    outcome=outcome,
                    position=r.position,
                    code=r.code,
                    reason=r.reason,
                    own_copy=own_copy and box_id == s.keyfile.box_id,
                )
            )
        s.state.seen.add(str(mid))
        s.save()
        return SendReport(mid, sent_at, tuple(results), tuple(changes))

    # -- receiving -------------------------------------------------------------

    async def fetch_messages(self, *, page_size: int = FETCH_PAGE) -> AsyncIterator[Event]:
        s = self._session
        s.require_authorized()
        refreshed: set[uuid.UUID] = set()
        try:
            async for event in self.release_held(refreshed):
                yield event
            after, highest, low = 0, 0, False
            ack_limit = 0  # the first page's (0: none); see FetchResponse.ack_limit
            gap: MessagesDropped | None = None
            while True:
                page = await s.call(
                    "Fetch", pb.FetchRequest(after=after, limit=page_size), pb.FetchResponse
                )
                if not after:
                    ack_limit = page.ack_limit
                low = low or page.prekeys_low
                if page.HasField("gap") and dropped_from(page.gap) != gap:
                    # Before the messages above it; once per fetch. The ack
                    # below covers its end even if no message follows, so the
                    # server stops reporting it once the caller was told.
                    gap = dropped_from(page.gap)
                    yield gap
                for message in page.messages:
                    highest = max(highest, message.position)
                    for event in await self.process(message, refreshed) or ():
                        yield event
                if not page.more or page.next_after <= after:
                    break
                after = page.next_after
            through = min(highest, ack_limit) if ack_limit else highest
            if gap is not None:
                # The server moved this device's cursor past the gap already,
                # so acking its end passes nothing unread, whatever the limit.
                through = max(through, gap.through)
            if through:
                s.save()  # seen ids first: a crash before the ack only repeats
                reply = await s.call("Ack", pb.AckRequest(through=through), pb.AckResponse)
                self.stats.acked_through = reply.cursor
            await self.maintain_prekeys(low=low)
        finally:
            s.save()

    async def maintain_prekeys(self, *, low: bool) -> None:
        """Refill or rotate prekeys after a fetch (or when a stream says so).

        The messages were delivered already; an upload that fails now is
        logged and tried again the next time the server says the pools run low.
        """
        try:
            await self._prekeys.maintain(low=low)
        except errors.RossbyError as exc:
            log.warning("prekeys_not_uploaded", reason=exc.reason, error=str(exc))

    async def release_held(self, refreshed: set[uuid.UUID]) -> AsyncIterator[Event]:
        """The events of held messages whose sender became known since."""
        held_list = self._session.state.held
        for held in list(held_list):
            events = await self.process(queued_from(held), refreshed, held=True)
            if events is None:
                continue  # the sender is still unknown
            held_list.remove(held)
            for event in events:
                yield event

    async def process(
        self, m: pb.QueuedMessage, refreshed: set[uuid.UUID], *, held: bool = False
    ) -> list[Event] | None:
        """The events one message produces; None only for a held message still unknown."""
        s = self._session
        state = s.state
        rejected_key = f"{m.message_id}@{m.position}"
        if m.message_id in state.seen or rejected_key in state.rejected:
            self.stats.duplicates += 1
            return []
        reject = RejectedMessage(
            m.message_id, m.position, m.sender_box_id, m.sender_device_id, m.received_at_ms
        )
        try:
            mid = uuid.UUID(m.message_id)
            sender = (uuid.UUID(m.sender_box_id), uuid.UUID(m.sender_device_id))
        except ValueError:
            state.rejected.add(rejected_key)
            self.stats.rejected += 1
            return [reject]
        if str(mid) in state.seen:
            self.stats.duplicates += 1
            return []
        if sender == (s.box_id, s.device_id):
            state.seen.add(str(mid))  # the copy of our own send to our box
            return []
        events: list[Event] = []
        try:
            message = await self.open(m, mid, *sender, refreshed, events)
        except UnknownSender:
            if held:
                return None
            if len(state.held) >= MAX_HELD:
                state.rejected.add(rejected_key)
                self.stats.rejected += 1
                return [reject]
            state.held.append(
                HeldEnvelope(
                    m.position,
                    str(mid),
                    str(sender[0]),
                    str(sender[1]),
                    m.received_at_ms,
                    bytes(m.ciphertext),
                )
            )
            self.stats.held += 1
            return [HeldMessage(str(mid), m.position, str(sender[0]), m.received_at_ms)]
        except _Replayed:
            self.stats.duplicates += 1
            return events
        except InvalidMessage:
            state.rejected.add(rejected_key)
            self.stats.rejected += 1
            return [*events, reject]
        origin = f"{sender[0]}.{sender[1]}"
        if state.seen.replayed(origin, message.sent_at_ms):
            # Older than what already fell out of the id window: a replay by
            # the server of a message processed long ago (state.SeenSet).
            self.stats.duplicates += 1
            return events
        state.seen.add(str(mid), origin, message.sent_at_ms)
        if message.kind == SYNC_KIND:
            if message.sender_box == s.box_id:  # from another device of ours
                apply_sync(state, message.body)
            return events
        self.stats.received += 1
        return [*events, message]

    async def open_message(self, message: pb.QueuedMessage) -> ReceivedMessage:
        self._session.require_authorized()
        try:
            mid = uuid.UUID(message.message_id)
            box, device = uuid.UUID(message.sender_box_id), uuid.UUID(message.sender_device_id)
        except ValueError:
            raise InvalidMessage from None
        return await self.open(message, mid, box, device, set(), [])

    async def open(
        self,
        m: pb.QueuedMessage,
        mid: uuid.UUID,
        sender_box: uuid.UUID,
        sender_device: uuid.UUID,
        refreshed: set[uuid.UUID],
        events: list[Event],
    ) -> ReceivedMessage:
        """Verify and decrypt one message; key changes met on the way go to ``events``."""
        data = bytes(m.ciphertext)
        parsed: ParsedEnvelope | None = None
        try:
            if peek_version(data) == 1:  # queued before this device's upgrade
                header: EnvelopeHeader = peek_header(data)
            else:
                assert self._session.box_id is not None
                parsed = parse_envelope(
                    data,
                    my_device_id=self._session.device_id,
                    expected_recipient_box=self._session.box_id,
                )
                header = parsed.header
        except InvalidEnvelope:
            raise InvalidMessage from None
        # The server saw which device's credentials sent it; the signed
        # header must say the same, and carry the id the server reported.
        if (header.sender_box, header.sender_device, header.message_id) != (
            sender_box,
            sender_device,
            mid,
        ):
            raise InvalidMessage
        signing_key = self._directory.signing_key
        key = signing_key(sender_box, sender_device)
        if key is None:
            await self._refresh(sender_box, refreshed, events)
            key = signing_key(sender_box, sender_device)
            if key is None:
                raise InvalidMessage
        try:
            opened = await self._open_with(data, parsed, key)
        except _Unverified:
            # Perhaps the device re-keyed since we pinned it: look once more.
            if sender_box in refreshed:
                raise InvalidMessage from None
            await self._refresh(sender_box, refreshed, events)
            fresh = signing_key(sender_box, sender_device)
            if fresh is None or fresh == key:
                raise InvalidMessage from None
            try:
                opened = await self._open_with(data, parsed, fresh)
            except _Unverified:
                raise InvalidMessage from None
        return self._received(m, opened)

    async def _open_with(
        self, data: bytes, parsed: ParsedEnvelope | None, signing_key: bytes
    ) -> OpenedMessage:
        """Open a v1 envelope, or verify a v2 one and decrypt it on its session.

        ``_Unverified`` when the signature (or, for v1, anything) fails, so
        the caller looks the sender's keys up again; a v2 envelope that
        verifies but does not decrypt is ``InvalidMessage`` at once.
        """
        if parsed is None:
            try:
                return self._open_v1(data, signing_key)
            except InvalidEnvelope:
                raise _Unverified from None
        try:
            verify_envelope(parsed, signing_key)
        except InvalidEnvelope:
            raise _Unverified from None
        pin = self._session.state.pins.get(parsed.header.sender_box)
        device = pin.devices.get(parsed.header.sender_device) if pin else None
        if device is None or device.signing_key != signing_key:
            raise InvalidMessage
        h = parsed.header
        if self._session.state.seen.replayed(f"{h.sender_box}.{h.sender_device}", h.sent_at_ms):
            raise _Replayed
        try:
            return await self._sessions.open(parsed, device)
        except InvalidEnvelope:
            raise InvalidMessage from None

    def _open_v1(self, data: bytes, signing_key: bytes) -> OpenedMessage:
        s = self._session
        assert s.box_id is not None
        keys = [s.keyfile.keys.encryption_private_bytes(), *s.state.previous_keys]
        for i, key in enumerate(keys):
            try:
                return open_envelope(
                    data,
                    my_device_id=s.device_id,
                    my_encryption_private=key,
                    expected_recipient_box=s.box_id,
                    sender_lookup=lambda _box, _device: signing_key,
                )
            except InvalidEnvelope:
                # Sealed to a key we rotated away from? Try the older ones.
                if i == len(keys) - 1:
                    raise
        raise InvalidEnvelope

    async def _refresh(
        self, box_id: uuid.UUID, refreshed: set[uuid.UUID], events: list[Event]
    ) -> None:
        """Re-resolve a sender's box, at most once per fetch run.

        By contact when we know one (so the address book stays right), else
        by the box id the server reported: a first message from a stranger
        is verified on arrival against the keys then pinned.
        """
        if box_id in refreshed:
            return
        state = self._session.state
        contact: NormalizedContact | None
        if box_id == self._session.box_id:
            contact = state.own_contacts[0] if state.own_contacts else None
        else:
            contact = state.contact_of(box_id)
        refreshed.add(box_id)
        try:
            info = await self._directory.lookup(contact, box_id=box_id)
        except (errors.NotFound, UntrustedKeys):
            if state.pins.get(box_id) is None:
                raise UnknownSender(f"no keys for box {box_id}") from None
            return  # no usable keys: the message cannot be verified
        if info.key_change is not None:
            events.append(info.key_change)

    def _received(self, m: pb.QueuedMessage, opened: OpenedMessage) -> ReceivedMessage:
        text: str | None = None
        recipients: tuple[uuid.UUID, ...] = (opened.recipient_box,)
        if opened.kind == TEXT_KIND:
            try:
                text, recipients = decode_text(opened.body)
            except (ValueError, UnicodeDecodeError):
                raise InvalidMessage from None
            if opened.recipient_box not in recipients:
                raise InvalidMessage
        outgoing = opened.sender_box == self._session.box_id
        pin = self._session.state.pins.get(opened.sender_box)
        device = pin.devices.get(opened.sender_device) if pin else None
        return ReceivedMessage(
            message_id=opened.message_id,
            position=m.position,
            sender_box=opened.sender_box,
            sender_device=opened.sender_device,
            sender_contact=None if outgoing else self._directory.contact_of(opened.sender_box),
            sender_device_name=device.name if device else "",
            outgoing=outgoing,
            recipient_box=opened.recipient_box,
            recipients=recipients,
            sent_at_ms=opened.sent_at_ms,
            received_at_ms=m.received_at_ms,
            expires_at_ms=m.expires_at_ms,
            kind=opened.kind,
            body=opened.body,
            text=text,
        )


__all__ = ["FETCH_PAGE", "Messaging"]
