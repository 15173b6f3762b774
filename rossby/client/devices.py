"""This device's membership of its box: register, link, revoke, rotate keys.

Every change to the box's device set is signed by a device of the box
(``sign_change``) so the key log can vouch for it; the device that makes a
change pins its result itself, without a warning. Linking runs a short
passphrase-authenticated exchange through the server (rossby.crypto.link):
the old device shows an offer, the new one joins it proving the passphrase,
the old one approves and then sends the box's contacts end to end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import Sequence

from rossby import errors
from rossby.client.bodies import SYNC_KIND, encode_sync
from rossby.client.directory import Directory
from rossby.client.errors import (
    AlreadyInitialized,
    ClientError,
    LinkError,
    LinkTimeout,
    UntrustedKeys,
)
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    Identity,
    LinkInvite,
    LinkRequest,
    RegistrationStarted,
)
from rossby.client.prekeys import Prekeys
from rossby.client.session import Session
from rossby.client.sessions import Sessions
from rossby.client.state import PendingLink, PinnedDevice
from rossby.client.wire import pb_contact
from rossby.crypto import RecipientDevice, SenderIdentity, seal_envelope, verify_key_signature
from rossby.crypto.keylog import ChangeKind, sign_change, verify_change
from rossby.crypto.link import (
    LinkCode,
    confirm_message,
    derive_link_keys,
    join_transcript,
    mac,
    mac_ok,
    new_passphrase,
    sign_complete,
)
from rossby.v1 import rossby_pb2 as pb

LINK_POLL = 1.0


class Devices:
    """Registration, linking, revocation and key rotation, through the session."""

    def __init__(
        self, session: Session, directory: Directory, prekeys: Prekeys, sessions: Sessions
    ) -> None:
        self._session = session
        self._directory = directory
        self._prekeys = prekeys
        self._sessions = sessions

    # -- registration ----------------------------------------------------------

    async def register(self) -> RegistrationStarted:
        s = self._session
        if s.authorized:
            raise AlreadyInitialized("this device is already verified")
        keys = s.keyfile.keys
        pub = keys.public()
        request = pb.RegisterRequest(
            device_id=str(s.device_id),
            contacts=[pb_contact(c) for c in s.state.own_contacts],
            keys=pb.DeviceKeys(
                encryption_key=pub.encryption_public,
                signing_key=pub.signing_public,
                key_signature=keys.key_signature(s.device_id),
            ),
            device_name=s.state.device_name,
        )
        reply = await s.call_public("Register", request, pb.RegisterResponse)
        return RegistrationStarted(
            tuple(c.value for c in s.state.own_contacts), reply.code_ttl_seconds
        )

    async def authorize(self, codes: Sequence[str]) -> Identity:
        s = self._session
        if s.authorized:
            raise AlreadyInitialized("this device is already verified")
        codes = [c.strip() for c in codes]
        keys = s.keyfile.keys
        request = pb.AuthorizeRequest(
            device_id=str(s.device_id),
            codes=codes,
            signature=keys.authorize_signature(s.device_id, codes),
        )
        reply = await s.call_public("Authorize", request, pb.AuthorizeResponse)
        try:
            box_id = uuid.UUID(reply.box_id)
        except ValueError:
            raise UntrustedKeys(
                "the server's credentials do not open with this device's key"
            ) from None
        await s.adopt_credentials(box_id, reply.sealed_credentials, reply.home_region)
        await self._directory.lookup_own()  # pin our own devices from the start
        s.save()
        await self._prekeys.publish()  # so others can start sessions with us
        return s.whoami()

    # -- linking: the old device -------------------------------------------------

    async def create_link_offer(self) -> LinkInvite:
        self._session.require_authorized()
        offer_id = uuid.uuid4()
        passphrase = new_passphrase()
        keys = await asyncio.to_thread(derive_link_keys, passphrase, offer_id)
        reply = await self._session.call(
            "CreateLinkOffer",
            pb.CreateLinkOfferRequest(offer_id=str(offer_id), verifier=keys.verifier),
            pb.CreateLinkOfferResponse,
        )
        code = LinkCode(self._session.state.server, offer_id, passphrase)
        return LinkInvite(
            offer_id, passphrase, code.uri, code.text, reply.expires_at_ms, keys.mac_key
        )

    async def wait_for_link(
        self, invite: LinkInvite, *, wait: float = 600.0, poll: float = LINK_POLL
    ) -> LinkRequest:
        deadline = time.monotonic() + wait
        while True:
            reply = await self._session.call(
                "GetLinkOffer",
                pb.GetLinkOfferRequest(offer_id=str(invite.offer_id)),
                pb.GetLinkOfferResponse,
            )
            if reply.state != pb.LINK_STATE_OPEN:
                break
            if time.monotonic() >= deadline:
                raise LinkTimeout("no device joined the link offer in time")
            await asyncio.sleep(poll)
        try:
            device_id = uuid.UUID(reply.device_id)
        except ValueError:
            raise LinkError("the server answered a malformed device id") from None
        k = reply.keys
        transcript = join_transcript(
            invite.offer_id,
            device_id,
            bytes(k.encryption_key),
            bytes(k.signing_key),
            bytes(k.key_signature),
            reply.device_name,
        )
        if not mac_ok(invite.mac_key, transcript, bytes(reply.mac)):
            raise LinkError(
                "the device that joined did not prove the passphrase; not approving it "
                "(create a new offer)"
            )
        if not verify_key_signature(k.signing_key, device_id, k.encryption_key, k.key_signature):
            raise LinkError("the joining device's keys do not verify")
        return LinkRequest(
            invite.offer_id,
            device_id,
            reply.device_name,
            bytes(k.encryption_key),
            bytes(k.signing_key),
            bytes(k.key_signature),
        )

    async def approve_link(self, invite: LinkInvite, request: LinkRequest) -> DeviceInfo:
        s = self._session
        s.require_authorized()
        box_id = s.box_id
        assert box_id is not None
        me = s.keyfile.keys
        signature = sign_change(
            me.signing_private,
            ChangeKind.LINK,
            box_id,
            request.device_id,
            request.encryption_key,
            request.signing_key,
        )
        confirm = mac(
            invite.mac_key,
            confirm_message(
                invite.offer_id, box_id, s.device_id, me.signing_public_bytes, request.device_id
            ),
        )
        await s.call(
            "ApproveLink",
            pb.ApproveLinkRequest(
                offer_id=str(invite.offer_id),
                device_id=str(request.device_id),
                signature=signature,
                confirm=confirm,
            ),
            pb.ApproveLinkResponse,
        )
        # We made this change: pin the device ourselves, no warning.
        pin = s.state.pins.get(box_id)
        device = PinnedDevice(
            request.device_id, request.device_name, request.encryption_key, request.signing_key
        )
        if pin is not None:
            pin.devices[request.device_id] = device
        own = await self._directory.lookup_own()
        await self._sync_contacts(own)
        s.save()
        return next(d for d in own.devices if d.device_id == request.device_id)

    async def _sync_contacts(self, own: ContactInfo) -> None:
        """Our contacts and address book, to our other devices (E2E).

        A v1 envelope (sealed to the devices' identity keys), not a ratchet
        one: the device just approved has not completed the link yet, so it
        has published no prekeys and no session can be started with it.
        """
        s = self._session
        box_id = s.box_id
        assert box_id is not None
        readers = [
            RecipientDevice(d.device_id, d.encryption_key)
            for d in own.devices
            if d.device_id != s.device_id
        ]
        if not readers:
            return
        mid = uuid.uuid4()
        envelope = seal_envelope(
            SenderIdentity(box_id, s.device_id, s.keyfile.keys.signing_private),
            box_id,
            readers,
            mid,
            SYNC_KIND,
            encode_sync(s.state),
        )
        await s.call(
            "Send",
            pb.SendRequest(
                messages=[
                    pb.OutgoingMessage(
                        recipient_box_id=str(box_id), message_id=str(mid), ciphertext=envelope
                    )
                ]
            ),
            pb.SendResponse,
        )

    # -- linking: the new device -------------------------------------------------

    async def join_link(self, code: LinkCode) -> None:
        """Join an offer with this (not yet verified) device's keys, proving
        the passphrase; ``complete_link`` then waits for the approval."""
        s = self._session
        keys = await asyncio.to_thread(derive_link_keys, code.passphrase, code.offer_id)
        pair = s.keyfile.keys
        pub = pair.public()
        key_signature = pair.key_signature(s.device_id)
        transcript = join_transcript(
            code.offer_id,
            s.device_id,
            pub.encryption_public,
            pub.signing_public,
            key_signature,
            s.state.device_name,
        )
        s.state.pending_link = PendingLink(code.offer_id, keys.mac_key)
        s.save()
        await s.call_public(
            "JoinLink",
            pb.JoinLinkRequest(
                offer_id=str(code.offer_id),
                device_id=str(s.device_id),
                keys=pb.DeviceKeys(
                    encryption_key=pub.encryption_public,
                    signing_key=pub.signing_public,
                    key_signature=key_signature,
                ),
                device_name=s.state.device_name,
                proof=mac(keys.verifier, transcript),
                mac=mac(keys.mac_key, transcript),
            ),
            pb.JoinLinkResponse,
        )

    async def complete_link(self, *, wait: float = 600.0, poll: float = LINK_POLL) -> ContactInfo:
        s = self._session
        pending = s.state.pending_link
        if pending is None:
            raise ClientError("this device has not joined a link offer")
        me = s.keyfile.keys
        request = pb.CompleteLinkRequest(
            offer_id=str(pending.offer_id),
            device_id=str(s.device_id),
            signature=sign_complete(me.signing_private, pending.offer_id, s.device_id),
        )
        deadline = time.monotonic() + wait
        while True:
            try:
                reply = await s.call_public("CompleteLink", request, pb.CompleteLinkResponse)
                break
            except errors.FailedPrecondition as exc:
                if exc.reason != "LINK_NOT_APPROVED" or time.monotonic() >= deadline:
                    if exc.reason == "LINK_NOT_APPROVED":
                        raise LinkTimeout("the link was not approved in time") from None
                    raise
            await asyncio.sleep(poll)
        try:
            box_id = uuid.UUID(reply.box_id)
            approver = uuid.UUID(reply.approver_device_id)
        except ValueError:
            raise LinkError("the server answered malformed ids") from None
        approver_key = bytes(reply.approver_signing_key)
        if not mac_ok(
            pending.mac_key,
            confirm_message(pending.offer_id, box_id, approver, approver_key, s.device_id),
            bytes(reply.confirm),
        ):
            raise LinkError("the approval did not come from the device that showed the passphrase")
        pub = me.public()
        if not verify_change(
            approver_key,
            ChangeKind.LINK,
            box_id,
            s.device_id,
            pub.encryption_public,
            pub.signing_public,
            bytes(reply.approval_signature),
        ):
            raise LinkError("the approving device did not sign this device's keys")
        await s.adopt_credentials(box_id, reply.sealed_credentials, reply.home_region)
        s.state.pending_link = None
        info = await self._directory.lookup_own()
        s.save()
        await self._prekeys.publish()
        approver_pin = s.state.pins[box_id].devices.get(approver)
        if approver_pin is None or approver_pin.signing_key != approver_key:
            # Not fatal for the link (the log verified the approval), but say so.
            warnings.warn(
                "the approving device has re-keyed or left the box since it approved",
                stacklevel=3,  # past the facade, to the caller
            )
        s.save()
        return info

    # -- revocation and rotation ---------------------------------------------------

    async def revoke(self, device_id: uuid.UUID) -> None:
        s = self._session
        own = await self._directory.lookup_own()
        target = next((d for d in own.devices if d.device_id == device_id), None)
        if target is None:
            raise ClientError(f"{device_id} is not an active device of your box")
        box_id = s.box_id
        assert box_id is not None
        signature = sign_change(
            s.keyfile.keys.signing_private,
            ChangeKind.REVOKE,
            box_id,
            device_id,
            target.encryption_key,
            target.signing_key,
        )
        await s.call(
            "RevokeDevice",
            pb.RevokeDeviceRequest(device_id=str(device_id), signature=signature),
            pb.RevokeDeviceResponse,
        )
        if device_id == s.device_id:
            s.save()
            return
        pin = s.state.pins.get(box_id)
        if pin is not None:
            pin.devices.pop(device_id, None)  # our own change: no warning
        await self._directory.lookup_own()
        self._sessions.prune(box_id)  # no session with a device that left the box
        s.save()

    async def rotate_keys(self) -> DeviceInfo:
        s = self._session
        s.require_authorized()
        box_id = s.box_id
        assert box_id is not None
        old = s.keyfile.keys
        new = await s.stage_keys()
        pub = new.public()
        await s.call(
            "RotateKeys",
            pb.RotateKeysRequest(
                keys=pb.DeviceKeys(
                    encryption_key=pub.encryption_public,
                    signing_key=pub.signing_public,
                    key_signature=new.key_signature(s.device_id),
                ),
                signature=sign_change(
                    old.signing_private,
                    ChangeKind.ROTATE,
                    box_id,
                    s.device_id,
                    pub.encryption_public,
                    pub.signing_public,
                ),
            ),
            pb.RotateKeysResponse,
        )
        await s.commit_keys(new)
        pin = s.state.pins.get(box_id)
        if pin is not None and s.device_id in pin.devices:
            d = pin.devices[s.device_id]
            pin.devices[s.device_id] = PinnedDevice(
                d.device_id, d.name, pub.encryption_public, pub.signing_public
            )
        own = await self._directory.lookup_own()
        # Our sessions were agreed with the old identity key, and the server
        # deleted the prekeys the old key signed: new sessions, new prekeys.
        self._sessions.reset_all()
        s.save()
        await self._prekeys.publish()
        return next(d for d in own.devices if d.device_id == s.device_id)


__all__ = ["LINK_POLL", "Devices"]
