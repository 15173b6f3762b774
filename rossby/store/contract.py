"""The ``Store`` contract: every call the server makes on its storage.

The reasoning shared by the methods (positions, the settle window) is in
``rossby.store.base``'s docstring; the records are in ``rossby.store.model``.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from rossby.replication.homes import HomeRegions
from rossby.store.accounts import AccountStore
from rossby.store.capabilities import Capabilities
from rossby.store.model import (
    Box,
    Compaction,
    Device,
    DeviceKeys,
    Enqueued,
    NewMessage,
    Page,
    Position,
    Profile,
    Registration,
    StoreOptions,
)
from rossby.store.prekeys import PrekeyStore
from rossby.store.presence import PresenceStore
from rossby.store.pushtargets import PushTargetStore


class Store(AccountStore, PresenceStore, PrekeyStore, PushTargetStore, abc.ABC):
    """The storage seam. Implementations stay terse; the contract is here.

    One contract: the queue and keystore below, the account records
    (``AccountStore``), presence rows (``PresenceStore``), prekeys
    (``PrekeyStore``) and push targets (``PushTargetStore``), so a wrapper
    (``MeteredStore``) that implements ``Store`` wraps every call. What a
    backend cannot promise is declared in ``capabilities``, never found out
    by testing its class.

    Use as an async context manager, or call ``close`` yourself.
    """

    options: StoreOptions

    #: What this backend promises and what it declines, with the reasons.
    capabilities: Capabilities

    #: Position units below a cursor that Fetch re-reads (see module doc);
    #: 0 exactly when ``capabilities.ordered_visibility`` holds.
    settle_window: Position = 0

    def home_regions(self) -> HomeRegions:
        """The operator commands on boxes' home regions (``rossby admin``).

        Raises ``Unsupported`` (reason ``NOT_REPLICATED``) unless
        ``capabilities.home_regions`` holds.
        """
        raise self.capabilities.home_regions.refuse("home regions exist only on a Cassandra store")

    # -- lifecycle ---------------------------------------------------------

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Apply pending schema versions; answer the version now in force.

        Idempotent. Raises ``FailedPrecondition(reason="SCHEMA_TOO_NEW")``
        when the database carries a schema newer than this code knows.
        """

    @abc.abstractmethod
    async def check_schema(self) -> int:
        """Answer the schema version, or raise ``FailedPrecondition``.

        Reasons: ``SCHEMA_MISSING`` (run ``rossby migrate``),
        ``SCHEMA_OUTDATED`` (older than this code), ``SCHEMA_TOO_NEW``.
        The server calls this at start-up and refuses to serve on error.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a read now."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- contacts: contact hash -> box ------------------------------------

    @abc.abstractmethod
    async def lookup_contact(self, contact_hash: bytes) -> uuid.UUID | None:
        """The box that owns this contact, if any."""

    @abc.abstractmethod
    async def claim_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> uuid.UUID:
        """Claim a contact for ``box_id``; answer the owner after the claim.

        Exactly one of any number of racing claims wins, across processes
        and datacenters (Cassandra: a lightweight transaction at SERIAL, on
        rows that are only ever written by lightweight transactions).
        Claiming a contact one already owns answers one's own box id, so a
        retry after an unknown outcome is safe. The caller compares the
        answer with ``box_id`` to learn whether it won.
        """

    @abc.abstractmethod
    async def release_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> None:
        """Drop the claim if, and only if, ``box_id`` owns it."""

    # -- registrations: device id -> pending registration -----------------

    @abc.abstractmethod
    async def put_registration(self, registration: Registration) -> None:
        """Create or replace the pending registration of a device.

        It disappears by itself after ``registration.expires_at`` (at the
        latest ``options.registration_ttl`` after its creation).
        """

    @abc.abstractmethod
    async def get_registration(self, device_id: uuid.UUID) -> Registration | None:
        """The pending (or completed, not yet expired) registration."""

    @abc.abstractmethod
    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        """Reserve one comparison of codes for the registration that
        expires at ``expires_at``; answer its number (1 .. ``limit``), or 0
        when ``limit`` comparisons were already reserved (nothing changes).

        Reserved *before* the codes are compared, right or wrong: check
        then increment would let a burst of concurrent guesses all pass the
        check before any is counted (issue 16, finding 3). Exact across
        processes: of any number of racing calls at most ``limit - count``
        get a number, each a different one. Raises ``NotFound`` when the
        device has no registration, or a newer one (``expires_at`` differs:
        a re-Register replaced the codes the caller read).

        Raises ``AttemptContended`` (retryable) when the reservation could
        not be won (Cassandra: the compare-and-set lost its bounded rounds),
        and ``StoreUnavailable`` when it timed out with its outcome unknown.
        Either way the caller must not compare: an undecided reservation may
        be counted, but a comparison is never made uncounted.
        """

    @abc.abstractmethod
    async def complete_registration(self, device_id: uuid.UUID) -> None:
        """Mark the registration completed (kept until it expires, so a
        retried Authorize can be answered again)."""

    # -- one-time codes sent per contact (abuse limit) ---------------------

    @abc.abstractmethod
    async def reserve_code_sends(
        self,
        contact_hashes: Sequence[bytes],
        *,
        now: float,
        window: float,
        limit: int,
        requester: bytes = b"",
        requester_limit: int = 0,
    ) -> None:
        """Count one code about to be sent to each contact, unless one of
        them already had ``limit`` codes in the ``window`` seconds up to
        ``now``, or, with a ``requester`` and a ``requester_limit``,
        ``requester_limit`` codes asked for by that requester.

        These are the per-contact limits on codes (docs/security.md, "Abuse
        limits"): ``limit`` is the ceiling for one contact from everyone
        (SMS pumping, bombing); ``requester_limit`` the share of one
        requester (an opaque keyed tag of a client address or a box), so a
        third party's Registers use up its own share, not the contact
        owner's (issue 16, finding 6). They live in the store, not in a
        process's memory, so they hold across server processes, restarts
        and the servers of a region. Only keyed hashes are stored; a
        requester's count is kept under ``requester_bucket(requester,
        contact hash)``, a row key like a contact hash.

        ``now`` is the caller's clock (the server's, which tests move); a
        send counts while its time is after ``now - window`` and is kept at
        least that long. ``limit`` is at least 1 and ``window`` positive.
        Repeated hashes in one call count once.

        All or nothing: when any contact (or the requester's share of one)
        is at its limit, nothing is recorded and ``CodeSendLimitExceeded``
        is raised, with metadata ``retry_after_seconds`` (whole seconds, at
        least 1, until every refused count has room again) and ``limit``
        (the limit that refused). Sends are never given back, even when the
        code then fails to go out (a provider that timed out may still have
        delivered it). A call that fails otherwise (``StoreUnavailable``)
        may have recorded some of its sends.

        SQLite is exact: the count and the record are one write
        transaction. Cassandra reads, then writes plain TTL'd rows (no
        lightweight transaction, which would put a Paxos round on every
        Register). Callers in one process queue per contact, so the count is
        exact within a process; callers in different processes or servers
        racing for one contact may each see room, so a contact can get up
        to ``limit + P - 1`` codes in a window with P racing processes. Sends
        recorded in another region count once replicated there.
        """

    # -- boxes, devices (keystore), profiles ------------------------------

    @abc.abstractmethod
    async def create_box(self, box: Box, first_device: Device) -> None:
        """Create a box with its first device, its profile defaults and the
        device's cursor at the queue head. Idempotent for the same box and
        device (a retry after an unknown outcome is safe)."""

    @abc.abstractmethod
    async def get_box(self, box_id: uuid.UUID) -> Box | None:
        """The box, or None if it does not exist."""

    @abc.abstractmethod
    async def add_device(self, device: Device) -> None:
        """Add an active device to an existing box.

        Its cursor starts at the current queue head: a new device gets no
        history. Raises ``NotFound`` if the box does not exist.

        Known limit when ``settle_window > 0``: the settle re-read never goes
        below a device's start, so a message issued by a writer whose clock
        lags, in the moments just after the device is added, can land below
        the start and reach the box's other devices but not the new one.
        Such a message was sealed before the sender could have known the new
        device's keys in practice, so the new device could not open it
        anyway; the sender's next message reaches it.
        """

    @abc.abstractmethod
    async def get_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        """The device in any state (revoked ones too), or None."""

    @abc.abstractmethod
    async def list_devices(self, box_id: uuid.UUID) -> list[Device]:
        """Every *active* device of the box, ordered by creation time."""

    @abc.abstractmethod
    async def rotate_device_keys(
        self, box_id: uuid.UUID, device_id: uuid.UUID, keys: DeviceKeys
    ) -> None:
        """Replace an active device's public keys. ``NotFound`` otherwise."""

    @abc.abstractmethod
    async def set_hawk_key(self, box_id: uuid.UUID, device_id: uuid.UUID, hawk_key: bytes) -> None:
        """Replace the stored Hawk key of a device in any state (``rossby
        rotate-keys`` re-wraps it under a new master key). ``NotFound`` if
        there is no such device; never creates one."""

    @abc.abstractmethod
    async def device_page(
        self, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
    ) -> list[Device]:
        """Up to ``limit`` devices of all boxes, in any state, for operator
        commands that visit every device (``rossby rotate-keys``).

        Start with ``after=None`` and pass the (box id, device id) of the
        last device of each page to get the next; an empty page is the end.
        The order is the backend's own; every device that exists for the
        whole scan is returned exactly once. A full scan: never on a
        request path.
        """

    @abc.abstractmethod
    async def revoke_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Mark the device revoked: it leaves ``list_devices``, its
        cursor no longer holds back compaction and its push target is
        deleted. Idempotent."""

    @abc.abstractmethod
    async def record_device_seen(self, box_id: uuid.UUID, device_id: uuid.UUID, at: float) -> None:
        """Record that the device made a signed call at ``at`` (Unix
        seconds): its ``last_seen`` becomes the latest time ever recorded,
        whatever order concurrent records land in, so an old record never
        moves it back. A plain write, no read: callers record a device at
        most once per interval (``rossby.server.activity``). Only for a
        device that exists (the caller just authenticated as it)."""

    @abc.abstractmethod
    async def get_profile(self, box_id: uuid.UUID) -> Profile | None:
        """The box's profile, or None if the box does not exist."""

    @abc.abstractmethod
    async def put_profile(self, profile: Profile) -> None:
        """Replace the profile of an existing box."""

    # -- the queue ---------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        """Queue a message for every device of the box.

        Idempotent on (box_id, message.message_id) until the first copy
        expires, whether or not it has been delivered and compacted since: a
        retry answers the first attempt's position with ``duplicate=True``
        and stores nothing new. (A sender that never heard its first answer,
        because the server crashed or the call timed out, retries later; had
        compaction forgotten the id, every device would get the message a
        second time, above its cursor.) A retry into a full box is still
        answered as a duplicate (the message is already queued), not
        refused. The message expires
        ``options.message_ttl`` seconds after it was queued, read or not, or
        ``message.expire_after`` seconds after when that is shorter
        (disappearing messages): never handed out from then on, and no
        longer counted as pending. The id is still remembered for the full
        ``message_ttl``, so a retry after such a message expired is a
        duplicate, not a second copy.

        Exactness of the id check: when ``settle_window == 0`` it is one
        transaction, so even attempts that run at the same time store one
        copy. When ``settle_window > 0`` (Cassandra, no Paxos on the Send
        path) a retry made after an earlier attempt's answer, or after that
        attempt failed, never stores a second copy; attempts that overlap
        in time in *different* processes may each store one, at positions
        less than ``settle_window`` apart, and ``fetch`` hands out only the
        first of them (never a later copy above a cursor that passed the
        first). Attempts of one id in one process are serialised.

        Raises ``PendingCapExceeded`` when the box already holds
        ``options.pending_cap`` live messages above its *most advanced*
        active cursor (``rossby.store.overflow.send_floor``). A device
        further behind does not block the box: it overflows (``fetch``,
        ``compact``), and nothing is dropped for the most advanced device
        to make room. The cap is exact when
        ``settle_window == 0``. Otherwise a backend may estimate while the
        box is below half its cap (a recent count plus what this process
        queued since, trusted for a few seconds); senders in other processes
        may then overshoot the cap by what they queue in that time beyond
        half the cap (``rossby.store.cassandra.pending``), and
        concurrent senders near the cap by at most their number. The caller
        checks the box exists.
        """

    @abc.abstractmethod
    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        """Messages for the device, in position order, at most ``limit``.

        Reads after ``max(after, cursor - settle_window, the device's start
        position, purged_through)``, and never below the expiry horizon, so
        deleted or expired rows are never scanned. ``after=0`` means "from
        the cursor". Expired messages are never returned (at or after their
        ``expires_at``). Of several copies
        of one message id (overlapping Send attempts, see ``enqueue``) only
        the lowest is returned; when that drops the last rows of a full
        read, ``Page.read_through`` says where the next page starts (a page
        whose rows had all expired may so come back empty, with ``more``). Raises
        ``NotFound`` for an unknown or revoked device.

        A sweep (pages with ``after``, then one ack) acks at most the
        ``Page.ack_limit`` of its first page: without ordered visibility, a
        message that lands below a page already read is only delivered by
        the next sweep's re-read, which an ack past that limit could start
        above it.

        Overflow (``rossby.store.overflow``, docs/store.md "Overflow"): a
        fetch from the device's floor (``after`` not past its cursor) of a
        device with more than ``pending_cap`` live messages above its cursor
        first moves that cursor to the ``pending_cap + 1``-th newest live
        position (never past the most advanced cursor less the settle
        window), dropping the older ones for this device only, and records
        the dropped range in the same durable write (``Page.dropped``: how
        many this call dropped). ``Page.gap`` is the recorded gap on every
        page starting at or below its ``through``, until an ``ack`` at or
        above it; nothing at or below a gap's end is handed out again. A
        device within the cap is never trimmed and never has a gap.
        """

    @abc.abstractmethod
    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        """Advance the device's cursor to ``through``; answer the cursor.

        Never moves backwards (concurrent acks keep the largest) and never
        past the queue head (an ack beyond the last position issued is
        clamped to it). An ack at or above the device's gap's ``through``
        (``through`` itself, not the resulting cursor, which a trim already
        moved there) ends the gap's report. Raises ``NotFound`` for an
        unknown or revoked device.
        """

    @abc.abstractmethod
    async def compact(self, box_id: uuid.UUID) -> Compaction:
        """Remove what every active device has passed.

        First trims every active device over the cap, as ``fetch`` does
        (``Compaction.dropped``), so a device that stopped reading holds
        compaction back by at most ``pending_cap`` messages, not for the
        message TTL. Then deletes positions at or below ``min(active
        cursors) - settle_window`` with one range delete, never one delete
        per message. Safe to run concurrently and repeatedly.
        """

    @abc.abstractmethod
    async def pending_count(self, box_id: uuid.UUID) -> int:
        """Messages queued and not yet compacted or expired (capped at
        ``options.pending_cap + 1`` where counting is costly). A message
        past its ``expires_at`` is never counted, here or by the cap."""

    async def purge_expired(self) -> int:
        """Housekeeping for backends without native TTL; answer rows removed."""
        return 0

    # -- Hawk nonces (replay detection shared by every process) -----------

    @abc.abstractmethod
    async def claim_nonce(
        self, box_id: uuid.UUID, device_id: uuid.UUID, nonce: bytes, ttl: float
    ) -> bool:
        """Record that the device's request ``nonce`` was accepted; answer
        True only for its first claim.

        ``nonce`` is opaque (the server passes a digest of the Hawk ts and
        nonce, 16 bytes). It is remembered for ``ttl`` seconds. Of several
        claims of one nonce, made by any processes sharing this store, at
        most one answers True, concurrent claims included; on a backend
        with several datacenters this holds among the processes of one
        datacenter, and a claim reaches the others with replication. A
        claim that fails (the store unavailable) raises, and the request
        must then be refused.
        """


__all__ = ["Store"]
