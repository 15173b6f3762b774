"""Device linking: CreateLinkOffer, JoinLink, GetLinkOffer, ApproveLink,
CompleteLink. The flow is in docs/api.md ("Device linking"), the derived
keys and signed strings in ``rossby.crypto.link`` and docs/envelope.md.

What the server knows: the offer id, the verifier (a one-way function of
the passphrase), the new device's public keys and a MAC it cannot check.
It counts wrong proofs (``code_attempts``, default 5, then the offer is
dead), enforces the lifetime (``code_ttl``, default 600 s) and single use
(the first device that proves the passphrase takes the offer), and adds a
device only under a signature by a device of the box over the new keys.

Every step is a compare-and-set on the offer's state, and ApproveLink's
writes (key-log entry, device, sealed credentials) are idempotent, so a
retry after an unknown outcome converges on the same device and the same
Hawk key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from rossby import errors
from rossby.crypto.keylog import ChangeKind, verify_change
from rossby.crypto.link import join_transcript, mac_ok, verify_complete
from rossby.crypto.sealed import credentials_aad, seal
from rossby.logging import get_logger
from rossby.server import validate
from rossby.server.caller import Caller
from rossby.server.hawkkeys import HawkKeyring
from rossby.server.keylog import KeyLog, active_keys, ever_listed, to_pb
from rossby.server.registration import hawk_id
from rossby.store import Device, DeviceState, Store
from rossby.store.accounts import AccountStore, KeyLogEntry, LinkOffer, LinkState
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

VERIFIER_BYTES = 32
TAG_BYTES = 32
#: How long an offer row outlives the offer (late calls hear LINK_EXPIRED,
#: and an approved device can still collect its credentials).
EXPIRED_GRACE = 3600.0

_STATE_PB = {
    LinkState.OPEN: rossby_pb2.LINK_STATE_OPEN,
    LinkState.JOINED: rossby_pb2.LINK_STATE_JOINED,
    LinkState.APPROVED: rossby_pb2.LINK_STATE_APPROVED,
}


def _not_found() -> errors.NotFound:
    return errors.NotFound("no such link offer", reason="LINK_NOT_FOUND")


def _expired() -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        "the link offer expired; create a new one", reason="LINK_EXPIRED"
    )


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _tag(field: str, value: bytes) -> bytes:
    if len(value) != TAG_BYTES:
        raise errors.InvalidArgument(
            f"{field} is a 32-byte HMAC-SHA256",
            reason="INVALID_ARGUMENT",
            metadata={"field": field},
        )
    return bytes(value)


class Linker:
    def __init__(
        self,
        store: Store,
        accounts: AccountStore,
        key_log: KeyLog,
        hawk_keys: HawkKeyring,
        *,
        home_region: str,
        link_ttl: int,
        link_attempts: int,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.key_log = key_log
        self.hawk_keys = hawk_keys
        self.home_region = home_region
        self.link_ttl = link_ttl
        self.link_attempts = link_attempts
        self.clock = clock

    async def _offer(self, offer_id: uuid.UUID) -> LinkOffer:
        offer = await self.accounts.get_link_offer(offer_id)
        if offer is None:
            raise _not_found()
        return offer

    async def _own_offer(self, raw_id: str, caller: Caller) -> LinkOffer:
        """The caller's live offer; another box's or device's is NOT_FOUND."""
        offer = await self._offer(validate.parse_id("offer_id", raw_id))
        if (offer.box_id, offer.creator_device_id) != (caller.box_id, caller.device_id):
            raise _not_found()
        return offer

    # -- step 1: the old device opens an offer -----------------------------------

    async def create_offer(
        self, request: rossby_pb2.CreateLinkOfferRequest, caller: Caller
    ) -> rossby_pb2.CreateLinkOfferResponse:
        offer_id = validate.parse_id("offer_id", request.offer_id)
        if len(request.verifier) != VERIFIER_BYTES:
            raise errors.InvalidArgument(
                "verifier is 32 bytes", reason="INVALID_ARGUMENT", metadata={"field": "verifier"}
            )
        now = self.clock()
        wanted = LinkOffer(
            offer_id=offer_id,
            box_id=caller.box_id,
            creator_device_id=caller.device_id,
            verifier=bytes(request.verifier),
            created_at=now,
            expires_at=now + self.link_ttl,
            keep_until=now + self.link_ttl + EXPIRED_GRACE,
        )
        stored = await self.accounts.create_link_offer(wanted)
        if (stored.box_id, stored.creator_device_id, stored.verifier) != (
            wanted.box_id,
            wanted.creator_device_id,
            wanted.verifier,
        ):
            raise errors.AlreadyExists("this offer id is taken", reason="LINK_EXISTS")
        log.info("link_offer_created")
        return rossby_pb2.CreateLinkOfferResponse(
            ttl_seconds=max(0, int(stored.expires_at - now)),
            expires_at_ms=_ms(stored.expires_at),
        )

    # -- step 2: the new device proves the passphrase --------------------------------

    async def join(self, request: rossby_pb2.JoinLinkRequest) -> rossby_pb2.JoinLinkResponse:
        offer_id = validate.parse_id("offer_id", request.offer_id)
        device_id = validate.parse_id("device_id", request.device_id)
        keys = validate.device_keys(device_id, request.keys)
        name = validate.device_name(request.device_name)
        proof = _tag("proof", request.proof)
        join_mac = _tag("mac", request.mac)
        offer = await self._offer(offer_id)
        if self.clock() >= offer.expires_at:
            raise _expired()
        too_many = errors.FailedPrecondition(
            "too many wrong passphrases; create a new link offer", reason="TOO_MANY_ATTEMPTS"
        )
        transcript = join_transcript(
            offer_id, device_id, keys.encryption_key, keys.signing_key, keys.key_signature, name
        )
        joined_as = (offer.device_id, offer.encryption_key, offer.signing_key, offer.join_mac)
        mine = joined_as == (device_id, keys.encryption_key, keys.signing_key, join_mac)
        if offer.state is not LinkState.OPEN and mine:
            # A retry of this device's own join (its mac needs the
            # passphrase): nothing to guess, so it costs no attempt.
            return rossby_pb2.JoinLinkResponse(expires_at_ms=_ms(offer.expires_at))
        # Reserve, then compare: exact under a burst of guesses.
        attempt = await self.accounts.reserve_link_attempt(offer_id, limit=self.link_attempts)
        if attempt == 0:
            raise too_many
        if not mac_ok(offer.verifier, transcript, proof):
            left = max(self.link_attempts - attempt, 0)
            raise errors.PermissionDenied(
                "the passphrase does not match this offer",
                reason="LINK_PROOF_INVALID",
                metadata={"attempts_left": str(left)},
            )
        joined = replace(
            offer,
            state=LinkState.JOINED,
            device_id=device_id,
            device_name=name,
            encryption_key=keys.encryption_key,
            signing_key=keys.signing_key,
            key_signature=keys.key_signature,
            join_mac=join_mac,
        )
        if offer.state is LinkState.OPEN and await self.accounts.transition_link_offer(
            joined, LinkState.OPEN
        ):
            log.info("link_offer_joined")
            return rossby_pb2.JoinLinkResponse(expires_at_ms=_ms(offer.expires_at))
        current = await self._offer(offer_id)
        same = (
            current.device_id,
            current.encryption_key,
            current.signing_key,
            current.join_mac,
        ) == (device_id, keys.encryption_key, keys.signing_key, join_mac)
        if current.state is not LinkState.OPEN and same:
            return rossby_pb2.JoinLinkResponse(expires_at_ms=_ms(offer.expires_at))
        raise errors.FailedPrecondition(
            "another device already used this link offer", reason="LINK_USED"
        )

    # -- step 3: the old device reads who joined -----------------------------------

    async def get_offer(
        self, request: rossby_pb2.GetLinkOfferRequest, caller: Caller
    ) -> rossby_pb2.GetLinkOfferResponse:
        offer = await self._own_offer(request.offer_id, caller)
        if self.clock() >= offer.expires_at and offer.state is not LinkState.APPROVED:
            raise _expired()
        reply = rossby_pb2.GetLinkOfferResponse(
            state=_STATE_PB[offer.state], expires_at_ms=_ms(offer.expires_at)
        )
        if offer.device_id is not None:
            reply.device_id = str(offer.device_id)
            reply.device_name = offer.device_name
            reply.mac = offer.join_mac
            reply.keys.CopyFrom(
                rossby_pb2.DeviceKeys(
                    encryption_key=offer.encryption_key,
                    signing_key=offer.signing_key,
                    key_signature=offer.key_signature,
                )
            )
        return reply

    # -- step 4: the old device signs the new device's keys ----------------------------

    async def approve(
        self, request: rossby_pb2.ApproveLinkRequest, caller: Caller
    ) -> rossby_pb2.ApproveLinkResponse:
        offer = await self._own_offer(request.offer_id, caller)
        device_id = validate.parse_id("device_id", request.device_id)
        confirm = _tag("confirm", request.confirm)
        signature = bytes(request.signature)
        if offer.state is LinkState.OPEN or offer.device_id != device_id:
            raise errors.FailedPrecondition(
                "no device joined this offer with that id", reason="LINK_NOT_JOINED"
            )
        if offer.state is LinkState.APPROVED:
            return rossby_pb2.ApproveLinkResponse(entry=to_pb(await self._entry_of(offer)))
        if self.clock() >= offer.expires_at:
            raise _expired()
        me = await self.store.get_device(caller.box_id, caller.device_id)
        if me is None or me.state is not DeviceState.ACTIVE:
            raise errors.Unauthenticated("this device was revoked", reason="HAWK_UNKNOWN_ID")
        if not verify_change(
            me.keys.signing_key,
            ChangeKind.LINK,
            offer.box_id,
            device_id,
            offer.encryption_key,
            offer.signing_key,
            signature,
        ):
            raise errors.PermissionDenied(
                "the approval is not signed by this device's key", reason="BAD_SIGNATURE"
            )
        existing = await self.store.get_device(offer.box_id, device_id)
        if existing is not None and (
            existing.state is not DeviceState.ACTIVE
            or (existing.keys.encryption_key, existing.keys.signing_key)
            != (offer.encryption_key, offer.signing_key)
        ):
            raise errors.AlreadyExists("that device id is taken", reason="DEVICE_EXISTS")

        def new_device(entries: Sequence[KeyLogEntry]) -> None:
            if existing is None and device_id in ever_listed(entries):
                raise errors.AlreadyExists("that device id is taken", reason="DEVICE_EXISTS")

        entry = await self.key_log.append(
            offer.box_id,
            ChangeKind.LINK,
            device_id,
            caller.device_id,
            offer.encryption_key,
            offer.signing_key,
            signature,
            check=new_device,
        )
        await self.store.add_device(
            Device(
                box_id=offer.box_id,
                device_id=device_id,
                name=offer.device_name,
                keys=validate.device_keys(
                    device_id,
                    rossby_pb2.DeviceKeys(
                        encryption_key=offer.encryption_key,
                        signing_key=offer.signing_key,
                        key_signature=offer.key_signature,
                    ),
                ),
                hawk_key=self.hawk_keys.mint(offer.box_id, device_id),
                state=DeviceState.ACTIVE,
                created_at=self.clock(),
            )
        )
        # A concurrent or earlier attempt may have added it first: seal the
        # key the store holds, whichever attempt chose it.
        device = await self.store.get_device(offer.box_id, device_id)
        if device is None:
            raise errors.StoreUnavailable("the new device did not read back", applied=None)
        credentials = rossby_pb2.HawkCredentials(
            id=hawk_id(offer.box_id, device_id),
            key=self.hawk_keys.unwrap(offer.box_id, device_id, device.hawk_key),
            algorithm="sha256",
        )
        approved = replace(
            offer,
            state=LinkState.APPROVED,
            approver_device_id=caller.device_id,
            approval_signature=signature,
            confirm=confirm,
            sealed_credentials=seal(
                offer.encryption_key,
                credentials.SerializeToString(),
                aad=credentials_aad(device_id),
            ),
        )
        if not await self.accounts.transition_link_offer(approved, LinkState.JOINED):
            current = await self._offer(offer.offer_id)
            if current.state is not LinkState.APPROVED:
                raise errors.StoreUnavailable("the link offer changed under us", applied=None)
        log.info("device_linked")
        return rossby_pb2.ApproveLinkResponse(entry=to_pb(entry))

    async def _entry_of(
        self, offer: LinkOffer, entries: Sequence[KeyLogEntry] | None = None
    ) -> KeyLogEntry:
        if entries is None:
            entries = await self.key_log.full(offer.box_id)
        for e in reversed(entries):
            if e.device_id == offer.device_id and e.kind == ChangeKind.LINK.label:
                return e
        raise errors.StoreUnavailable("the link's key-log entry is missing", applied=None)

    # -- step 5: the new device collects its credentials ---------------------------------

    async def complete(
        self, request: rossby_pb2.CompleteLinkRequest
    ) -> rossby_pb2.CompleteLinkResponse:
        offer_id = validate.parse_id("offer_id", request.offer_id)
        device_id = validate.parse_id("device_id", request.device_id)
        offer = await self._offer(offer_id)
        if offer.device_id != device_id:
            raise _not_found()
        if not verify_complete(offer.signing_key, offer_id, device_id, bytes(request.signature)):
            raise errors.PermissionDenied(
                "not signed by the joined device's key", reason="BAD_SIGNATURE"
            )
        if offer.state is not LinkState.APPROVED:
            if self.clock() >= offer.expires_at:
                raise _expired()
            raise errors.FailedPrecondition(
                "not approved yet; ask again in a moment", reason="LINK_NOT_APPROVED"
            )
        assert offer.approver_device_id is not None
        box = await self.store.get_box(offer.box_id)
        # The approver's key as it was when it signed (it may rotate later).
        entries = await self.key_log.full(offer.box_id)
        link = await self._entry_of(offer, entries)
        before = [e for e in entries if e.seq < link.seq]
        approver_keys = active_keys(before).get(offer.approver_device_id)
        if approver_keys is None or box is None:
            raise errors.StoreUnavailable("the approving device did not read back", applied=None)
        return rossby_pb2.CompleteLinkResponse(
            box_id=str(offer.box_id),
            sealed_credentials=offer.sealed_credentials,
            home_region=box.home_region or self.home_region,
            approver_device_id=str(offer.approver_device_id),
            approver_signing_key=approver_keys[1],
            approval_signature=offer.approval_signature,
            confirm=offer.confirm,
        )


__all__ = ["Linker"]
