"""Account RPCs: contacts, profile, sender rules, key log, revocation and
key rotation; plus the visibility policy RequestKey and Send apply.

Visibility (docs/api.md, "Profiles and sender rules"): a box is NOT_FOUND
to a caller when it does not exist, when it blocked the caller, when it
accepts contacts only and has not accepted the caller, or (looked up by
contact only) when it is not discoverable. Every case answers the same
status, reason and message, so none can be told from another. A box
always sees itself.

Device linking is in ``rossby.server.linking``; the key log's append
discipline in ``rossby.server.keylog``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from rossby import errors
from rossby.config import EXPIRED_GRACE
from rossby.contacts import ContactHasher, NormalizedContact, normalize
from rossby.crypto.keylog import ChangeKind, verify_change
from rossby.logging import get_logger
from rossby.server import validate
from rossby.server.authcache import AuthCache, RecipientPolicy
from rossby.server.caller import Caller
from rossby.server.keylog import KeyLog, active_keys, head_pb, to_pb
from rossby.server.notify import Notifier
from rossby.server.registration import ContactCodeLimit, new_code
from rossby.server.visibility import ANYONE, CONTACTS_ONLY, accepts, sees
from rossby.store import Device, DeviceState, Profile, Store
from rossby.store.accounts import AccountStore, ContactChallenge, KeyLogEntry, SenderRule
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

MAX_DISPLAY_NAME = 64
MAX_DESCRIPTION = 280
MAX_AVATAR_REF = 512
#: Contacts one box may hold.
MAX_BOX_CONTACTS = 10
KEY_LOG_PAGE = 500
MAX_SEQ = 2**63 - 1

_ACCEPT_TO_PB = {
    ANYONE: rossby_pb2.ACCEPT_FROM_ANYONE,
    CONTACTS_ONLY: rossby_pb2.ACCEPT_FROM_CONTACTS_ONLY,
}
_ACCEPT_FROM_PB = {v: k for k, v in _ACCEPT_TO_PB.items()}
_RULE_FROM_PB = {
    rossby_pb2.SENDER_RULE_BLOCKED: SenderRule.BLOCKED,
    rossby_pb2.SENDER_RULE_ACCEPTED: SenderRule.ACCEPTED,
}


def hidden() -> errors.NotFound:
    """The one answer for unknown, blocked, hidden and not-accepting boxes."""
    return errors.NotFound("no such user", reason="NOT_FOUND")


def profile_pb(profile: Profile) -> rossby_pb2.Profile:
    return rossby_pb2.Profile(
        display_name=profile.display_name,
        description=profile.description,
        avatar_ref=profile.avatar_ref,
        discoverable=profile.discoverable,
        accept_from=_ACCEPT_TO_PB.get(profile.accept_from, rossby_pb2.ACCEPT_FROM_ANYONE),
    )


def _text(field: str, value: str, limit: int, *, newlines: bool = False) -> str:
    value = unicodedata.normalize("NFC", value)
    bad = any(unicodedata.category(c) == "Cc" and not (newlines and c == "\n") for c in value)
    if len(value) > limit or bad:
        raise errors.InvalidArgument(
            f"{field}: at most {limit} characters, no control characters",
            reason="PROFILE_INVALID",
            metadata={"field": field, "max": str(limit)},
        )
    return value


class Accounts:
    def __init__(
        self,
        store: Store,
        accounts: AccountStore,
        notifier: Notifier,
        hasher: ContactHasher,
        code_key: bytes,
        *,
        code_ttl: int,
        code_attempts: int,
        resend_interval: float,
        default_phone_region: str,
        clock: Callable[[], float],
        contact_codes: ContactCodeLimit,
        auth_cache: AuthCache,
        on_device_changed: Callable[[uuid.UUID, uuid.UUID], None],
        void_prekeys: Callable[[uuid.UUID, uuid.UUID], Awaitable[None]],
    ) -> None:
        self.store = store
        self.accounts = accounts
        #: Told of every change this process makes to what it caches.
        self.auth_cache = auth_cache
        #: Told (box id, device id) after the cache when this process revokes
        #: or re-keys a device, so state outside the caches (open streams,
        #: ``Realtime.device_changed``) follows at once.
        self.on_device_changed = on_device_changed
        #: Deletes a revoked or re-keyed device's prekeys
        #: (``PrekeyStatus.void``): they were signed by its old key.
        self.void_prekeys = void_prekeys
        self.notifier = notifier
        self.hasher = hasher
        self.code_key = code_key
        self.code_ttl = code_ttl
        self.code_attempts = code_attempts
        self.resend_interval = resend_interval
        self.default_phone_region = default_phone_region
        self.clock = clock
        self.contact_codes = contact_codes
        self.key_log = KeyLog(accounts, clock)

    def _device_changed(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """A device was revoked or re-keyed here: the caches first, then open streams."""
        self.auth_cache.device_changed(box_id, device_id)
        self.on_device_changed(box_id, device_id)

    # -- visibility (RequestKey, Send, KeyLog) -----------------------------

    async def visible(
        self,
        target: uuid.UUID,
        caller: uuid.UUID,
        profile: Profile | None,
        *,
        by_contact: bool,
    ) -> bool:
        """May ``caller`` see ``target`` (look it up, fetch its keys, send)?"""
        if target == caller or profile is None:
            return sees(target, caller, profile, None, by_contact=by_contact)
        rule = await self.accounts.get_sender_rule(target, caller)
        return sees(target, caller, profile, rule, by_contact=by_contact)

    async def lookup_reads(
        self, target: uuid.UUID, caller: uuid.UUID
    ) -> tuple[SenderRule | None, KeyLogEntry | None]:
        """RequestKey's account reads, always both: the rule ``target``
        holds about ``caller`` and ``target``'s key-log head."""
        rule, head = await asyncio.gather(
            self.accounts.get_sender_rule(target, caller), self.accounts.key_log_head(target)
        )
        return rule, head

    async def deliverable(self, recipient: uuid.UUID, sender: uuid.UUID) -> bool:
        """Send's check: the box exists and accepts this sender.

        The box's profile and whether it holds any rule are read side by
        side and cached per box (``rossby.server.authcache``); only a box
        that holds rules costs a read per sender, and the Send path caches
        that answer per pair.
        """
        policy = await self.auth_cache.recipients.get(
            recipient, lambda: self._policy(recipient), lambda p: p.profile is not None
        )
        if policy.profile is None:
            return False
        if recipient == sender:
            return True
        if not policy.has_rules:
            return accepts(policy.profile, None)
        return accepts(policy.profile, await self.accounts.get_sender_rule(recipient, sender))

    async def _policy(self, box_id: uuid.UUID) -> RecipientPolicy:
        profile, has_rules = await asyncio.gather(
            self.store.get_profile(box_id), self.accounts.has_sender_rules(box_id)
        )
        return RecipientPolicy(profile, has_rules)

    @staticmethod
    def annotate(
        reply: rossby_pb2.RequestKeyResponse, profile: Profile | None, head: KeyLogEntry | None
    ) -> None:
        """Add the profile and the key-log head to a RequestKey answer."""
        if profile is not None:
            reply.profile.CopyFrom(profile_pb(profile))
        reply.key_log.CopyFrom(head_pb(head))

    # -- registration hook ---------------------------------------------------

    async def box_created(self, device: Device, contact_hashes: Sequence[bytes]) -> None:
        """Authorize created a box: its genesis key-log entry and contacts.

        The entry's signature is the device's own key_signature: nobody
        else exists yet to vouch for it.
        """
        await self.key_log.append(
            device.box_id,
            ChangeKind.REGISTER,
            device.device_id,
            device.device_id,
            device.keys.encryption_key,
            device.keys.signing_key,
            device.keys.key_signature,
        )
        await asyncio.gather(
            *(self.accounts.add_box_contact(device.box_id, h) for h in contact_hashes)
        )

    # -- key log ---------------------------------------------------------------

    async def get_key_log(
        self, request: rossby_pb2.KeyLogRequest, caller: Caller
    ) -> rossby_pb2.KeyLogResponse:
        box_id = validate.parse_id("box_id", request.box_id)
        limit = request.limit or KEY_LOG_PAGE
        validate.count("limit", limit, 1, KEY_LOG_PAGE)
        profile = await self.store.get_profile(box_id)
        if not await self.visible(box_id, caller.box_id, profile, by_contact=False):
            raise hidden()
        entries, head = await asyncio.gather(
            # Store integers are signed 64-bit; no log gets anywhere near.
            self.accounts.key_log(box_id, after=min(request.after_seq, MAX_SEQ), limit=limit),
            self.accounts.key_log_head(box_id),
        )
        return rossby_pb2.KeyLogResponse(entries=[to_pb(e) for e in entries], head=head_pb(head))

    # -- revocation and rotation ---------------------------------------------------

    async def _me(self, caller: Caller) -> Device:
        me = await self.store.get_device(caller.box_id, caller.device_id)
        if me is None or me.state is not DeviceState.ACTIVE:  # revoked mid-call
            raise errors.Unauthenticated("this device was revoked", reason="HAWK_UNKNOWN_ID")
        return me

    async def revoke_device(
        self, request: rossby_pb2.RevokeDeviceRequest, caller: Caller
    ) -> rossby_pb2.RevokeDeviceResponse:
        target_id = validate.parse_id("device_id", request.device_id)
        box_id = caller.box_id
        target, me, devices = await asyncio.gather(
            self.store.get_device(box_id, target_id),
            self._me(caller),
            self.store.list_devices(box_id),
        )
        if target is None or target.state is not DeviceState.ACTIVE:
            raise errors.NotFound("no such device in this box", reason="DEVICE_NOT_FOUND")
        keys = target.keys
        if not verify_change(
            me.keys.signing_key,
            ChangeKind.REVOKE,
            box_id,
            target_id,
            keys.encryption_key,
            keys.signing_key,
            bytes(request.signature),
        ):
            raise errors.PermissionDenied(
                "the signature does not verify with this device's key", reason="BAD_SIGNATURE"
            )
        last = errors.FailedPrecondition(
            "a box keeps at least one device; link another one first", reason="LAST_DEVICE"
        )
        if [d.device_id for d in devices] == [target_id]:
            raise last

        def leaves_one(entries: Sequence[KeyLogEntry]) -> None:
            # Checked against the log the revocation extends, so two devices
            # revoking each other at once cannot leave the box empty.
            if entries:
                active = active_keys(entries)
                if target_id not in active:
                    raise errors.NotFound("no such device in this box", reason="DEVICE_NOT_FOUND")
                if len(active) <= 1:
                    raise last

        entry = await self.key_log.append(
            box_id,
            ChangeKind.REVOKE,
            target_id,
            caller.device_id,
            keys.encryption_key,
            keys.signing_key,
            bytes(request.signature),
            check=leaves_one,
        )
        await self.retire(box_id, target_id)
        log.info("device_revoked", self_revoked=target_id == caller.device_id)
        return rossby_pb2.RevokeDeviceResponse(entry=to_pb(entry))

    async def retire(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """What follows a removal's key-log entry, revoked or idle: the row,
        the caches and streams, the prekeys (``Store.revoke_device`` removes
        the push target with the row). Every step is idempotent, so a retry completes a cut one."""
        await self.store.revoke_device(box_id, device_id)
        self._device_changed(box_id, device_id)
        await self.void_prekeys(box_id, device_id)

    async def rotate_keys(
        self, request: rossby_pb2.RotateKeysRequest, caller: Caller
    ) -> rossby_pb2.RotateKeysResponse:
        keys = validate.device_keys(caller.device_id, request.keys)
        me = await self._me(caller)
        if (me.keys.encryption_key, me.keys.signing_key) == (
            keys.encryption_key,
            keys.signing_key,
        ):
            # A retry after the rotation landed: the old key no longer
            # verifies, but nothing would change anyway.
            entries = await self.key_log.full(caller.box_id)
            mine = [e for e in entries if e.device_id == caller.device_id]
            if not mine:
                raise errors.FailedPrecondition(
                    "these are already the device's keys", reason="KEYS_UNCHANGED"
                )
            await self.void_prekeys(caller.box_id, caller.device_id)  # if the first try failed
            return rossby_pb2.RotateKeysResponse(entry=to_pb(mine[-1]))
        if not verify_change(
            me.keys.signing_key,
            ChangeKind.ROTATE,
            caller.box_id,
            caller.device_id,
            keys.encryption_key,
            keys.signing_key,
            bytes(request.signature),
        ):
            raise errors.PermissionDenied(
                "the new keys must be signed by the current signing key", reason="BAD_SIGNATURE"
            )
        entry = await self.key_log.append(
            caller.box_id,
            ChangeKind.ROTATE,
            caller.device_id,
            caller.device_id,
            keys.encryption_key,
            keys.signing_key,
            bytes(request.signature),
        )
        await self.store.rotate_device_keys(caller.box_id, caller.device_id, keys)
        self._device_changed(caller.box_id, caller.device_id)
        # After the key change, never before: an upload verified against the
        # old key and written after this delete finds the new key when it
        # reads again (``rossby.server.prekeys``) and deletes its own keys.
        await self.void_prekeys(caller.box_id, caller.device_id)
        log.info("device_keys_rotated")
        return rossby_pb2.RotateKeysResponse(entry=to_pb(entry))

    # -- contacts ----------------------------------------------------------------

    def _contact(self, raw: rossby_pb2.Contact) -> tuple[NormalizedContact, bytes]:
        contact = normalize(raw.kind, raw.value, self.default_phone_region)
        return contact, self.hasher.hash(contact)

    def _code_hash(self, box_id: uuid.UUID, contact_hash: bytes, code: str) -> bytes:
        msg = b"rossby/v1 add-contact\x00" + box_id.bytes + contact_hash + code.encode()
        return hmac.new(self.code_key, msg, hashlib.sha256).digest()

    async def _count(self, box_id: uuid.UUID) -> int:
        return len(await self.accounts.box_contacts(box_id))

    async def add_contact(
        self, request: rossby_pb2.AddContactRequest, caller: Caller
    ) -> rossby_pb2.AddContactResponse:
        contact, contact_hash = self._contact(request.contact)
        if not self.notifier.supports(contact.kind):
            raise errors.InvalidArgument(
                f"this server cannot send codes to {contact.kind}",
                reason="CONTACT_KIND_UNSUPPORTED",
            )
        box_id = caller.box_id
        owner, held, existing, me = await asyncio.gather(
            self.store.lookup_contact(contact_hash),
            self.accounts.box_contacts(box_id),
            self.accounts.get_contact_challenge(box_id, contact_hash),
            self._me(caller),
        )
        if owner == box_id:
            raise errors.AlreadyExists(
                "this contact already belongs to your box", reason="CONTACT_ALREADY_YOURS"
            )
        # Another box's contact gets its code like a free one: answering
        # CONTACT_TAKEN here would tell any box who is registered, even
        # users who are not discoverable. VerifyContact says it, to the
        # holder of the code only.
        if len(held) >= MAX_BOX_CONTACTS:
            raise errors.ResourceExhausted(
                f"a box holds at most {MAX_BOX_CONTACTS} contacts",
                reason="TOO_MANY_CONTACTS",
                metadata={"max": str(MAX_BOX_CONTACTS)},
            )
        now = self.clock()
        if existing is not None:
            wait = existing.sent_at + self.resend_interval - now
            if wait > 0:
                raise errors.ResourceExhausted(
                    "a code was sent moments ago",
                    reason="RATE_LIMITED",
                    metadata={"retry_after_seconds": f"{wait:.0f}"},
                )
        # A box may name any contact here, so the per-contact limits on codes
        # apply as at Register, with the box as the requester.
        await self.contact_codes.reserve(self.store, [contact_hash], now, f"box:{box_id}")
        code = new_code()
        challenge = ContactChallenge(
            box_id=box_id,
            contact_hash=contact_hash,
            code_hash=self._code_hash(box_id, contact_hash, code),
            sent_at=now,
            expires_at=now + self.code_ttl,
            keep_until=now + self.code_ttl + EXPIRED_GRACE,
        )
        await self.accounts.put_contact_challenge(challenge)
        try:
            await self.notifier.send_code(contact, code, self.code_ttl, device_name=me.name)
        except errors.Unavailable:
            # Let an immediate retry resend instead of hitting the rate limit.
            await self.accounts.put_contact_challenge(
                replace(challenge, sent_at=now - self.resend_interval)
            )
            raise
        log.info("contact_code_sent", kind=contact.kind.value)
        return rossby_pb2.AddContactResponse(code_ttl_seconds=self.code_ttl)

    async def verify_contact(
        self, request: rossby_pb2.VerifyContactRequest, caller: Caller
    ) -> rossby_pb2.VerifyContactResponse:
        _, contact_hash = self._contact(request.contact)
        box_id = caller.box_id
        owner = await self.store.lookup_contact(contact_hash)
        if owner == box_id:  # a retry after success
            await self.accounts.add_box_contact(box_id, contact_hash)
            return rossby_pb2.VerifyContactResponse(contact_count=await self._count(box_id))
        challenge = await self.accounts.get_contact_challenge(box_id, contact_hash)
        if challenge is None:
            raise errors.NotFound(
                "no code was sent to this contact for your box", reason="CODE_NOT_FOUND"
            )
        if self.clock() >= challenge.expires_at:
            raise errors.FailedPrecondition(
                "the code expired; add the contact again", reason="CODE_EXPIRED"
            )
        too_many = errors.FailedPrecondition(
            "too many wrong codes; add the contact again for a new code",
            reason="TOO_MANY_ATTEMPTS",
        )
        # Reserve, then compare (as at Authorize): exact under a burst.
        try:
            attempt = await self.accounts.reserve_contact_attempt(
                box_id, contact_hash, sent_at=challenge.sent_at, limit=self.code_attempts
            )
        except errors.NotFound:  # resent (a new code) or gone meanwhile
            raise errors.FailedPrecondition(
                "the code expired; add the contact again", reason="CODE_EXPIRED"
            ) from None
        if attempt == 0:
            raise too_many
        expected = self._code_hash(box_id, contact_hash, request.code.strip())
        if not hmac.compare_digest(expected, challenge.code_hash):
            raise errors.PermissionDenied(
                "wrong code",
                reason="CODE_INVALID",
                metadata={"attempts_left": str(max(self.code_attempts - attempt, 0))},
            )
        if await self.store.claim_contact(contact_hash, box_id) != box_id:
            raise errors.AlreadyExists("the contact belongs to another box", reason="CONTACT_TAKEN")
        await self.accounts.add_box_contact(box_id, contact_hash)
        await self.accounts.delete_contact_challenge(box_id, contact_hash)
        log.info("contact_added")
        return rossby_pb2.VerifyContactResponse(contact_count=await self._count(box_id))

    async def remove_contact(
        self, request: rossby_pb2.RemoveContactRequest, caller: Caller
    ) -> rossby_pb2.RemoveContactResponse:
        _, contact_hash = self._contact(request.contact)
        box_id = caller.box_id
        owner, held = await asyncio.gather(
            self.store.lookup_contact(contact_hash), self.accounts.box_contacts(box_id)
        )
        if owner != box_id:
            raise errors.NotFound("not a contact of your box", reason="CONTACT_NOT_FOUND")
        if len(set(held) | {contact_hash}) <= 1:
            raise errors.FailedPrecondition(
                "a box keeps at least one contact; add another one first",
                reason="LAST_CONTACT",
            )
        await self.store.release_contact(contact_hash, box_id)
        await self.accounts.remove_box_contact(box_id, contact_hash)
        log.info("contact_removed")
        return rossby_pb2.RemoveContactResponse(contact_count=await self._count(box_id))

    # -- profile -----------------------------------------------------------------

    async def _profile(self, box_id: uuid.UUID) -> Profile:
        profile = await self.store.get_profile(box_id)
        if profile is None:  # the caller's own box always exists
            raise errors.NotFound("no such box", reason="NOT_FOUND")
        return profile

    async def get_profile(
        self, request: rossby_pb2.GetProfileRequest, caller: Caller
    ) -> rossby_pb2.GetProfileResponse:
        profile, count = await asyncio.gather(
            self._profile(caller.box_id), self._count(caller.box_id)
        )
        return rossby_pb2.GetProfileResponse(profile=profile_pb(profile), contact_count=count)

    async def update_profile(
        self, request: rossby_pb2.UpdateProfileRequest, caller: Caller
    ) -> rossby_pb2.UpdateProfileResponse:
        changes: dict[str, object] = {}
        if request.HasField("display_name"):
            changes["display_name"] = _text("display_name", request.display_name, MAX_DISPLAY_NAME)
        if request.HasField("description"):
            changes["description"] = _text(
                "description", request.description, MAX_DESCRIPTION, newlines=True
            )
        if request.HasField("avatar_ref"):
            changes["avatar_ref"] = _text("avatar_ref", request.avatar_ref, MAX_AVATAR_REF)
        if request.HasField("discoverable"):
            changes["discoverable"] = request.discoverable
        if request.accept_from != rossby_pb2.ACCEPT_FROM_UNSPECIFIED:
            accept = _ACCEPT_FROM_PB.get(request.accept_from)
            if accept is None:
                raise errors.InvalidArgument(
                    "accept_from: unknown value",
                    reason="PROFILE_INVALID",
                    metadata={"field": "accept_from"},
                )
            changes["accept_from"] = accept
        profile = await self._profile(caller.box_id)
        if changes:
            profile = replace(profile, **changes)  # type: ignore[arg-type]
            await self.store.put_profile(profile)
            self.auth_cache.box_rules_changed(caller.box_id)
        return rossby_pb2.UpdateProfileResponse(profile=profile_pb(profile))

    # -- sender rules ------------------------------------------------------------

    async def set_sender_rule(
        self, request: rossby_pb2.SetSenderRuleRequest, caller: Caller
    ) -> rossby_pb2.SetSenderRuleResponse:
        other = validate.parse_id("box_id", request.box_id)
        if other == caller.box_id:
            raise errors.InvalidArgument(
                "a box cannot hold a rule about itself", reason="SELF_RULE"
            )
        if request.rule == rossby_pb2.SENDER_RULE_NONE:
            rule = None
        elif request.rule in _RULE_FROM_PB:
            rule = _RULE_FROM_PB[request.rule]
        else:
            raise errors.InvalidArgument("rule: unknown value", reason="RULE_INVALID")
        # Nothing says whether ``other`` exists: a rule about an unknown box
        # is stored like any other, so this is no oracle either.
        await self.accounts.set_sender_rule(caller.box_id, other, rule)
        self.auth_cache.box_rules_changed(caller.box_id)
        return rossby_pb2.SetSenderRuleResponse()

    async def list_sender_rules(
        self, request: rossby_pb2.ListSenderRulesRequest, caller: Caller
    ) -> rossby_pb2.ListSenderRulesResponse:
        rule = _RULE_FROM_PB.get(request.rule)
        if rule is None:
            raise errors.InvalidArgument("rule: BLOCKED or ACCEPTED", reason="RULE_INVALID")
        boxes = await self.accounts.list_sender_rules(caller.box_id, rule)
        return rossby_pb2.ListSenderRulesResponse(box_ids=[str(b) for b in boxes])


__all__ = ["Accounts", "hidden", "profile_pb"]
