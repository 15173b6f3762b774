"""The directory: whose keys are whose, as this device has verified and pinned them.

Trust model (docs/client.md has the long form): a contact's device keys
are verified (``key_signature``) and checked against the box's key log
(``KeyLogs``) the first time they are seen, then pinned; any later
difference is reported as a ``KeyChange`` (an event, a field of
``SendReport`` and a ``KeyChangeWarning``) and then pinned, and users
compare safety numbers to know whether the keystore told the truth.
"""

from __future__ import annotations

import uuid
import warnings

from rossby.client.contacts import ContactLike, parse_contact
from rossby.client.errors import KeyLogError, UntrustedKeys
from rossby.client.keylogs import KeyLogs, LogMismatch
from rossby.client.models import ContactInfo, DeviceInfo, KeyChange, KeyChangeWarning, KeyLogView
from rossby.client.session import Session, now_ms
from rossby.client.state import Pin, PinnedDevice
from rossby.client.wire import pb_contact, profile_info
from rossby.contacts import NormalizedContact
from rossby.crypto import PublicDeviceKeys, SafetyNumber, safety_number, verify_key_signature
from rossby.v1 import rossby_pb2 as pb


def _keys(device: PinnedDevice) -> tuple[bytes, bytes]:
    return device.encryption_key, device.signing_key


class Directory:
    """Resolves boxes through the session, verifies and pins their keys."""

    def __init__(self, session: Session, keylogs: KeyLogs) -> None:
        self._session = session
        self._keylogs = keylogs

    # -- what the SDK offers ----------------------------------------------------

    async def resolve(self, contact: ContactLike) -> ContactInfo:
        info = await self.lookup(parse_contact(contact))
        self._session.save()
        return info

    async def devices(self) -> list[DeviceInfo]:
        info = await self.lookup_own()
        self._session.save()
        return list(info.devices)

    async def safety_number(self, contact: ContactLike) -> SafetyNumber:
        theirs = await self.lookup(parse_contact(contact))
        mine = await self.lookup_own()
        self._session.save()
        return safety_number(
            mine.box_id,
            [PublicDeviceKeys(d.encryption_key, d.signing_key) for d in mine.devices],
            theirs.box_id,
            [PublicDeviceKeys(d.encryption_key, d.signing_key) for d in theirs.devices],
        )

    async def key_log(self, target: ContactLike | uuid.UUID | None = None) -> KeyLogView:
        if target is None:
            info = await self.lookup_own()
            contact = None
        elif isinstance(target, uuid.UUID):
            info = await self.lookup(None, box_id=target)
            contact = None
        else:
            parsed = parse_contact(target)
            info = await self.lookup(parsed)
            contact = parsed.value
        self._session.save()
        return await self._keylogs.view(info.box_id, contact)

    def contact_of(self, box_id: uuid.UUID) -> str | None:
        """The contact we know a box by (sent to or resolved), if any."""
        state = self._session.state
        if box_id == self._session.box_id and state.own_contacts:
            return state.own_contacts[0].value
        contact = state.contact_of(box_id)
        return contact.value if contact else None

    def pinned_devices(self, box_id: uuid.UUID) -> tuple[DeviceInfo, ...]:
        pin = self._session.state.pins.get(box_id)
        return () if pin is None else self.device_infos(box_id, pin.devices)

    def signing_key(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bytes | None:
        """The pinned signing key of one device, if we know that device."""
        pin = self._session.state.pins.get(box_id)
        device = pin.devices.get(device_id) if pin else None
        return device.signing_key if device else None

    # -- lookups -----------------------------------------------------------------

    async def lookup_own(self) -> ContactInfo:
        session = self._session
        session.require_authorized()
        if not session.state.own_contacts:
            # A linked device learns the box's contacts later (sync message).
            return await self.lookup(None, box_id=session.box_id)
        return await self.lookup(session.state.own_contacts[0])

    async def lookup(
        self, contact: NormalizedContact | None, *, box_id: uuid.UUID | None = None
    ) -> ContactInfo:
        """Fetch, verify and pin a box's keys, by contact or by known box id."""
        state = self._session.state
        request = (
            pb.RequestKeyRequest(contact=pb_contact(contact))
            if contact is not None
            else pb.RequestKeyRequest(box_id=str(box_id))
        )
        reply = await self._session.call("RequestKey", request, pb.RequestKeyResponse)
        try:
            found = uuid.UUID(reply.box_id)
        except ValueError:
            raise UntrustedKeys("the keystore answered a malformed box id") from None
        if contact is None and found != box_id:
            raise UntrustedKeys(f"the keystore answered box {found} for {box_id}")
        devices = self._verified(reply)
        if contact in state.own_contacts and found != self._session.box_id:
            raise UntrustedKeys(f"the keystore says {contact.value} belongs to another box")
        try:
            await self._keylogs.check(found, reply, devices)
        except LogMismatch:
            # A change may have landed between the keystore's two reads: ask
            # once more before calling it a lie.
            reply = await self._session.call("RequestKey", request, pb.RequestKeyResponse)
            if reply.box_id != str(found):
                raise UntrustedKeys("the keystore changed its answer for this box") from None
            devices = self._verified(reply)
            try:
                await self._keylogs.check(found, reply, devices)
            except LogMismatch:
                raise KeyLogError(
                    f"the keystore lists other devices for box {found} than its key log "
                    "vouches for; not trusting any of them"
                ) from None
        previous = state.book.get(contact) if contact is not None else None
        change = self._pin(
            found, devices, contact, previous if previous not in (None, found) else None
        )
        if contact is not None:
            state.book[contact] = found
        label = contact.value if contact is not None else str(found)
        return ContactInfo(
            label,
            found,
            self.device_infos(found, devices),
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
        now = now_ms()
        session = self._session
        own = box_id == session.box_id
        old = session.state.pins.get(box_id)
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
            me = devices.get(session.device_id)
            if me is None:
                removed.add(session.device_id)
            elif _keys(me) != tuple(session.keyfile.keys.public()):
                rekeyed.add(session.device_id)
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
        session.state.pins[box_id] = Pin(
            box_id,
            dict(devices),
            old.pinned_at_ms if old else now,
            now if change else (old.changed_at_ms if old else None),
        )
        if change is not None:
            # Up past lookup, the part's method and the facade, to the caller.
            warnings.warn(KeyChangeWarning(change), stacklevel=5)
        return change

    def device_infos(
        self, box_id: uuid.UUID, devices: dict[uuid.UUID, PinnedDevice]
    ) -> tuple[DeviceInfo, ...]:
        own = box_id == self._session.box_id
        return tuple(
            DeviceInfo(
                d.device_id,
                d.name,
                d.encryption_key,
                d.signing_key,
                this_device=own and d.device_id == self._session.device_id,
            )
            for d in devices.values()
        )


__all__ = ["Directory"]
