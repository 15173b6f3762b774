"""Register and Authorize: one-time codes, proof of key possession, claims.

Why the order of Authorize's writes is box, then contacts: a box without
contacts is harmless garbage if the claims then fail, while a contact
claimed for a box that was never created would lock that phone number out
for good. Every step is idempotent, so a client that retries after an
unknown outcome converges to the same box and the same credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from rossby import errors
from rossby.config import EXPIRED_GRACE
from rossby.contacts import ContactHasher, NormalizedContact, normalize
from rossby.crypto.keys import verify_authorize_signature
from rossby.crypto.sealed import credentials_aad, seal
from rossby.logging import get_logger
from rossby.server import validate
from rossby.server.hawkkeys import HawkKeyring
from rossby.server.logtags import box_tag
from rossby.server.notify import Notifier
from rossby.server.ratelimit import RateLimit, client_address
from rossby.store import Box, Device, DeviceState, Registration, Store
from rossby.store.base import requester_bucket
from rossby.v1 import rossby_pb2

log = get_logger(__name__)

CODE_DIGITS = 6


def new_code() -> str:
    """Six digits from the CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hawk_id(box_id: uuid.UUID, device_id: uuid.UUID) -> str:
    return f"{box_id}.{device_id}"


@dataclass(frozen=True, slots=True)
class ContactCodeLimit:
    """Codes to one contact per ``window`` seconds: at most ``limit`` asked
    for by one requester, and at most ``ceiling`` from everyone (0: off).

    Counted in the store (``Store.reserve_code_sends``), not in memory:
    fresh device ids, other worker processes or a restart must not reset
    what one phone number or mailbox has received. Register (requester: the
    client address) and AddContact (requester: the box) share it, since
    both send a code to a contact the caller names. The requester share is
    what keeps a third party from locking a contact's owner out of sign-up
    (issue 16, finding 6): its Registers use up its own share; only the
    much higher ceiling, against pumping and bombing, is common to all.
    """

    limit: int
    window: float
    ceiling: int = 0
    #: Keys the requester tags stored with the counts (from server_secret).
    tag_key: bytes = b""

    def requester_tag(self, requester: str) -> bytes:
        """A keyed tag of the requester: a dump does not reveal addresses."""
        return hmac.new(
            self.tag_key, b"rossby/v1 code requester\0" + requester.encode(), hashlib.sha256
        ).digest()

    async def reserve(
        self, store: Store, contact_hashes: Sequence[bytes], now: float, requester: str
    ) -> None:
        """Count the codes about to go out, or raise CONTACT_RATE_LIMITED."""
        if self.limit <= 0 and self.ceiling <= 0:
            return
        if self.ceiling <= 0:  # only the requester share: it is the one counted
            await store.reserve_code_sends(
                [_share(self.requester_tag(requester), h) for h in contact_hashes],
                now=now,
                window=self.window,
                limit=self.limit,
            )
            return
        await store.reserve_code_sends(
            contact_hashes,
            now=now,
            window=self.window,
            limit=self.ceiling,
            requester=self.requester_tag(requester) if self.limit > 0 else b"",
            requester_limit=self.limit,
        )


def _share(tag: bytes, contact_hash: bytes) -> bytes:
    return requester_bucket(tag, contact_hash)


class Registrar:
    """The registration half of the service, kept apart from the queue RPCs."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        hasher: ContactHasher,
        code_key: bytes,
        hawk_keys: HawkKeyring,
        *,
        log_key: bytes,
        home_region: str,
        code_ttl: int,
        code_attempts: int,
        resend_interval: float,
        max_contacts: int,
        default_phone_region: str,
        clock: Callable[[], float],
        contact_codes: ContactCodeLimit,
        register_per_address: RateLimit,
        authorize_failures_per_address: RateLimit,
        on_box_created: Callable[[Device, Sequence[bytes]], Awaitable[None]],
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.hasher = hasher
        self.code_key = code_key
        #: Wraps each new device's Hawk key before it is stored; the clear
        #: key only ever leaves sealed to the device (rossby.server.hawkkeys).
        self.hawk_keys = hawk_keys
        self.log_key = log_key
        self.home_region = home_region
        self.code_ttl = code_ttl
        self.code_attempts = code_attempts
        self.resend_interval = resend_interval
        self.max_contacts = max_contacts
        self.default_phone_region = default_phone_region
        self.clock = clock
        self.contact_codes = contact_codes
        self.register_per_address = register_per_address
        self.authorize_failures_per_address = authorize_failures_per_address
        #: Called once the box exists, before its contacts are claimed (the
        #: accounts module records the key log's genesis entry there).
        self.on_box_created = on_box_created

    def _code_hash(self, device_id: uuid.UUID, contact_hash: bytes, code: str) -> bytes:
        msg = device_id.bytes + contact_hash + code.encode()
        return hmac.new(self.code_key, msg, hashlib.sha256).digest()

    def contacts(self, raw: Sequence[rossby_pb2.Contact]) -> list[NormalizedContact]:
        validate.count("contacts", len(raw), 1, self.max_contacts)
        out = [normalize(c.kind, c.value, self.default_phone_region) for c in raw]
        if len(set(out)) != len(out):
            raise errors.InvalidArgument("contacts repeat", reason="DUPLICATE_CONTACT")
        for contact in out:
            if not self.notifier.supports(contact.kind):
                raise errors.InvalidArgument(
                    f"this server cannot send codes to {contact.kind}",
                    reason="CONTACT_KIND_UNSUPPORTED",
                )
        return out

    async def register(
        self, request: rossby_pb2.RegisterRequest, peer: str
    ) -> rossby_pb2.RegisterResponse:
        """``peer`` is the gRPC peer (``context.peer()``), for the address limit.

        Every call counts against the address limit, first, invalid ones
        too: Register is unauthenticated and costs the operator a message.
        """
        await self.register_per_address.hit(client_address(peer))
        device_id = validate.parse_id("device_id", request.device_id)
        contacts = self.contacts(request.contacts)
        keys = validate.device_keys(device_id, request.keys)
        name = validate.device_name(request.device_name)
        hashes = tuple(self.hasher.hash(c) for c in contacts)
        # Whether a contact belongs to a box is NOT looked at here: Register
        # answers the same for a registered, pending or free contact, and
        # sends the code in every case (issue 16, finding 5). Ownership is
        # decided at Authorize, once the caller proved it holds the code.
        now = self.clock()
        existing = await self.store.get_registration(device_id)
        box_id = uuid.uuid4()
        if existing is not None and now < existing.sent_at + self.code_ttl + EXPIRED_GRACE:
            if existing.completed or existing.keys != keys or existing.contact_hashes != hashes:
                raise errors.AlreadyExists(
                    "this device id is already registering or registered", reason="DEVICE_EXISTS"
                )
            wait = existing.sent_at + self.resend_interval - now
            if wait > 0:
                raise errors.ResourceExhausted(
                    "a code was sent moments ago",
                    reason="RATE_LIMITED",
                    metadata={"retry_after_seconds": f"{wait:.0f}"},
                )
            box_id = existing.box_id
        # Last check, first write: a refused Register records and sends nothing.
        await self.contact_codes.reserve(self.store, hashes, now, client_address(peer))
        codes = [new_code() for _ in contacts]
        registration = Registration(
            device_id=device_id,
            box_id=box_id,
            contact_hashes=hashes,
            code_hashes=tuple(
                self._code_hash(device_id, h, c) for h, c in zip(hashes, codes, strict=True)
            ),
            keys=keys,
            device_name=name,
            created_at=now,
            expires_at=now + self.code_ttl + EXPIRED_GRACE,
            sent_at=now,
            attempts=0,
            completed=False,
        )
        await self.store.put_registration(registration)
        try:
            await asyncio.gather(
                *(
                    self.notifier.send_code(c, code, self.code_ttl, device_name=name)
                    for c, code in zip(contacts, codes, strict=True)
                )
            )
        except errors.Unavailable:
            # Let an immediate retry resend instead of hitting the rate limit.
            await self.store.put_registration(
                replace(registration, sent_at=now - self.resend_interval)
            )
            raise
        log.info(
            "registration_started",
            box=box_tag(self.log_key, str(box_id)),
            contacts=len(contacts),
        )
        return rossby_pb2.RegisterResponse(code_ttl_seconds=self.code_ttl)

    async def authorize(
        self, request: rossby_pb2.AuthorizeRequest, peer: str
    ) -> rossby_pb2.AuthorizeResponse:
        """``peer`` as for ``register``. An address out of its budget of
        wrong codes is refused before anything is checked, so it cannot
        keep guessing across many registrations (each allows only
        ``code_attempts`` wrong codes, but an address may hold many)."""
        address = client_address(peer)
        await self.authorize_failures_per_address.check(address)
        device_id = validate.parse_id("device_id", request.device_id)
        codes = list(request.codes)
        registration = await self.store.get_registration(device_id)
        now = self.clock()
        if registration is None:
            raise errors.NotFound(
                "no registration for this device", reason="REGISTRATION_NOT_FOUND"
            )
        if now >= registration.sent_at + self.code_ttl and not registration.completed:
            raise errors.FailedPrecondition(
                "the code expired; register again", reason="CODE_EXPIRED"
            )
        if len(codes) != len(registration.code_hashes):
            raise errors.InvalidArgument(
                f"expected {len(registration.code_hashes)} codes, one per contact",
                reason="CODE_COUNT",
            )
        signed = verify_authorize_signature(
            registration.keys.signing_key, device_id, codes, bytes(request.signature)
        )
        if registration.completed:
            # A retry after success: only the device's own key signs, and
            # nothing is left to guess, so it costs no attempt.
            if not signed:
                raise errors.PermissionDenied(
                    "signature does not prove the device key", reason="BAD_SIGNATURE"
                )
            if not self._codes_match(registration, codes):
                left = max(self.code_attempts - registration.attempts, 0)
                raise errors.PermissionDenied(
                    "wrong code", reason="CODE_INVALID", metadata={"attempts_left": str(left)}
                )
        else:
            # Reserve, then compare: a burst of guesses cannot all pass a
            # check before the first of them is counted (issue 16, finding 3).
            try:
                attempt = await self.store.reserve_attempt(
                    device_id, expires_at=registration.expires_at, limit=self.code_attempts
                )
            except errors.NotFound:  # re-registered (new codes) or gone meanwhile
                raise errors.FailedPrecondition(
                    "the code expired; register again", reason="CODE_EXPIRED"
                ) from None
            if attempt == 0:
                raise errors.FailedPrecondition(
                    "too many wrong codes; register again for a new code",
                    reason="TOO_MANY_ATTEMPTS",
                )
            if not signed:
                await self._failed(address)
                raise errors.PermissionDenied(
                    "signature does not prove the device key", reason="BAD_SIGNATURE"
                )
            if not self._codes_match(registration, codes):
                await self._failed(address)
                raise errors.PermissionDenied(
                    "wrong code",
                    reason="CODE_INVALID",
                    metadata={"attempts_left": str(max(self.code_attempts - attempt, 0))},
                )
        device = await self._complete(registration)
        credentials = rossby_pb2.HawkCredentials(
            id=hawk_id(device.box_id, device.device_id),
            key=self.hawk_keys.unwrap(device.box_id, device.device_id, device.hawk_key),
            algorithm="sha256",
        )
        sealed = seal(
            registration.keys.encryption_key,
            credentials.SerializeToString(),
            aad=credentials_aad(device_id),
        )
        log.info("device_authorized", box=box_tag(self.log_key, str(device.box_id)))
        return rossby_pb2.AuthorizeResponse(
            box_id=str(device.box_id), sealed_credentials=sealed, home_region=self.home_region
        )

    def _codes_match(self, registration: Registration, codes: Sequence[str]) -> bool:
        """Every code right, each compared in constant time (all of them,
        so the time says nothing about which one was wrong)."""
        matches = [
            hmac.compare_digest(self._code_hash(registration.device_id, h, c), expected)
            for h, c, expected in zip(
                registration.contact_hashes, codes, registration.code_hashes, strict=True
            )
        ]
        return all(matches)

    async def _failed(self, address: str) -> None:
        # The attempt was already allowed by check(); a racing call that
        # filled the budget meanwhile does not turn this answer into another.
        with contextlib.suppress(errors.ResourceExhausted):
            await self.authorize_failures_per_address.hit(address)

    async def _complete(self, registration: Registration) -> Device:
        box_id, device_id = registration.box_id, registration.device_id
        existing = await self.store.get_device(box_id, device_id)
        if existing is not None and registration.completed:
            return existing  # a retried Authorize: answer the same credentials
        # Only the contact's holder gets here (the codes are proven): tell
        # it, before a box is made, that the contact belongs to another box,
        # which adds devices by linking (docs/api.md, "The workflow").
        owners = await asyncio.gather(
            *(self.store.lookup_contact(h) for h in registration.contact_hashes)
        )
        if any(owner is not None and owner != box_id for owner in owners):
            raise errors.AlreadyExists(
                "a contact already belongs to a box; link this device from one of its devices",
                reason="CONTACT_TAKEN",
            )
        now = self.clock()
        device = existing or Device(
            box_id=box_id,
            device_id=device_id,
            name=registration.device_name,
            keys=registration.keys,
            hawk_key=self.hawk_keys.mint(box_id, device_id),
            state=DeviceState.ACTIVE,
            created_at=now,
        )
        await self.store.create_box(Box(box_id, self.home_region, now), device)
        device = await self.store.get_device(box_id, device_id) or device
        await self.on_box_created(device, registration.contact_hashes)
        won: list[bytes] = []
        for contact_hash in registration.contact_hashes:
            owner = await self.store.claim_contact(contact_hash, box_id)
            if owner != box_id:
                for mine in won:
                    await self.store.release_contact(mine, box_id)
                raise errors.AlreadyExists(
                    "a contact was claimed by another box first", reason="CONTACT_TAKEN"
                )
            won.append(contact_hash)
        await self.store.complete_registration(device_id)
        return device
