"""The session book: one Double Ratchet session per (peer box, peer device).

A v2 envelope (rossby.crypto.envelope_v2) encrypts its body once under a
fresh content key K; each reader device gets K as a ratchet message on its
session with the sender. ``seal`` builds that: devices without a session
are claimed in one ``ClaimPrekeys`` per box, each bundle's identity keys
must equal the keys the directory pinned (and its prekey signatures must
verify, which ``pqxdh.initiate`` checks), then PQXDH and the ratchet's
first step run. That device's entry carries the PQXDH ``InitialHeader``
until a message from the device arrives on the session, so the peer can
set the session up from whichever of those messages it reads first.

``open`` is the other side: the signature was checked by the caller; every
session with the sender's device is tried (the current one first), and
only if none decrypts and the entry has an ``InitialHeader`` does PQXDH
respond run, with the prekey privates the header names. A one-time private
is deleted once its session decrypted, which is what keeps a captured first
message unreadable to whoever later steals the device. Nothing changes in
the book when a message does not open.

Resets: when the pinned keys of a peer device differ from those its
session was agreed with (it rotated its keys), or it left its box
(revoked), its sessions are dropped and the next message starts a new one
(``prune``). When this device rotates its own keys, every session is
archived (``reset_all``): archived sessions still decrypt what peers sent
before they noticed, but new messages start fresh sessions under the new
identity key.

Associated data of every ratchet message: the PQXDH AD of its session
(both devices' ids and identity keys, the ratchet's ``session_ad``) and the
envelope's own (``draft.associated_data`` / ``parsed.associated_data``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rossby.client.errors import ClientError, UntrustedKeys
from rossby.client.session import Session, now_ms
from rossby.client.state import PinnedDevice
from rossby.client.vault import DeviceSessions, FirstContactKeys, SessionKey, SessionRecord
from rossby.client.wire import bundle_from
from rossby.crypto import OpenedMessage, SenderIdentity
from rossby.crypto.envelope_v2 import (
    DeviceEntry,
    ParsedEnvelope,
    draft_envelope,
    open_body,
    seal_draft,
)
from rossby.crypto.errors import CryptoError, InvalidBundle, InvalidEnvelope
from rossby.crypto.pqxdh import Bundle, IdentityKeys, InitialHeader, initiate, respond
from rossby.crypto.ratchet import RatchetSession
from rossby.v1 import rossby_pb2 as pb


@dataclass(frozen=True, slots=True)
class Reader:
    """A device that must read an envelope: the recipient box's, or our own other one."""

    box_id: uuid.UUID
    device: PinnedDevice


@dataclass(frozen=True, slots=True)
class Sealed:
    """A signed envelope, and the reader devices left out of it (no prekeys)."""

    envelope: bytes
    unreachable: tuple[uuid.UUID, ...]


class Sessions:
    """Encrypts content keys to reader devices and decrypts them, per session."""

    def __init__(self, session: Session, *, clock: Callable[[], int] = now_ms) -> None:
        self._session = session
        self._clock = clock

    @property
    def _book(self) -> dict[SessionKey, DeviceSessions]:
        return self._session.state.sessions

    def current(self, box_id: uuid.UUID, device_id: uuid.UUID) -> SessionRecord | None:
        """The session we would send on to this device, if any."""
        entry = self._book.get((box_id, device_id))
        return entry.current if entry else None

    # -- resets ------------------------------------------------------------------

    def prune(self, box_id: uuid.UUID) -> None:
        """Drop the sessions of ``box_id``'s devices that left the box or whose
        pinned keys are not the ones their session was agreed with."""
        pin = self._session.state.pins.get(box_id)
        for key in [k for k in self._book if k[0] == box_id]:
            device = pin.devices.get(key[1]) if pin else None
            if device is None:
                del self._book[key]
                continue
            keys = (device.encryption_key, device.signing_key)
            entry = self._book[key]
            entry.archived = [r for r in entry.archived if (r.peer_dh, r.peer_signing) == keys]
            if entry.current and (entry.current.peer_dh, entry.current.peer_signing) != keys:
                entry.current = None
            if entry.current is None and not entry.archived:
                del self._book[key]

    def reset_all(self) -> None:
        """Our identity keys changed: send on no existing session again."""
        for entry in self._book.values():
            if entry.current is not None:
                entry.archive(entry.current)

    # -- sending -----------------------------------------------------------------

    async def seal(
        self,
        recipient_box: uuid.UUID,
        readers: Sequence[Reader],
        message_id: uuid.UUID,
        kind: str,
        body: bytes,
        *,
        sent_at_ms: int,
    ) -> Sealed:
        """The signed v2 envelope for ``readers``; devices that published no
        prekeys yet cannot read it (``Sealed.unreachable``); ``ClientError``
        if none can."""
        s = self._session
        for box in {r.box_id for r in readers}:
            self.prune(box)
        missing: dict[uuid.UUID, list[PinnedDevice]] = {}
        for r in readers:
            if self.current(r.box_id, r.device.device_id) is None:
                missing.setdefault(r.box_id, []).append(r.device)
        bundles: dict[uuid.UUID, Bundle] = {}
        for box, devices in missing.items():
            bundles.update(await self._claim(box, devices))
        reachable = [
            r
            for r in readers
            if r.device.device_id in bundles or self.current(r.box_id, r.device.device_id)
        ]
        unreachable = tuple(r.device.device_id for r in readers if r not in reachable)
        if not reachable:
            raise ClientError(
                "no device of the recipient has published prekeys yet, so none could read it"
            )
        assert s.box_id is not None
        sender = SenderIdentity(s.box_id, s.device_id, s.keyfile.keys.signing_private)
        draft = draft_envelope(
            sender,
            recipient_box,
            [r.device.device_id for r in reachable],
            message_id,
            now_ms=sent_at_ms,
        )
        entries: dict[uuid.UUID, DeviceEntry] = {}
        for r in reachable:
            device_id = r.device.device_id
            bundle = bundles.get(device_id)
            if bundle is None:
                entries[device_id] = await self._encrypt(
                    r, draft.content_key, draft.associated_data
                )
            else:
                entries[device_id] = await self._start(
                    r, bundle, draft.content_key, draft.associated_data
                )
        return Sealed(seal_draft(draft, entries, kind, body), unreachable)

    async def _encrypt(self, reader: Reader, content_key: bytes, envelope_ad: bytes) -> DeviceEntry:
        record = self.current(reader.box_id, reader.device.device_id)
        assert record is not None
        ratchet = RatchetSession.from_json(record.ratchet)
        message = await ratchet.encrypt(content_key, envelope_ad)
        record.ratchet = ratchet.to_json()
        initial = None if record.initial is None else InitialHeader.decode(record.initial)
        return DeviceEntry(initial, message)

    async def _start(
        self, reader: Reader, bundle: Bundle, content_key: bytes, envelope_ad: bytes
    ) -> DeviceEntry:
        """PQXDH against the claimed bundle, then the ratchet's first message."""
        s = self._session
        try:
            header, secret, ad = initiate(
                s.keyfile.keys.encryption_private_bytes(), self._own_identity(), bundle
            )
        except InvalidBundle:
            raise UntrustedKeys(
                f"device {reader.device.device_id}'s prekey signatures do not verify; "
                "not starting a session with it"
            ) from None
        ratchet, message = await RatchetSession.initiate(
            secret, bundle.signed_prekey, content_key, envelope_ad, session_ad=ad
        )
        initial = header.encode()
        record = SessionRecord(
            ratchet=ratchet.to_json(),
            peer_dh=reader.device.encryption_key,
            peer_signing=reader.device.signing_key,
            created_at_ms=self._clock(),
            initial=initial,
            own_dh=self._own_identity().dh_public,
        )
        self._book.setdefault((reader.box_id, reader.device.device_id), DeviceSessions()).install(
            record
        )
        return DeviceEntry(header, message)

    async def _claim(
        self, box_id: uuid.UUID, devices: Sequence[PinnedDevice]
    ) -> dict[uuid.UUID, Bundle]:
        """One ClaimPrekeys for ``devices`` of ``box_id``; each bundle checked
        against the pinned identity keys (the signatures: by ``initiate``)."""
        reply = await self._session.call(
            "ClaimPrekeys",
            pb.ClaimPrekeysRequest(
                box_id=str(box_id), device_ids=[str(d.device_id) for d in devices]
            ),
            pb.ClaimPrekeysResponse,
        )
        if reply.box_id != str(box_id):
            raise UntrustedKeys(f"the keystore answered prekeys of box {reply.box_id} for {box_id}")
        wanted = {d.device_id: d for d in devices}
        out: dict[uuid.UUID, Bundle] = {}
        for b in reply.bundles:
            try:
                device_id = uuid.UUID(b.device.device_id)
            except ValueError:
                raise UntrustedKeys("the keystore answered a malformed device id") from None
            pin = wanted.get(device_id)
            if pin is None:
                continue  # not one we asked for
            keys = (bytes(b.device.keys.encryption_key), bytes(b.device.keys.signing_key))
            if keys != (pin.encryption_key, pin.signing_key):
                raise UntrustedKeys(
                    f"the keystore's prekey bundle for device {device_id} names other "
                    "identity keys than the ones pinned for it"
                )
            identity = IdentityKeys(device_id, pin.encryption_key, pin.signing_key)
            out[device_id] = bundle_from(b, identity)
        return out

    # -- receiving ---------------------------------------------------------------

    async def open(self, parsed: ParsedEnvelope, sender: PinnedDevice) -> OpenedMessage:
        """Decrypt our entry of a VERIFIED envelope from ``sender``; ``InvalidEnvelope``
        when no session opens it (and nothing in the book changed)."""
        header = parsed.header
        key = (header.sender_box, header.sender_device)
        self.prune(header.sender_box)
        entry = parsed.entry
        ad = parsed.associated_data
        book = self._book.get(key) or DeviceSessions()
        for record in book.candidates():
            ratchet = RatchetSession.from_json(record.ratchet)
            try:
                content_key = await ratchet.decrypt(entry.ratchet_message, ad)
                kind, body = open_body(parsed, content_key)
            except (CryptoError, ValueError):
                continue
            record.ratchet = ratchet.to_json()
            record.initial = None  # the peer has this session: no header needed any more
            if record is not book.current and self._sendable(record, sender):
                book.install(record)  # the peer writes on it: so do we
            self._book[key] = book
            return _opened(parsed, kind, body)
        if entry.initial is None:
            raise InvalidEnvelope
        record, kind, body, used = await self._respond(parsed, entry.initial, sender)
        self._session.state.prekeys.spend(used)  # a one-time private is used once, then gone
        book.install(record)
        self._book[key] = book
        return _opened(parsed, kind, body)

    async def _respond(
        self, parsed: ParsedEnvelope, header: InitialHeader, sender: PinnedDevice
    ) -> tuple[SessionRecord, str, bytes, FirstContactKeys]:
        """PQXDH respond and the ratchet's first decrypt, with the privates
        ``header`` names; answers the session and the one-time keys it used."""
        s = self._session
        used = s.state.prekeys.first_contact(header)
        own = self._own_identity()
        peer = IdentityKeys(sender.device_id, sender.encryption_key, sender.signing_key)
        try:
            secret, ad = respond(
                s.keyfile.keys.encryption_private_bytes(),
                own,
                peer,
                header,
                signed_prekey_private=used.signed,
                one_time_prekey_private=used.one_time,
                kem_private=used.kem,
            )
            ratchet, content_key = await RatchetSession.respond(
                secret, used.signed, parsed.entry.ratchet_message, parsed.associated_data,
                session_ad=ad,
            )  # fmt: skip
            kind, body = open_body(parsed, content_key)
        except (CryptoError, ValueError):
            raise InvalidEnvelope from None
        record = SessionRecord(
            ratchet=ratchet.to_json(),
            peer_dh=sender.encryption_key,
            peer_signing=sender.signing_key,
            created_at_ms=self._clock(),
            own_dh=own.dh_public,
        )
        return record, kind, body, used

    def _sendable(self, record: SessionRecord, peer: PinnedDevice) -> bool:
        """Agreed with the peer's pinned keys and our current identity key."""
        return (record.peer_dh, record.peer_signing, record.own_dh) == (
            peer.encryption_key,
            peer.signing_key,
            self._own_identity().dh_public,
        )

    def _own_identity(self) -> IdentityKeys:
        return IdentityKeys.of(self._session.device_id, self._session.keyfile.keys)


def _opened(parsed: ParsedEnvelope, kind: str, body: bytes) -> OpenedMessage:
    h = parsed.header
    return OpenedMessage(
        message_id=h.message_id,
        sender_box=h.sender_box,
        sender_device=h.sender_device,
        recipient_box=h.recipient_box,
        sent_at_ms=h.sent_at_ms,
        kind=kind,
        body=body,
    )


__all__ = ["Reader", "Sealed", "Sessions"]
