"""The async client SDK: a device that registers, resolves, sends and fetches.

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

Trust model (docs/client.md has the long form): a contact's device keys
are verified (``key_signature``) and pinned the first time they are seen;
any later difference is reported as a ``KeyChange`` (an event, a field of
``SendReport`` and a ``KeyChangeWarning``) and then pinned, and users
compare safety numbers to know whether the keystore told the truth.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from rossby import errors
from rossby.client.accounts import (
    NEXT_KEYFILE,
    SYNC_KIND,
    AccountsMixin,
    LogMismatch,
    profile_info,
)
from rossby.client.channel import make_channel
from rossby.client.errors import (
    AlreadyInitialized,
    ClientError,
    InvalidMessage,
    KeyLogError,
    NotAuthorized,
    NotInitialized,
    UnknownSender,
    UntrustedKeys,
    WrongPassphrase,
)
from rossby.client.hawk import HawkSigner, call_signed
from rossby.client.live import LiveMixin
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    Event,
    FetchStats,
    HeldMessage,
    Identity,
    KeyChange,
    KeyChangeWarning,
    Outcome,
    ReceivedMessage,
    RecipientResult,
    RegistrationStarted,
    RejectedMessage,
    SendReport,
)
from rossby.client.state import (
    KEYFILE,
    MAX_HELD,
    STATE,
    ClientState,
    HeldEnvelope,
    HomeLock,
    Pin,
    PinnedDevice,
    TlsConfig,
    decode_state,
    encode_state,
    make_home,
    state_key,
    write_private,
)
from rossby.contacts import ContactKind, NormalizedContact, normalize
from rossby.crypto import (
    DeviceKeyfile,
    DeviceKeyPair,
    HawkCredentials,
    InvalidEnvelope,
    InvalidSealed,
    KeyfileError,
    OpenedMessage,
    PublicDeviceKeys,
    RecipientDevice,
    SafetyNumber,
    SenderIdentity,
    credentials_aad,
    decode_keyfile,
    open_envelope,
    peek_header,
    safety_number,
    seal_envelope,
    unseal,
    verify_key_signature,
)
from rossby.crypto.keyfile import DEFAULT_SCRYPT_N, rewrite_cost, write_keyfile
from rossby.crypto.link import LinkCode, parse_link_code
from rossby.status import from_rpc_error
from rossby.v1 import rossby_pb2 as pb

SERVICE = "/rossby.v1.Rossby/"
TEXT_KIND = "text"
DEFAULT_TIMEOUT = 30.0
FETCH_PAGE = 100

Resp = TypeVar("Resp", bound=Message)
Home = str | Path
ContactLike = str | NormalizedContact

_OUTCOMES: dict[int, Outcome] = {
    pb.SEND_OUTCOME_QUEUED: "queued",
    pb.SEND_OUTCOME_DUPLICATE: "duplicate",
}


def parse_contact(raw: ContactLike, default_region: str = "US") -> NormalizedContact:
    """An e-mail address if it has an "@", else a phone number; normalized like the server.

    The server normalizes too, but the address book must key contacts the
    same way the server does, or one person would get two entries.
    """
    if isinstance(raw, NormalizedContact):
        return raw
    kind = ContactKind.EMAIL if "@" in raw else ContactKind.PHONE
    return normalize(kind, raw, default_region)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) -> the host and port Hawk signs for."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pb_contact(contact: NormalizedContact) -> pb.Contact:
    return pb.Contact(kind=contact.kind.to_proto(), value=contact.value)  # type: ignore[arg-type]


def encode_text(text: str, boxes: Sequence[uuid.UUID]) -> bytes:
    """The body of a ``text`` message: the text and every box it went to.

    The box list is inside the signed ciphertext so a group member sees who
    else got the message, and the sender's other devices see where it went.
    """
    doc = {"text": text, "to": [str(b) for b in boxes]}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_text(body: bytes) -> tuple[str, tuple[uuid.UUID, ...]]:
    doc = json.loads(body.decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise ValueError("not a text body")
    to = doc.get("to")
    if not isinstance(to, list) or not to or not all(isinstance(b, str) for b in to):
        raise ValueError("bad recipient list")
    return doc["text"], tuple(uuid.UUID(b) for b in to)


class RossbyClient(AccountsMixin, LiveMixin):
    """One device of one box. Build it with ``create``, ``open``, ``join`` or ``install``.

    Not safe for concurrent use from several tasks: the pins and the seen
    set are read-modify-write state. The home directory is locked for the
    client's lifetime so two processes cannot interleave either.
    """

    def __init__(
        self,
        home: Path,
        passphrase: str,
        keyfile: DeviceKeyfile,
        state: ClientState,
        lock: HomeLock,
        *,
        rpc_timeout: float = DEFAULT_TIMEOUT,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> None:
        self.home = home
        self._passphrase = passphrase
        #: The least keyfile cost: new files get it, rewrites are raised to it.
        self._scrypt_n = scrypt_n
        self._keyfile = keyfile
        self._state = state
        self._state_key = state_key(keyfile.keys, keyfile.device_id)
        self._lock = lock
        self._timeout = rpc_timeout
        tls = state.tls
        self._channel = make_channel(
            state.server,
            tls=tls is not None,
            ca=tls.ca if tls else None,
            client_cert=tls.client_cert if tls else None,
            client_key=tls.client_key if tls else None,
            server_name=tls.server_name if tls else None,
        )
        self._signer = self._make_signer()
        self._closed = False
        self.stats = FetchStats()

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
        client = await cls._load(_home(home), passphrase, rpc_timeout, scrypt_n)
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
        if await asyncio.to_thread(_has_device, home):
            client = await cls._load(home, passphrase, rpc_timeout, scrypt_n)
            same = (
                client._state.server == server
                and client._state.own_contacts == wanted
                and client._state.hawk_address == hawk
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
            client = await cls._initialize(home, passphrase, keyfile, state, scrypt_n, rpc_timeout)
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
        if await asyncio.to_thread(_has_device, home):
            client = await cls._load(home, passphrase, rpc_timeout, scrypt_n)
            pending = client._state.pending_link
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
            client = await cls._initialize(home, passphrase, keyfile, state, scrypt_n, rpc_timeout)
        try:
            await client._join_link(link)
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
        client = await cls._initialize(home, passphrase, keyfile, state, scrypt_n, rpc_timeout)
        try:
            await client._resolve_own()
            client._save()
            yield client
        finally:
            await client.close()

    @classmethod
    async def _initialize(
        cls,
        home: Path,
        passphrase: str,
        keyfile: DeviceKeyfile,
        state: ClientState,
        scrypt_n: int,
        rpc_timeout: float,
    ) -> RossbyClient:
        lock = await asyncio.to_thread(_initialize_home, home, passphrase, keyfile, state, scrypt_n)
        return cls(
            home, passphrase, keyfile, state, lock, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n
        )

    @classmethod
    async def _load(
        cls, home: Path, passphrase: str, rpc_timeout: float, scrypt_n: int
    ) -> RossbyClient:
        keyfile, state, lock = await asyncio.to_thread(_load_home, home, passphrase)
        return cls(
            home, passphrase, keyfile, state, lock, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n
        )

    async def close(self) -> None:
        """Persist state, close the channel, release the home. Safe to call twice."""
        if self._closed:
            return
        try:
            self._save()
            self._closed = True
            await self._channel.close()
        finally:
            self._closed = True
            self._lock.release()

    # -- identity ------------------------------------------------------------

    @property
    def device_id(self) -> uuid.UUID:
        return self._keyfile.device_id

    @property
    def box_id(self) -> uuid.UUID | None:
        return self._keyfile.box_id

    @property
    def authorized(self) -> bool:
        return self._keyfile.box_id is not None and self._keyfile.hawk is not None

    def whoami(self) -> Identity:
        s = self._state
        return Identity(
            device_id=self.device_id,
            device_name=s.device_name,
            box_id=self.box_id,
            contacts=tuple(c.value for c in s.own_contacts),
            server=s.server,
            hawk_address=s.hawk_address,
            home_region=self._keyfile.home_region,
            authorized=self.authorized,
        )

    def contact_of(self, box_id: uuid.UUID) -> str | None:
        """The contact we know a box by (sent to or resolved), if any."""
        if box_id == self.box_id and self._state.own_contacts:
            return self._state.own_contacts[0].value
        contact = self._state.contact_of(box_id)
        return contact.value if contact else None

    def pinned_devices(self, box_id: uuid.UUID) -> tuple[DeviceInfo, ...]:
        pin = self._state.pins.get(box_id)
        return () if pin is None else self._device_infos(box_id, pin.devices)

    # -- registration ----------------------------------------------------------

    async def register(self) -> RegistrationStarted:
        """Ask the server to send a code to each of this device's contacts.

        Calling it again resends the codes (the server rate-limits that).
        """
        if self.authorized:
            raise AlreadyInitialized("this device is already verified")
        keys = self._keyfile.keys
        pub = keys.public()
        request = pb.RegisterRequest(
            device_id=str(self.device_id),
            contacts=[_pb_contact(c) for c in self._state.own_contacts],
            keys=pb.DeviceKeys(
                encryption_key=pub.encryption_public,
                signing_key=pub.signing_public,
                key_signature=keys.key_signature(self.device_id),
            ),
            device_name=self._state.device_name,
        )
        reply = await self._public("Register", request, pb.RegisterResponse)
        return RegistrationStarted(
            tuple(c.value for c in self._state.own_contacts), reply.code_ttl_seconds
        )

    async def authorize(self, codes: Sequence[str]) -> Identity:
        """Prove the codes and the signing key; store the unsealed Hawk credentials.

        Codes go in the order of the contacts given at ``create``.
        """
        if self.authorized:
            raise AlreadyInitialized("this device is already verified")
        codes = [c.strip() for c in codes]
        keys = self._keyfile.keys
        request = pb.AuthorizeRequest(
            device_id=str(self.device_id),
            codes=codes,
            signature=keys.authorize_signature(self.device_id, codes),
        )
        reply = await self._public("Authorize", request, pb.AuthorizeResponse)
        try:
            box_id = uuid.UUID(reply.box_id)
        except ValueError:
            raise UntrustedKeys(
                "the server's credentials do not open with this device's key"
            ) from None
        await self._adopt_credentials(box_id, reply.sealed_credentials, reply.home_region)
        await self._resolve_own()  # pin our own devices from the start
        self._save()
        return self.whoami()

    async def _adopt_credentials(self, box_id: uuid.UUID, sealed: bytes, home_region: str) -> None:
        """Unseal the Hawk credentials the server sealed to this device, check
        they name this device of ``box_id``, and keep them in the keyfile.

        Shared by Authorize (a new box) and device linking (an existing one).
        """
        try:
            creds = pb.HawkCredentials.FromString(
                unseal(
                    self._keyfile.keys.encryption_private,
                    sealed,
                    aad=credentials_aad(self.device_id),
                )
            )
        except (InvalidSealed, DecodeError):
            raise UntrustedKeys(
                "the server's credentials do not open with this device's key"
            ) from None
        if creds.id != f"{box_id}.{self.device_id}" or creds.algorithm != "sha256":
            raise UntrustedKeys("the server's credentials are for another device")
        keyfile = replace(
            self._keyfile,
            box_id=box_id,
            hawk=HawkCredentials(creds.id, bytes(creds.key), creds.algorithm),
            home_region=home_region or None,
        )
        await asyncio.to_thread(
            _rewrite_keyfile, self.home, keyfile, self._passphrase, self._scrypt_n
        )
        self._keyfile = keyfile
        self._signer = self._make_signer()

    # -- keystore ------------------------------------------------------------

    async def resolve(self, contact: ContactLike) -> ContactInfo:
        """Look a contact up, verify every device's key signature, pin the keys.

        Also what makes a sender known: messages held for the contact's box
        open on the next ``fetch_messages``.
        """
        info = await self._resolve(parse_contact(contact))
        self._save()
        return info

    async def devices(self) -> list[DeviceInfo]:
        """Every active device of our own box, as the keystore lists them."""
        info = await self._resolve_own()
        self._save()
        return list(info.devices)

    async def safety_number(self, contact: ContactLike) -> SafetyNumber:
        """The number both users compare, over every device key of both boxes.

        Computed from the keys just fetched (and pinned), i.e. the keys the
        next message would be encrypted to.
        """
        theirs = await self._resolve(parse_contact(contact))
        mine = await self._resolve_own()
        self._save()
        return safety_number(
            mine.box_id,
            [PublicDeviceKeys(d.encryption_key, d.signing_key) for d in mine.devices],
            theirs.box_id,
            [PublicDeviceKeys(d.encryption_key, d.signing_key) for d in theirs.devices],
        )

    async def _resolve_own(self) -> ContactInfo:
        self._require_authorized()
        if not self._state.own_contacts:
            # A linked device learns the box's contacts later (sync message).
            return await self._resolve(None, box_id=self.box_id)
        return await self._resolve(self._state.own_contacts[0])

    async def _resolve(
        self, contact: NormalizedContact | None, *, box_id: uuid.UUID | None = None
    ) -> ContactInfo:
        """Fetch, verify and pin a box's keys, by contact or by known box id."""
        request = (
            pb.RequestKeyRequest(contact=_pb_contact(contact))
            if contact is not None
            else pb.RequestKeyRequest(box_id=str(box_id))
        )
        reply = await self._call("RequestKey", request, pb.RequestKeyResponse)
        try:
            found = uuid.UUID(reply.box_id)
        except ValueError:
            raise UntrustedKeys("the keystore answered a malformed box id") from None
        if contact is None and found != box_id:
            raise UntrustedKeys(f"the keystore answered box {found} for {box_id}")
        devices = self._verified(reply)
        if contact in self._state.own_contacts and found != self.box_id:
            raise UntrustedKeys(f"the keystore says {contact.value} belongs to another box")
        try:
            await self._check_log(found, reply, devices)
        except LogMismatch:
            # A change may have landed between the keystore's two reads: ask
            # once more before calling it a lie.
            reply = await self._call("RequestKey", request, pb.RequestKeyResponse)
            if reply.box_id != str(found):
                raise UntrustedKeys("the keystore changed its answer for this box") from None
            devices = self._verified(reply)
            try:
                await self._check_log(found, reply, devices)
            except LogMismatch:
                raise KeyLogError(
                    f"the keystore lists other devices for box {found} than its key log "
                    "vouches for; not trusting any of them"
                ) from None
        previous = self._state.book.get(contact) if contact is not None else None
        change = self._pin(
            found, devices, contact, previous if previous not in (None, found) else None
        )
        if contact is not None:
            self._state.book[contact] = found
        label = contact.value if contact is not None else str(found)
        return ContactInfo(
            label,
            found,
            self._device_infos(found, devices),
            change,
            profile_info(reply.profile) if reply.HasField("profile") else None,
            int(reply.key_log.seq),
        )

    def _verified(self, reply: pb.RequestKeyResponse) -> dict[uuid.UUID, PinnedDevice]:
        devices: dict[uuid.UUID, PinnedDevice] = {}
        for d in reply.devices:
            try:
                device_id = uuid.UUID(d.device_id)
            except ValueError:
                raise UntrustedKeys("the keystore answered a malformed device id") from None
            k = d.keys
            if not verify_key_signature(
                k.signing_key, device_id, k.encryption_key, k.key_signature
            ):
                raise UntrustedKeys(
                    f"device {device_id}'s key signature does not verify; "
                    "not trusting any of this box's keys"
                )
            devices[device_id] = PinnedDevice(
                device_id, d.device_name, bytes(k.encryption_key), bytes(k.signing_key)
            )
        if not devices:
            raise UntrustedKeys("the keystore listed no device for this box")
        return devices

    def _pin(
        self,
        box_id: uuid.UUID,
        devices: dict[uuid.UUID, PinnedDevice],
        contact: NormalizedContact | None,
        previous_box: uuid.UUID | None,
    ) -> KeyChange | None:
        """Compare with the pin, report any difference once, then pin the new keys."""
        now = _now_ms()
        own = box_id == self.box_id
        old = self._state.pins.get(box_id)
        added: set[uuid.UUID] = set()
        removed: set[uuid.UUID] = set()
        rekeyed: set[uuid.UUID] = set()
        if old is not None:
            added = set(devices) - set(old.devices)
            removed = set(old.devices) - set(devices)
            rekeyed = {
                d
                for d in set(devices) & set(old.devices)
                if _keys(devices[d]) != _keys(old.devices[d])
            }
        if own:
            # The one device whose keys we know for certain: our own.
            me = devices.get(self.device_id)
            if me is None:
                removed.add(self.device_id)
            elif _keys(me) != tuple(self._keyfile.keys.public()):
                rekeyed.add(self.device_id)
        change = None
        if added or removed or rekeyed or previous_box is not None:
            change = KeyChange(
                box_id=box_id,
                contact=None if own or contact is None else contact.value,
                own_box=own,
                added=tuple(sorted(added)),
                removed=tuple(sorted(removed)),
                rekeyed=tuple(sorted(rekeyed)),
                previous_box=previous_box,
            )
        self._state.pins[box_id] = Pin(
            box_id,
            dict(devices),
            old.pinned_at_ms if old else now,
            now if change else (old.changed_at_ms if old else None),
        )
        if change is not None:
            warnings.warn(KeyChangeWarning(change), stacklevel=4)
        return change

    def _device_infos(
        self, box_id: uuid.UUID, devices: dict[uuid.UUID, PinnedDevice]
    ) -> tuple[DeviceInfo, ...]:
        own = box_id == self.box_id
        return tuple(
            DeviceInfo(
                d.device_id,
                d.name,
                d.encryption_key,
                d.signing_key,
                this_device=own and d.device_id == self.device_id,
            )
            for d in devices.values()
        )

    # -- sending ---------------------------------------------------------------

    async def send(
        self,
        contacts: Sequence[ContactLike],
        text: str,
        *,
        message_id: uuid.UUID | None = None,
    ) -> SendReport:
        """Encrypt ``text`` once per recipient box and queue it in one Send.

        Several contacts make a group message: each box gets its own
        envelope (wrapped for its devices and for our other devices), all
        under one message id, and our own box gets one copy so our other
        devices show the message too. Pass ``message_id`` to retry a send
        whose outcome is unknown: the server keeps exactly one copy.
        Per-recipient refusals are in the report, not raised.
        """
        if not contacts:
            raise ClientError("name at least one recipient")
        wanted = [parse_contact(c) for c in contacts]
        own = await self._resolve_own()
        changes = [own.key_change] if own.key_change else []
        targets: dict[uuid.UUID, ContactInfo] = {}
        for contact in wanted:
            info = await self._resolve(contact)
            if info.key_change is not None:
                changes.append(info.key_change)
            targets.setdefault(info.box_id, info)
        others = [d for d in own.devices if not d.this_device]
        mid = message_id or uuid.uuid4()
        sent_at = _now_ms()
        body = encode_text(text, list(targets))
        assert self._keyfile.box_id is not None
        sender = SenderIdentity(
            self._keyfile.box_id, self.device_id, self._keyfile.keys.signing_private
        )
        outgoing: list[pb.OutgoingMessage] = []
        for box_id, info in targets.items():
            readers = {
                d.device_id: RecipientDevice(d.device_id, d.encryption_key)
                for d in (*info.devices, *others)
                if d.device_id != self.device_id
            }
            if not readers:
                raise ClientError("no other device could read this message")
            envelope = seal_envelope(
                sender, box_id, list(readers.values()), mid, TEXT_KIND, body, now_ms=sent_at
            )
            outgoing.append(
                pb.OutgoingMessage(
                    recipient_box_id=str(box_id), message_id=str(mid), ciphertext=envelope
                )
            )
        await self._accept_recipients(list(targets))
        own_copy = bool(others) and self._keyfile.box_id not in targets
        if own_copy:
            # Any recipient's envelope lists our other devices as readers.
            outgoing.append(
                pb.OutgoingMessage(
                    recipient_box_id=str(self._keyfile.box_id),
                    message_id=str(mid),
                    ciphertext=outgoing[0].ciphertext,
                )
            )
        self._save()
        reply = await self._call("Send", pb.SendRequest(messages=outgoing), pb.SendResponse)
        results = []
        for r in reply.results:
            box_id = uuid.UUID(r.recipient_box_id)
            outcome = _OUTCOMES.get(r.outcome, "rejected")
            results.append(
                RecipientResult(
                    box_id=box_id,
                    contact=self.contact_of(box_id),
                    outcome=outcome,
                    position=r.position,
                    code=r.code,
                    reason=r.reason,
                    own_copy=own_copy and box_id == self._keyfile.box_id,
                )
            )
        self._state.seen.add(str(mid))
        self._save()
        return SendReport(mid, sent_at, tuple(results), tuple(changes))

    # -- receiving -------------------------------------------------------------

    async def fetch_messages(self, *, page_size: int = FETCH_PAGE) -> AsyncIterator[Event]:
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
        self._require_authorized()
        refreshed: set[uuid.UUID] = set()
        try:
            for held in list(self._state.held):
                events = await self._process(_queued_from(held), refreshed, held=True)
                if events is None:
                    continue  # the sender is still unknown
                self._state.held.remove(held)
                for event in events:
                    yield event
            after, highest = 0, 0
            while True:
                page = await self._call(
                    "Fetch", pb.FetchRequest(after=after, limit=page_size), pb.FetchResponse
                )
                for message in page.messages:
                    highest = max(highest, message.position)
                    for event in await self._process(message, refreshed) or ():
                        yield event
                if not page.more or page.next_after <= after:
                    break
                after = page.next_after
            if highest:
                self._save()  # seen ids first: a crash before the ack only repeats
                reply = await self._call("Ack", pb.AckRequest(through=highest), pb.AckResponse)
                self.stats.acked_through = reply.cursor
        finally:
            self._save()

    async def _process(
        self, m: pb.QueuedMessage, refreshed: set[uuid.UUID], *, held: bool = False
    ) -> list[Event] | None:
        """The events one message produces; None only for a held message still unknown."""
        rejected_key = f"{m.message_id}@{m.position}"
        if m.message_id in self._state.seen or rejected_key in self._state.rejected:
            self.stats.duplicates += 1
            return []
        reject = RejectedMessage(
            m.message_id, m.position, m.sender_box_id, m.sender_device_id, m.received_at_ms
        )
        try:
            mid = uuid.UUID(m.message_id)
            sender = (uuid.UUID(m.sender_box_id), uuid.UUID(m.sender_device_id))
        except ValueError:
            self._state.rejected.add(rejected_key)
            self.stats.rejected += 1
            return [reject]
        if str(mid) in self._state.seen:
            self.stats.duplicates += 1
            return []
        if sender == (self.box_id, self.device_id):
            self._state.seen.add(str(mid))  # the copy of our own send to our box
            return []
        events: list[Event] = []
        try:
            message = await self._open(m, mid, *sender, refreshed, events)
        except UnknownSender:
            if held:
                return None
            if len(self._state.held) >= MAX_HELD:
                self._state.rejected.add(rejected_key)
                self.stats.rejected += 1
                return [reject]
            self._state.held.append(
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
        except InvalidMessage:
            self._state.rejected.add(rejected_key)
            self.stats.rejected += 1
            return [*events, reject]
        origin = f"{sender[0]}.{sender[1]}"
        if self._state.seen.replayed(origin, message.sent_at_ms):
            # Older than what already fell out of the id window: a replay by
            # the server of a message processed long ago (state.SeenSet).
            self.stats.duplicates += 1
            return events
        self._state.seen.add(str(mid), origin, message.sent_at_ms)
        if message.kind == SYNC_KIND:
            if message.sender_box == self.box_id:  # from another device of ours
                self._apply_sync(message.body)
            return events
        self.stats.received += 1
        return [*events, message]

    async def open_message(self, message: pb.QueuedMessage) -> ReceivedMessage:
        """Verify and decrypt one queued message without touching the seen set.

        Raises ``InvalidMessage`` for anything untrustworthy and
        ``UnknownSender`` when the sender's keys cannot be looked up.
        """
        self._require_authorized()
        try:
            mid = uuid.UUID(message.message_id)
            box, device = uuid.UUID(message.sender_box_id), uuid.UUID(message.sender_device_id)
        except ValueError:
            raise InvalidMessage from None
        return await self._open(message, mid, box, device, set(), [])

    async def _open(
        self,
        m: pb.QueuedMessage,
        mid: uuid.UUID,
        sender_box: uuid.UUID,
        sender_device: uuid.UUID,
        refreshed: set[uuid.UUID],
        events: list[Event],
    ) -> ReceivedMessage:
        data = bytes(m.ciphertext)
        try:
            header = peek_header(data)
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
        key = self._signing_key(sender_box, sender_device)
        if key is None:
            await self._refresh(sender_box, refreshed, events)
            key = self._signing_key(sender_box, sender_device)
            if key is None:
                raise InvalidMessage
        try:
            opened = self._open_with(data, key)
        except InvalidEnvelope:
            # Perhaps the device re-keyed since we pinned it: look once more.
            if sender_box in refreshed:
                raise InvalidMessage from None
            await self._refresh(sender_box, refreshed, events)
            fresh = self._signing_key(sender_box, sender_device)
            if fresh is None or fresh == key:
                raise InvalidMessage from None
            try:
                opened = self._open_with(data, fresh)
            except InvalidEnvelope:
                raise InvalidMessage from None
        return self._received(m, opened)

    def _open_with(self, data: bytes, signing_key: bytes) -> OpenedMessage:
        assert self.box_id is not None
        keys = [self._keyfile.keys.encryption_private_bytes(), *self._state.previous_keys]
        for i, key in enumerate(keys):
            try:
                return open_envelope(
                    data,
                    my_device_id=self.device_id,
                    my_encryption_private=key,
                    expected_recipient_box=self.box_id,
                    sender_lookup=lambda _box, _device: signing_key,
                )
            except InvalidEnvelope:
                # Sealed to a key we rotated away from? Try the older ones.
                if i == len(keys) - 1:
                    raise
        raise InvalidEnvelope

    def _signing_key(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bytes | None:
        pin = self._state.pins.get(box_id)
        device = pin.devices.get(device_id) if pin else None
        return device.signing_key if device else None

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
        contact: NormalizedContact | None
        if box_id == self.box_id:
            contact = self._state.own_contacts[0] if self._state.own_contacts else None
        else:
            contact = self._state.contact_of(box_id)
        refreshed.add(box_id)
        try:
            info = await self._resolve(contact, box_id=box_id)
        except (errors.NotFound, UntrustedKeys):
            if self._state.pins.get(box_id) is None:
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
        outgoing = opened.sender_box == self.box_id
        pin = self._state.pins.get(opened.sender_box)
        device = pin.devices.get(opened.sender_device) if pin else None
        return ReceivedMessage(
            message_id=opened.message_id,
            position=m.position,
            sender_box=opened.sender_box,
            sender_device=opened.sender_device,
            sender_contact=None if outgoing else self.contact_of(opened.sender_box),
            sender_device_name=device.name if device else "",
            outgoing=outgoing,
            recipient_box=opened.recipient_box,
            recipients=recipients,
            sent_at_ms=opened.sent_at_ms,
            received_at_ms=m.received_at_ms,
            kind=opened.kind,
            body=opened.body,
            text=text,
        )

    # -- plumbing ------------------------------------------------------------

    def _make_signer(self) -> HawkSigner | None:
        hawk = self._keyfile.hawk
        if hawk is None:
            return None
        host, port = split_address(self._state.hawk_address)
        return HawkSigner(hawk.id, hawk.key, host, port)

    def _require_authorized(self) -> HawkSigner:
        if self._signer is None or self._keyfile.box_id is None:
            raise NotAuthorized(
                "this device is not verified yet: run `rossby client verify "
                "CODE` with the code the server sent"
            )
        return self._signer

    def _save(self) -> None:
        # A fetch generator abandoned mid-way is finalized whenever the loop
        # gets to it, possibly after close, when another client may own the
        # home: a closed client must never write.
        if self._closed:
            return
        write_private(self.home / STATE, encode_state(self._state, self._state_key))

    async def _call(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        signer = self._require_authorized()
        try:
            return await call_signed(
                self._channel,
                signer,
                SERVICE + method,
                request,
                response_type,
                deadline=self._timeout,
                require_server_authorization=True,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    async def _public(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        invoke = self._channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            return await invoke(request, timeout=self._timeout)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc


def _home(home: Home) -> Path:
    return Path(home).expanduser()


def _has_device(home: Path) -> bool:
    return (home / KEYFILE).exists()


def _initialize_home(
    home: Path, passphrase: str, keyfile: DeviceKeyfile, state: ClientState, scrypt_n: int
) -> HomeLock:
    """Write a new device's state, then its keyfile (the keyfile marks the home as used)."""
    make_home(home)
    lock = HomeLock(home)
    lock.acquire()
    try:
        if _has_device(home):
            raise AlreadyInitialized(f"{home} already holds a device; use another --home")
        write_private(home / STATE, encode_state(state, state_key(keyfile.keys, keyfile.device_id)))
        write_keyfile(home / KEYFILE, keyfile, passphrase, scrypt_n=scrypt_n)
    except BaseException:
        lock.release()
        raise
    return lock


def _load_home(home: Path, passphrase: str) -> tuple[DeviceKeyfile, ClientState, HomeLock]:
    if not _has_device(home):
        raise NotInitialized(f"no Rossby device in {home}: run `rossby client init` first")
    lock = HomeLock(home)
    lock.acquire()
    try:
        try:
            keyfile = decode_keyfile((home / KEYFILE).read_bytes(), passphrase)
        except KeyfileError:
            raise WrongPassphrase(
                f"cannot open {home / KEYFILE}: wrong passphrase, or the file is damaged"
            ) from None
        try:
            raw_state = (home / STATE).read_bytes()
        except FileNotFoundError:
            raise NotInitialized(f"{home / STATE} is missing; initialize a new home") from None
        try:
            state = decode_state(raw_state, state_key(keyfile.keys, keyfile.device_id))
        except WrongPassphrase:
            keyfile, state = _finish_rotation(home, passphrase, keyfile, raw_state)
    except BaseException:
        lock.release()
        raise
    return keyfile, state, lock


def _finish_rotation(
    home: Path, passphrase: str, keyfile: DeviceKeyfile, raw_state: bytes
) -> tuple[DeviceKeyfile, ClientState]:
    """A key rotation stopped after the state moved to the new keys but
    before ``device.key`` did: finish it (rename the staged keyfile)."""
    nxt = home / NEXT_KEYFILE
    try:
        staged = decode_keyfile(nxt.read_bytes(), passphrase)
    except (FileNotFoundError, KeyfileError):
        raise WrongPassphrase(
            "the state file does not open: it is damaged, or belongs to another device"
        ) from None
    if staged.device_id != keyfile.device_id:
        raise WrongPassphrase("the staged keyfile belongs to another device")
    state = decode_state(raw_state, state_key(staged.keys, staged.device_id))
    os.replace(nxt, home / KEYFILE)
    return staged, state


def _rewrite_keyfile(home: Path, keyfile: DeviceKeyfile, passphrase: str, minimum: int) -> None:
    """Replace the keyfile at its own cost raised to ``minimum`` (``rewrite_cost``)."""
    path = home / KEYFILE
    write_keyfile(path, keyfile, passphrase, scrypt_n=rewrite_cost(path.read_bytes(), minimum))


def _keys(device: PinnedDevice) -> tuple[bytes, bytes]:
    return device.encryption_key, device.signing_key


def _queued_from(held: HeldEnvelope) -> pb.QueuedMessage:
    return pb.QueuedMessage(
        position=held.position,
        message_id=held.message_id,
        sender_box_id=held.sender_box,
        sender_device_id=held.sender_device,
        received_at_ms=held.received_at_ms,
        ciphertext=held.ciphertext,
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "RossbyClient",
    "decode_text",
    "encode_text",
    "parse_contact",
    "split_address",
]
