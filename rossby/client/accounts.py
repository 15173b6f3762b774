"""The account half of ``RossbyClient`` (a mixin): device linking,
revocation, key rotation, the key log, contacts, profile and sender rules.

Key log checks (docs/client.md, "Key log"): every RequestKey answer carries
the head of the box's key log. The client keeps, per box, the chain state
it verified last (``ClientState.logs``). A head below it is a rollback, the
same seq with another hash a fork, and new entries must link to it, verify
(hash, signatures against the key set at each point) and replay to exactly
the devices the keystore lists. Any failure is a ``KeyLogError`` and none of
the box's keys are used; a key change the log does explain is reported as
a ``KeyChange`` as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from rossby import errors
from rossby.client.errors import (
    ClientError,
    KeyLogError,
    LinkError,
    LinkTimeout,
)
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    KeyLogRecord,
    KeyLogView,
    LinkInvite,
    LinkRequest,
    ProfileInfo,
)
from rossby.client.state import (
    KEYFILE,
    MAX_PREVIOUS_KEYS,
    ClientState,
    PendingLink,
    PinnedDevice,
)
from rossby.contacts import NormalizedContact
from rossby.crypto import (
    DeviceKeyfile,
    DeviceKeyPair,
    RecipientDevice,
    SenderIdentity,
    seal_envelope,
    verify_key_signature,
)
from rossby.crypto.keyfile import rewrite_cost, write_keyfile
from rossby.crypto.keylog import (
    ChainState,
    ChangeKind,
    InvalidKeyLog,
    LogEntry,
    replay,
    sign_change,
    verify_change,
)
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

if TYPE_CHECKING:
    from rossby.client.hawk import HawkSigner
    from rossby.client.sdk import ContactLike

Resp = TypeVar("Resp", bound=Message)

SYNC_KIND = "sync.contacts"
KEY_LOG_PAGE = 500
LINK_POLL = 1.0
NEXT_KEYFILE = "device.key.next"

_KINDS = {int(k): k for k in ChangeKind}
_ACCEPT_PB = {
    "anyone": pb.ACCEPT_FROM_ANYONE,
    "contacts-only": pb.ACCEPT_FROM_CONTACTS_ONLY,
}
_ACCEPT_NAME = {v: k for k, v in _ACCEPT_PB.items()}
_RULE_PB = {"blocked": pb.SENDER_RULE_BLOCKED, "accepted": pb.SENDER_RULE_ACCEPTED}


class LogMismatch(Exception):
    """The verified log and the keystore's device list disagree (maybe a
    change landed between the two reads; the caller asks once more)."""


def profile_info(p: pb.Profile) -> ProfileInfo:
    return ProfileInfo(
        display_name=p.display_name,
        description=p.description,
        avatar_ref=p.avatar_ref,
        discoverable=p.discoverable,
        accept_from=_ACCEPT_NAME.get(p.accept_from, "anyone"),
    )


def log_entry(box_id: uuid.UUID, e: pb.KeyLogEntry) -> LogEntry:
    try:
        kind = _KINDS[int(e.kind)]
        return LogEntry(
            box_id=box_id,
            seq=int(e.seq),
            prev_hash=bytes(e.prev_hash),
            timestamp_ms=int(e.timestamp_ms),
            kind=kind,
            device_id=uuid.UUID(e.device_id),
            actor_device_id=uuid.UUID(e.actor_device_id),
            encryption_key=bytes(e.encryption_key),
            signing_key=bytes(e.signing_key),
            signature=bytes(e.signature),
            hash=bytes(e.hash),
        )
    except (KeyError, ValueError):
        raise KeyLogError(f"key log entry {e.seq} of box {box_id} is malformed") from None


def record(e: LogEntry) -> KeyLogRecord:
    return KeyLogRecord(
        seq=e.seq,
        kind=e.kind.label,
        device_id=e.device_id,
        actor_device_id=e.actor_device_id,
        timestamp_ms=e.timestamp_ms,
        encryption_key=e.encryption_key,
        signing_key=e.signing_key,
        hash=e.computed_hash(),
    )


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


class AccountsMixin:
    """Mixed into ``RossbyClient``; see the module doc."""

    if TYPE_CHECKING:
        home: Path
        _passphrase: str
        _scrypt_n: int
        _keyfile: DeviceKeyfile
        _state: ClientState
        _state_key: bytes

        @property
        def box_id(self) -> uuid.UUID | None: ...

        @property
        def device_id(self) -> uuid.UUID: ...

        async def _call(self, method: str, request: Message, response_type: type[Resp]) -> Resp: ...

        async def _public(
            self, method: str, request: Message, response_type: type[Resp]
        ) -> Resp: ...

        async def _resolve(
            self, contact: NormalizedContact | None, *, box_id: uuid.UUID | None = None
        ) -> ContactInfo: ...

        async def _resolve_own(self) -> ContactInfo: ...

        def _save(self) -> None: ...

        def _make_signer(self) -> HawkSigner | None: ...

        async def _adopt_credentials(
            self, box_id: uuid.UUID, sealed: bytes, home_region: str
        ) -> None: ...

        def _require_authorized(self) -> HawkSigner: ...

        def _device_infos(
            self, box_id: uuid.UUID, devices: dict[uuid.UUID, PinnedDevice]
        ) -> tuple[DeviceInfo, ...]: ...

        _signer: HawkSigner | None

    # -- key log ---------------------------------------------------------------

    async def _log_entries(self, box_id: uuid.UUID, after: int, through: int) -> list[LogEntry]:
        """Entries (after, through], page by page."""
        out: list[LogEntry] = []
        while after < through:
            page = await self._call(
                "KeyLog",
                pb.KeyLogRequest(box_id=str(box_id), after_seq=after, limit=KEY_LOG_PAGE),
                pb.KeyLogResponse,
            )
            fresh = [log_entry(box_id, e) for e in page.entries if after < e.seq <= through]
            if not fresh:
                break
            out.extend(fresh)
            after = fresh[-1].seq
        if after != through:
            raise KeyLogError(f"the key log of box {box_id} ends before its announced head")
        return out

    async def _check_log(
        self,
        box_id: uuid.UUID,
        reply: pb.RequestKeyResponse,
        devices: dict[uuid.UUID, PinnedDevice],
    ) -> None:
        """Verify the box's key log against the last one seen and the device
        list; pin it. ``KeyLogError`` for a broken chain, ``LogMismatch``
        when the log and the list disagree."""
        seq, head = int(reply.key_log.seq), bytes(reply.key_log.hash)
        pinned = self._state.logs.get(box_id)
        if pinned is not None:
            if seq < pinned.seq:
                raise KeyLogError(
                    f"the key log of box {box_id} was rolled back "
                    f"(now entry {seq}, this device saw entry {pinned.seq})"
                )
            if seq == pinned.seq and head != pinned.head:
                raise KeyLogError(
                    f"the key log of box {box_id} forked at entry {seq} "
                    "(same position, different history)"
                )
        if seq == 0:
            return  # a box from before key logs: trust on first use only
        if pinned is not None and seq == pinned.seq:
            state = pinned
        else:
            base = pinned or ChainState(box_id)
            entries = await self._log_entries(box_id, base.seq, seq)
            try:
                state = replay(base, entries)
            except InvalidKeyLog as exc:
                raise KeyLogError(f"box {box_id}: {exc.reason}") from None
            if state.head != head:
                raise KeyLogError(f"the key log of box {box_id} does not match its head")
        listed = {d: (p.encryption_key, p.signing_key) for d, p in devices.items()}
        if listed != state.devices:
            raise LogMismatch
        self._state.logs[box_id] = state

    async def key_log(self, target: ContactLike | uuid.UUID | None = None) -> KeyLogView:
        """A box's whole key log, verified from the first entry, checked to
        extend what this device saw before (``None``: our own box)."""
        from rossby.client.sdk import parse_contact

        if target is None:
            info = await self._resolve_own()
            contact = None
        elif isinstance(target, uuid.UUID):
            info = await self._resolve(None, box_id=target)
            contact = None
        else:
            parsed = parse_contact(target)
            info = await self._resolve(parsed)
            contact = parsed.value
        self._save()
        pinned = self._state.logs.get(info.box_id)
        if pinned is None:
            return KeyLogView(info.box_id, contact, ())
        entries = await self._log_entries(info.box_id, 0, pinned.seq)
        try:
            full = replay(ChainState(info.box_id), entries)
        except InvalidKeyLog as exc:
            raise KeyLogError(f"box {info.box_id}: {exc.reason}") from None
        if full.head != pinned.head:
            raise KeyLogError(f"the key log of box {info.box_id} forked from the one seen before")
        return KeyLogView(info.box_id, contact, tuple(record(e) for e in entries))

    # -- linking: the old device -------------------------------------------------

    async def create_link_offer(self) -> LinkInvite:
        """Open a link offer; show the invite's ``uri`` (QR) or ``text``."""
        self._require_authorized()
        offer_id = uuid.uuid4()
        passphrase = new_passphrase()
        keys = await asyncio.to_thread(derive_link_keys, passphrase, offer_id)
        reply = await self._call(
            "CreateLinkOffer",
            pb.CreateLinkOfferRequest(offer_id=str(offer_id), verifier=keys.verifier),
            pb.CreateLinkOfferResponse,
        )
        code = LinkCode(self._state.server, offer_id, passphrase)
        return LinkInvite(
            offer_id, passphrase, code.uri, code.text, reply.expires_at_ms, keys.mac_key
        )

    async def wait_for_link(
        self, invite: LinkInvite, *, wait: float = 600.0, poll: float = LINK_POLL
    ) -> LinkRequest:
        """Wait (``wait`` s at most) until a device joins the offer; check it
        knew the passphrase."""
        deadline = time.monotonic() + wait
        while True:
            reply = await self._call(
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
        """Sign the new device's keys into the box, then send it our contacts
        and address book through the end-to-end channel."""
        self._require_authorized()
        box_id = self.box_id
        assert box_id is not None
        me = self._keyfile.keys
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
                invite.offer_id, box_id, self.device_id, me.signing_public_bytes, request.device_id
            ),
        )
        await self._call(
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
        pin = self._state.pins.get(box_id)
        device = PinnedDevice(
            request.device_id, request.device_name, request.encryption_key, request.signing_key
        )
        if pin is not None:
            pin.devices[request.device_id] = device
        own = await self._resolve_own()
        await self._sync_contacts(own)
        self._save()
        return next(d for d in own.devices if d.device_id == request.device_id)

    async def _sync_contacts(self, own: ContactInfo) -> None:
        """Our contacts and address book, to our other devices (E2E)."""
        box_id = self.box_id
        assert box_id is not None
        readers = [
            RecipientDevice(d.device_id, d.encryption_key)
            for d in own.devices
            if d.device_id != self.device_id
        ]
        if not readers:
            return
        doc = {
            "own_contacts": [f"{c.kind.value}:{c.value}" for c in self._state.own_contacts],
            "book": {f"{c.kind.value}:{c.value}": str(b) for c, b in self._state.book.items()},
        }
        mid = uuid.uuid4()
        envelope = seal_envelope(
            SenderIdentity(box_id, self.device_id, self._keyfile.keys.signing_private),
            box_id,
            readers,
            mid,
            SYNC_KIND,
            _body(doc),
        )
        await self._call(
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

    def _apply_sync(self, body: bytes) -> None:
        """Merge a contacts sync from another device of our box."""
        from rossby.client.state import parse_contact_key

        try:
            doc = json.loads(body.decode("utf-8"))
            own = [parse_contact_key(c) for c in doc.get("own_contacts", [])]
            book = {parse_contact_key(c): uuid.UUID(b) for c, b in doc.get("book", {}).items()}
        except (ValueError, AttributeError, TypeError, errors.InvalidArgument):
            return
        for contact in own:
            if contact not in self._state.own_contacts:
                self._state.own_contacts.append(contact)
        for contact, box in book.items():
            self._state.book.setdefault(contact, box)

    # -- linking: the new device -------------------------------------------------

    async def _join_link(self, code: LinkCode) -> None:
        keys = await asyncio.to_thread(derive_link_keys, code.passphrase, code.offer_id)
        pair = self._keyfile.keys
        pub = pair.public()
        key_signature = pair.key_signature(self.device_id)
        transcript = join_transcript(
            code.offer_id,
            self.device_id,
            pub.encryption_public,
            pub.signing_public,
            key_signature,
            self._state.device_name,
        )
        self._state.pending_link = PendingLink(code.offer_id, keys.mac_key)
        self._save()
        await self._public(
            "JoinLink",
            pb.JoinLinkRequest(
                offer_id=str(code.offer_id),
                device_id=str(self.device_id),
                keys=pb.DeviceKeys(
                    encryption_key=pub.encryption_public,
                    signing_key=pub.signing_public,
                    key_signature=key_signature,
                ),
                device_name=self._state.device_name,
                proof=mac(keys.verifier, transcript),
                mac=mac(keys.mac_key, transcript),
            ),
            pb.JoinLinkResponse,
        )

    async def complete_link(self, *, wait: float = 600.0, poll: float = LINK_POLL) -> ContactInfo:
        """Wait (``wait`` s at most) for the old device's approval, check it,
        store the credentials."""
        pending = self._state.pending_link
        if pending is None:
            raise ClientError("this device has not joined a link offer")
        me = self._keyfile.keys
        request = pb.CompleteLinkRequest(
            offer_id=str(pending.offer_id),
            device_id=str(self.device_id),
            signature=sign_complete(me.signing_private, pending.offer_id, self.device_id),
        )
        deadline = time.monotonic() + wait
        while True:
            try:
                reply = await self._public("CompleteLink", request, pb.CompleteLinkResponse)
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
            confirm_message(pending.offer_id, box_id, approver, approver_key, self.device_id),
            bytes(reply.confirm),
        ):
            raise LinkError("the approval did not come from the device that showed the passphrase")
        pub = me.public()
        if not verify_change(
            approver_key,
            ChangeKind.LINK,
            box_id,
            self.device_id,
            pub.encryption_public,
            pub.signing_public,
            bytes(reply.approval_signature),
        ):
            raise LinkError("the approving device did not sign this device's keys")
        await self._adopt_credentials(box_id, reply.sealed_credentials, reply.home_region)
        self._state.pending_link = None
        info = await self._resolve_own()
        approver_pin = self._state.pins[box_id].devices.get(approver)
        if approver_pin is None or approver_pin.signing_key != approver_key:
            # Not fatal for the link (the log verified the approval), but say so.
            warnings.warn(
                "the approving device has re-keyed or left the box since it approved",
                stacklevel=2,
            )
        self._save()
        return info

    # -- revocation and rotation ---------------------------------------------------

    async def revoke(self, device_id: uuid.UUID) -> None:
        """Revoke a device of our box (this one too: it then stops working)."""
        own = await self._resolve_own()
        target = next((d for d in own.devices if d.device_id == device_id), None)
        if target is None:
            raise ClientError(f"{device_id} is not an active device of your box")
        box_id = self.box_id
        assert box_id is not None
        signature = sign_change(
            self._keyfile.keys.signing_private,
            ChangeKind.REVOKE,
            box_id,
            device_id,
            target.encryption_key,
            target.signing_key,
        )
        await self._call(
            "RevokeDevice",
            pb.RevokeDeviceRequest(device_id=str(device_id), signature=signature),
            pb.RevokeDeviceResponse,
        )
        if device_id == self.device_id:
            self._save()
            return
        pin = self._state.pins.get(box_id)
        if pin is not None:
            pin.devices.pop(device_id, None)  # our own change: no warning
        await self._resolve_own()
        self._save()

    async def rotate_keys(self) -> DeviceInfo:
        """Replace this device's keys; the new ones are signed by the old key.

        Crash-safe: the new keys are written to ``device.key.next`` first, a
        retry resumes with them, and the switch renames that file over
        ``device.key``. The old X25519 key is kept (``MAX_PREVIOUS_KEYS``) so
        messages sealed to it before senders noticed still open.
        """
        self._require_authorized()
        box_id = self.box_id
        assert box_id is not None
        nxt = self.home / NEXT_KEYFILE
        old = self._keyfile.keys
        pending = await asyncio.to_thread(_read_next, nxt, self._passphrase)
        new = pending.keys if pending is not None else DeviceKeyPair.generate()
        if pending is None:
            staged = replace(self._keyfile, keys=new)
            path = self.home / KEYFILE
            await asyncio.to_thread(
                write_keyfile,
                nxt,
                staged,
                self._passphrase,
                scrypt_n=rewrite_cost(path.read_bytes(), self._scrypt_n),
            )
        pub = new.public()
        await self._call(
            "RotateKeys",
            pb.RotateKeysRequest(
                keys=pb.DeviceKeys(
                    encryption_key=pub.encryption_public,
                    signing_key=pub.signing_public,
                    key_signature=new.key_signature(self.device_id),
                ),
                signature=sign_change(
                    old.signing_private,
                    ChangeKind.ROTATE,
                    box_id,
                    self.device_id,
                    pub.encryption_public,
                    pub.signing_public,
                ),
            ),
            pb.RotateKeysResponse,
        )
        self._switch_keys(new)
        await asyncio.to_thread(os.replace, nxt, self.home / KEYFILE)
        pin = self._state.pins.get(box_id)
        if pin is not None and self.device_id in pin.devices:
            d = pin.devices[self.device_id]
            pin.devices[self.device_id] = PinnedDevice(
                d.device_id, d.name, pub.encryption_public, pub.signing_public
            )
        own = await self._resolve_own()
        self._save()
        return next(d for d in own.devices if d.device_id == self.device_id)

    def _switch_keys(self, new: DeviceKeyPair) -> None:
        """Adopt ``new`` in memory and re-encrypt the state under it."""
        from rossby.client.state import state_key

        old = self._keyfile.keys.encryption_private_bytes()
        previous = [old, *self._state.previous_keys]
        self._state.previous_keys = previous[:MAX_PREVIOUS_KEYS]
        self._keyfile = replace(self._keyfile, keys=new)
        self._state_key = state_key(new, self.device_id)
        self._save()

    # -- contacts ----------------------------------------------------------------

    async def add_contact(self, contact: ContactLike) -> int:
        """Ask the server to send a code to a new contact; answers its TTL (s)."""
        from rossby.client.sdk import _pb_contact, parse_contact

        reply = await self._call(
            "AddContact",
            pb.AddContactRequest(contact=_pb_contact(parse_contact(contact))),
            pb.AddContactResponse,
        )
        return int(reply.code_ttl_seconds)

    async def verify_contact(self, contact: ContactLike, code: str) -> int:
        """Prove the code; the contact now finds this box. Answers the count."""
        from rossby.client.sdk import _pb_contact, parse_contact

        parsed = parse_contact(contact)
        reply = await self._call(
            "VerifyContact",
            pb.VerifyContactRequest(contact=_pb_contact(parsed), code=code.strip()),
            pb.VerifyContactResponse,
        )
        if parsed not in self._state.own_contacts:
            self._state.own_contacts.append(parsed)
        self._save()
        return int(reply.contact_count)

    async def remove_contact(self, contact: ContactLike) -> int:
        """Release a contact of this box (not the last one)."""
        from rossby.client.sdk import _pb_contact, parse_contact

        parsed = parse_contact(contact)
        reply = await self._call(
            "RemoveContact",
            pb.RemoveContactRequest(contact=_pb_contact(parsed)),
            pb.RemoveContactResponse,
        )
        if parsed in self._state.own_contacts:
            self._state.own_contacts.remove(parsed)
        self._save()
        return int(reply.contact_count)

    # -- profile -----------------------------------------------------------------

    async def profile(self) -> ProfileInfo:
        """This box's profile."""
        reply = await self._call("GetProfile", pb.GetProfileRequest(), pb.GetProfileResponse)
        info = profile_info(reply.profile)
        self._state.accept_from = info.accept_from
        self._save()
        return info

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
        request = pb.UpdateProfileRequest()
        if display_name is not None:
            request.display_name = display_name
        if description is not None:
            request.description = description
        if avatar_ref is not None:
            request.avatar_ref = avatar_ref
        if discoverable is not None:
            request.discoverable = discoverable
        if accept_from is not None:
            if accept_from not in _ACCEPT_PB:
                raise ClientError("accept_from is 'anyone' or 'contacts-only'")
            request.accept_from = _ACCEPT_PB[accept_from]
        reply = await self._call("UpdateProfile", request, pb.UpdateProfileResponse)
        info = profile_info(reply.profile)
        self._state.accept_from = info.accept_from
        self._save()
        return info

    # -- sender rules ------------------------------------------------------------

    async def _box_of(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """A box id given as such, or the box our address book (else the
        keystore) has for a contact."""
        from rossby.client.sdk import parse_contact

        if isinstance(target, uuid.UUID):
            return target
        if isinstance(target, str):
            try:
                return uuid.UUID(target)
            except ValueError:
                pass
        contact = parse_contact(target)
        known = self._state.book.get(contact)
        if known is not None:
            return known
        return (await self._resolve(contact)).box_id

    async def _rule(self, target: ContactLike | uuid.UUID, rule: str | None) -> uuid.UUID:
        box_id = await self._box_of(target)
        await self._call(
            "SetSenderRule",
            pb.SetSenderRuleRequest(
                box_id=str(box_id),
                rule=_RULE_PB[rule] if rule is not None else pb.SENDER_RULE_NONE,
            ),
            pb.SetSenderRuleResponse,
        )
        if rule is None:
            self._state.rules.pop(box_id, None)
        else:
            self._state.rules[box_id] = rule
        self._save()
        return box_id

    async def block(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """Block a box (a contact or a box id): it gets NOT_FOUND for us."""
        return await self._rule(target, "blocked")

    async def unblock(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        return await self._rule(target, None)

    async def accept(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """Let a box reach us under accept_from "contacts-only"."""
        return await self._rule(target, "accepted")

    async def unaccept(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        return await self._rule(target, None)

    async def _listed(self, rule: str) -> list[uuid.UUID]:
        reply = await self._call(
            "ListSenderRules",
            pb.ListSenderRulesRequest(rule=_RULE_PB[rule]),
            pb.ListSenderRulesResponse,
        )
        boxes = [uuid.UUID(b) for b in reply.box_ids]
        for b, r in list(self._state.rules.items()):
            if r == rule and b not in boxes:
                del self._state.rules[b]
        for b in boxes:
            self._state.rules[b] = rule
        self._save()
        return boxes

    async def blocked(self) -> list[uuid.UUID]:
        return await self._listed("blocked")

    async def accepted(self) -> list[uuid.UUID]:
        return await self._listed("accepted")

    async def _accept_recipients(self, boxes: Sequence[uuid.UUID]) -> None:
        """Under contacts-only, the boxes we write to must be able to answer
        (and to fetch our keys to verify us): accept them, unless we hold a
        rule about them already."""
        if self._state.accept_from != "contacts-only":
            return
        for box in boxes:
            if box != self.box_id and box not in self._state.rules:
                await self._rule(box, "accepted")


def _read_next(path: Path, passphrase: str) -> DeviceKeyfile | None:
    from rossby.crypto import read_keyfile

    try:
        return read_keyfile(path, passphrase)
    except FileNotFoundError:
        return None


__all__ = ["SYNC_KIND", "AccountsMixin", "LogMismatch", "profile_info"]
