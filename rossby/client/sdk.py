"""The async client SDK: ``RossbyClient``, one device that registers, resolves, sends and fetches.

The server stores ciphertext and public keys; everything that needs a
private key happens here. One ``RossbyClient`` is one device, whose keys
and state live in a home directory (``rossby.client.state``)::

    async with RossbyClient.create(home, passphrase, server="127.0.0.1:1205",
                                   contacts=["alice@example.com"],
                                   device_name="laptop") as c:
        await c.register()                      # the server sends a code
        await c.authorize(["123456"])           # the code the user typed

    async with RossbyClient.open(home, passphrase) as c:
        await c.send(["bob@example.com"], "hi")
        async for event in c.fetch_messages():  # verified, deduped, then acked
            ...

``RossbyClient`` is a facade: it builds the parts and hands each call to
the one whose job it is. The ``Session`` (rossby.client.session) is the
unlocked device: keys, state, home lock, signed channel. The ``Directory``
resolves and pins keys (with ``KeyLogs``); ``Messaging`` sends, fetches and
opens, with ``Sessions`` (a ratchet session per peer device) and
``Prekeys`` (this device's published prekeys); ``Live`` streams, types and
sends receipts; ``Devices`` registers, links, revokes and rotates;
``Account`` holds contacts, profile and sender rules. Each gets its
collaborators at construction. The trust model is in rossby.client.directory
(and at length in docs/client.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rossby.client.account import Account
from rossby.client.contacts import ContactLike, parse_contact
from rossby.client.devices import LINK_POLL, Devices
from rossby.client.directory import Directory
from rossby.client.errors import AlreadyInitialized, ClientError
from rossby.client.home import has_device
from rossby.client.keylogs import KeyLogs
from rossby.client.live import Live, LiveEvent
from rossby.client.messaging import FETCH_PAGE, Messaging
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    Event,
    FetchStats,
    Identity,
    KeyLogView,
    LinkInvite,
    LinkRequest,
    PrekeyStatusInfo,
    ProfileInfo,
    ReceivedMessage,
    RegistrationStarted,
    SendReport,
)
from rossby.client.prekeys import Prekeys
from rossby.client.session import DEFAULT_TIMEOUT, Session, split_address
from rossby.client.sessions import Sessions
from rossby.client.state import ClientState, TlsConfig
from rossby.crypto import DeviceKeyfile, DeviceKeyPair, SafetyNumber
from rossby.crypto.keyfile import DEFAULT_SCRYPT_N
from rossby.crypto.link import LinkCode, parse_link_code
from rossby.v1 import rossby_pb2 as pb

Home = str | Path


class RossbyClient:
    """One device of one box. Build it with ``create``, ``open``, ``join`` or ``install``.

    Not safe for concurrent use from several tasks: the pins and the seen
    set are read-modify-write state. The home directory is locked for the
    client's lifetime so two processes cannot interleave either.
    """

    def __init__(self, session: Session) -> None:
        """Wire the parts around an unlocked device (see the module doc)."""
        self._session = session
        self._directory = Directory(session, KeyLogs(session))
        self._account = Account(session, self._directory)
        self._prekeys = Prekeys(session)
        self._sessions = Sessions(session)
        self._devices = Devices(session, self._directory, self._prekeys, self._sessions)
        self._messaging = Messaging(
            session, self._directory, self._account, self._sessions, self._prekeys
        )
        self._live = Live(session, self._directory, self._messaging, self._sessions)

    # -- construction ------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        home: Home,
        passphrase: str,
        *,
        rpc_timeout: float = DEFAULT_TIMEOUT,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> AsyncIterator[RossbyClient]:
        """Unlock an existing device (``WrongPassphrase``, ``NotInitialized``).

        ``rpc_timeout`` is each call's deadline in seconds. ``scrypt_n`` is
        the least cost a rewritten keyfile gets (an older, cheaper file is
        upgraded when next written); tests lower it for speed.
        """
        client = cls(
            await Session.load(_home(home), passphrase, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n)
        )
        try:
            yield client
        finally:
            await client.close()

    @classmethod
    @asynccontextmanager
    async def create(
        cls,
        home: Home,
        passphrase: str,
        *,
        server: str,
        contacts: Sequence[ContactLike],
        device_name: str,
        hawk_address: str | None = None,
        tls: TlsConfig | None = None,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        rpc_timeout: float = DEFAULT_TIMEOUT,
    ) -> AsyncIterator[RossbyClient]:
        """Generate this device's keys and write its keyfile; nothing is sent yet.

        ``tls`` (None: plaintext) is remembered in the state, so every later
        ``open`` reaches the server the same way.

        A home that already holds an unverified device for the same server
        and contacts is reused rather than refused, so re-running ``init``
        after a lost code resends it with the same keys. ``scrypt_n`` is
        the keyfile's cost; tests lower it for speed.
        """
        home = _home(home)
        wanted = [parse_contact(c) for c in contacts]
        if not wanted:
            raise ClientError("at least one contact is needed")
        split_address(server)
        hawk = hawk_address or server
        split_address(hawk)
        if await asyncio.to_thread(has_device, home):
            client = cls(
                await Session.load(home, passphrase, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n)
            )
            state = client._session.state
            same = (
                state.server == server
                and state.own_contacts == wanted
                and state.hawk_address == hawk
            )
            if client.authorized or not same:
                await client.close()
                what = "a verified device" if client.authorized else "a device for other contacts"
                raise AlreadyInitialized(f"{home} already holds {what}; use another --home")
        else:
            device_id = uuid.uuid4()
            keyfile = DeviceKeyfile(
                device_id=device_id, keys=DeviceKeyPair.generate(), server=server
            )
            state = ClientState(
                server=server,
                hawk_address=hawk,
                device_name=device_name,
                own_contacts=wanted,
                tls=tls,
            )
            client = cls(
                await Session.initialize(
                    home, passphrase, keyfile, state, scrypt_n=scrypt_n, rpc_timeout=rpc_timeout
                )
            )
        try:
            yield client
        finally:
            await client.close()

    @classmethod
    @asynccontextmanager
    async def join(
        cls,
        home: Home,
        passphrase: str,
        *,
        code: str | LinkCode,
        device_name: str,
        server: str | None = None,
        hawk_address: str | None = None,
        tls: TlsConfig | None = None,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        rpc_timeout: float = DEFAULT_TIMEOUT,
    ) -> AsyncIterator[RossbyClient]:
        """A new device for an existing box: generate keys, join the link
        offer another device of the box shows (its QR ``uri``, or
        ``"<offer id> <passphrase>"`` with ``server``), and prove the
        passphrase. Then ``await client.complete_link()`` waits for the
        other device's approval. The box's contacts and address book arrive
        later, end to end, with the next ``fetch_messages``.

        A home that already joined this offer resumes instead of failing.
        """
        home = _home(home)
        try:
            link = code if isinstance(code, LinkCode) else parse_link_code(code, server=server)
        except ValueError as exc:
            raise ClientError(f"not a link code: {exc}") from None
        split_address(link.server)
        hawk = hawk_address or link.server
        split_address(hawk)
        if await asyncio.to_thread(has_device, home):
            client = cls(
                await Session.load(home, passphrase, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n)
            )
            pending = client._session.state.pending_link
            if client.authorized or pending is None or pending.offer_id != link.offer_id:
                await client.close()
                raise AlreadyInitialized(f"{home} already holds a device; use another --home")
        else:
            keyfile = DeviceKeyfile(
                device_id=uuid.uuid4(), keys=DeviceKeyPair.generate(), server=link.server
            )
            state = ClientState(
                server=link.server,
                hawk_address=hawk,
                device_name=device_name,
                own_contacts=[],
                tls=tls,
            )
            client = cls(
                await Session.initialize(
                    home, passphrase, keyfile, state, scrypt_n=scrypt_n, rpc_timeout=rpc_timeout
                )
            )
        try:
            await client._devices.join_link(link)
            yield client
        finally:
            await client.close()

    @classmethod
    @asynccontextmanager
    async def install(
        cls,
        home: Home,
        passphrase: str,
        *,
        keyfile: DeviceKeyfile,
        contacts: Sequence[ContactLike],
        device_name: str,
        hawk_address: str | None = None,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        rpc_timeout: float = DEFAULT_TIMEOUT,
    ) -> AsyncIterator[RossbyClient]:
        """Set up a device whose credentials were obtained elsewhere.

        The seam for device linking (a later issue), where an existing
        device hands a new one its box and credentials; tests use it to
        build a second device of a box through the store. ``keyfile`` must
        carry the box id, Hawk credentials and server address.
        """
        home = _home(home)
        if keyfile.box_id is None or keyfile.hawk is None or keyfile.server is None:
            raise ClientError("an installed device needs its box id, credentials and server")
        state = ClientState(
            server=keyfile.server,
            hawk_address=hawk_address or keyfile.server,
            device_name=device_name,
            own_contacts=[parse_contact(c) for c in contacts],
        )
        client = cls(
            await Session.initialize(
                home, passphrase, keyfile, state, scrypt_n=scrypt_n, rpc_timeout=rpc_timeout
            )
        )
        try:
            await client._directory.lookup_own()
            client._session.save()
            yield client
        finally:
            await client.close()

    async def close(self) -> None:
        """Persist state, close the channel, release the home. Safe to call twice."""
        await self._session.close()

    # -- identity ------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._session.home

    @property
    def device_id(self) -> uuid.UUID:
        return self._session.device_id

    @property
    def box_id(self) -> uuid.UUID | None:
        return self._session.box_id

    @property
    def authorized(self) -> bool:
        return self._session.authorized

    @property
    def stats(self) -> FetchStats:
        """Counters of ``fetch_messages`` and ``listen`` (received, acked through...)."""
        return self._messaging.stats

    @property
    def _state(self) -> ClientState:
        # The session's state, for tests that look inside (the seen window).
        return self._session.state

    @property
    def _keyfile(self) -> DeviceKeyfile:
        return self._session.keyfile

    def whoami(self) -> Identity:
        return self._session.whoami()

    def contact_of(self, box_id: uuid.UUID) -> str | None:
        """The contact we know a box by (sent to or resolved), if any."""
        return self._directory.contact_of(box_id)

    def pinned_devices(self, box_id: uuid.UUID) -> tuple[DeviceInfo, ...]:
        return self._directory.pinned_devices(box_id)

    # -- registration ----------------------------------------------------------

    async def register(self) -> RegistrationStarted:
        """Ask the server to send a code to each of this device's contacts.

        Calling it again resends the codes (the server rate-limits that).
        """
        return await self._devices.register()

    async def authorize(self, codes: Sequence[str]) -> Identity:
        """Prove the codes and the signing key; store the unsealed Hawk credentials.

        Codes go in the order of the contacts given at ``create``.
        """
        return await self._devices.authorize(codes)

    # -- keystore ------------------------------------------------------------

    async def resolve(self, contact: ContactLike) -> ContactInfo:
        """Look a contact up, verify every device's key signature, pin the keys.

        Also what makes a sender known: messages held for the contact's box
        open on the next ``fetch_messages``.
        """
        return await self._directory.resolve(contact)

    async def devices(self) -> list[DeviceInfo]:
        """Every active device of our own box, as the keystore lists them."""
        return await self._directory.devices()

    async def safety_number(self, contact: ContactLike) -> SafetyNumber:
        """The number both users compare, over every device key of both boxes.

        Computed from the keys just fetched (and pinned), i.e. the keys the
        next message would be encrypted to.
        """
        return await self._directory.safety_number(contact)

    async def key_log(self, target: ContactLike | uuid.UUID | None = None) -> KeyLogView:
        """A box's whole key log, verified from the first entry, checked to
        extend what this device saw before (``None``: our own box)."""
        return await self._directory.key_log(target)

    # -- prekeys and sessions ------------------------------------------------------

    async def prekey_status(self) -> PrekeyStatusInfo:
        """What the server holds of this device's prekeys (counts, ids, ``low``)."""
        return await self._prekeys.status()

    async def refill_prekeys(self) -> PrekeyStatusInfo:
        """Top the one-time pools up now (fetch and listen do it when low)."""
        return await self._prekeys.refill()

    async def rotate_prekeys(self) -> PrekeyStatusInfo:
        """A new signed and last-resort prekey now (else every 7 days)."""
        return await self._prekeys.rotate()

    def has_session(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bool:
        """Whether this device sends to that device on an existing ratchet session."""
        return self._sessions.current(box_id, device_id) is not None

    # -- messages --------------------------------------------------------------

    async def send(
        self,
        contacts: Sequence[ContactLike],
        text: str,
        *,
        message_id: uuid.UUID | None = None,
        expire_after: int = 0,
    ) -> SendReport:
        """Encrypt ``text`` once per recipient box and queue it in one Send.

        Several contacts make a group message: each box gets its own
        envelope (wrapped for its devices and for our other devices), all
        under one message id, and our own box gets one copy so our other
        devices show the message too. Pass ``message_id`` to retry a send
        whose outcome is unknown: the server keeps exactly one copy.
        Per-recipient refusals are in the report, not raised. ``expire_after``
        (seconds): the server hands it to no device after that long, read or not.
        """
        m = self._messaging
        return await m.send(contacts, text, message_id=message_id, expire_after=expire_after)

    def fetch_messages(self, *, page_size: int = FETCH_PAGE) -> AsyncIterator[Event]:
        """Fetch every waiting message, yield events, then ack through the last.

        Events: ``ReceivedMessage`` (verified and decrypted),
        ``RejectedMessage`` (failed verification; acked so it cannot block
        the queue), ``HeldMessage`` (unknown sender; kept locally, acked)
        and ``KeyChange`` (a sender's keys changed while looking them up).
        Repeats (settle-window re-reads, a run that stopped before its ack)
        are dropped by message id against a persisted, bounded set.

        The ack happens once every page was read and every event yielded;
        a consumer that stops early leaves the queue unacked, and the next
        run repeats those messages, which the seen set then drops. A store
        or network failure propagates (nothing is acked): a keystore outage
        must not make a genuine message look forged.
        """
        # The messaging part's own generator, not a wrapper around it: closing
        # it (a consumer that stops early) runs its cleanup at once.
        return self._messaging.fetch_messages(page_size=page_size)

    async def open_message(self, message: pb.QueuedMessage) -> ReceivedMessage:
        """Verify and decrypt one queued message without touching the seen set.

        A v2 message moves its ratchet session on: it does not open twice.

        Raises ``InvalidMessage`` for anything untrustworthy and
        ``UnknownSender`` when the sender's keys cannot be looked up.
        """
        return await self._messaging.open_message(message)

    # -- real time ---------------------------------------------------------------

    async def typing(self, contact: Any, *, active: bool = True) -> SendReport:
        """Tell a contact's devices that are online right now that we are
        typing (or stopped: ``active=False``). Never stored; nothing is
        queued for devices that are offline."""
        return await self._live.typing(contact, active=active)

    async def send_receipt(self, box_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> SendReport:
        """Tell ``box_id`` that we read these messages (an ordinary, stored,
        end-to-end-encrypted message of kind ``receipt``)."""
        return await self._live.send_receipt(box_id, message_ids)

    def listen(
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
        """Stream events until the consumer stops (see rossby.client.live).

        ``receipts``: send a read receipt to the sender of every text
        message processed (batched per sender box, with the acks).
        ``idle_timeout``: reopen a stream that was silent this long (the
        server sends heartbeats, so silence means a dead connection).
        ``reconnect=False`` ends the iteration when the stream ends, and
        raises on an error instead of retrying. Errors that retrying cannot
        fix (revoked device, bad credentials) are always raised.
        ``max_messages``: end (after acking) once that many
        ``ReceivedMessage`` events were processed; 0 means never.
        """
        return self._live.listen(
            receipts=receipts,
            ack_every=ack_every,
            reconnect=reconnect,
            idle_timeout=idle_timeout,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
            page_size=page_size,
            max_messages=max_messages,
        )

    # -- devices of the box ------------------------------------------------------

    async def create_link_offer(self) -> LinkInvite:
        """Open a link offer; show the invite's ``uri`` (QR) or ``text``."""
        return await self._devices.create_link_offer()

    async def wait_for_link(
        self, invite: LinkInvite, *, wait: float = 600.0, poll: float = LINK_POLL
    ) -> LinkRequest:
        """Wait (``wait`` s at most) until a device joins the offer; check it
        knew the passphrase."""
        return await self._devices.wait_for_link(invite, wait=wait, poll=poll)

    async def approve_link(self, invite: LinkInvite, request: LinkRequest) -> DeviceInfo:
        """Sign the new device's keys into the box, then send it our contacts
        and address book through the end-to-end channel."""
        return await self._devices.approve_link(invite, request)

    async def complete_link(self, *, wait: float = 600.0, poll: float = LINK_POLL) -> ContactInfo:
        """Wait (``wait`` s at most) for the old device's approval, check it,
        store the credentials."""
        return await self._devices.complete_link(wait=wait, poll=poll)

    async def revoke(self, device_id: uuid.UUID) -> None:
        """Revoke a device of our box (this one too: it then stops working)."""
        await self._devices.revoke(device_id)

    async def rotate_keys(self) -> DeviceInfo:
        """Replace this device's keys; the new ones are signed by the old key.

        Crash-safe: the new keys are written to ``device.key.next`` first, a
        retry resumes with them, and the switch renames that file over
        ``device.key``. The old X25519 key is kept (``MAX_PREVIOUS_KEYS``) so
        messages sealed to it before senders noticed still open.
        """
        return await self._devices.rotate_keys()

    # -- the account: contacts, profile, sender rules -----------------------------

    async def add_contact(self, contact: ContactLike) -> int:
        """Ask the server to send a code to a new contact; answers its TTL (s)."""
        return await self._account.add_contact(contact)

    async def verify_contact(self, contact: ContactLike, code: str) -> int:
        """Prove the code; the contact now finds this box. Answers the count."""
        return await self._account.verify_contact(contact, code)

    async def remove_contact(self, contact: ContactLike) -> int:
        """Release a contact of this box (not the last one)."""
        return await self._account.remove_contact(contact)

    async def profile(self) -> ProfileInfo:
        """This box's profile."""
        return await self._account.profile()

    async def update_profile(
        self,
        *,
        display_name: str | None = None,
        description: str | None = None,
        avatar_ref: str | None = None,
        discoverable: bool | None = None,
        accept_from: str | None = None,
    ) -> ProfileInfo:
        """Change the given fields; the others keep their value."""
        return await self._account.update_profile(
            display_name=display_name,
            description=description,
            avatar_ref=avatar_ref,
            discoverable=discoverable,
            accept_from=accept_from,
        )

    async def block(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """Block a box (a contact or a box id): it gets NOT_FOUND for us."""
        return await self._account.rule(target, "blocked")

    async def unblock(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        return await self._account.rule(target, None)

    async def accept(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """Let a box reach us under accept_from "contacts-only"."""
        return await self._account.rule(target, "accepted")

    async def unaccept(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        return await self._account.rule(target, None)

    async def blocked(self) -> list[uuid.UUID]:
        return await self._account.listed("blocked")

    async def accepted(self) -> list[uuid.UUID]:
        return await self._account.listed("accepted")


def _home(home: Home) -> Path:
    return Path(home).expanduser()


__all__ = ["RossbyClient"]
