"""The storage contract the server depends on.

The server imports this module and ``rossby.store.open_store`` only, never
a driver. Backends (``rossby.store.sqlite``, ``rossby.store.cassandra``)
store what they are given: validation of client input happens above, in the
service. What a backend *does* own is atomicity, idempotency, ordering and
the translation of driver errors into ``rossby.errors`` (one function per
backend).

Every table is partitioned by box id, except two lookups that exist before a
box does: contact -> box (by keyed contact hash) and pending registrations
(by device id).

Positions
---------
Each queued message gets an integer *position*, unique within its box and
increasing in arrival order. Positions are opaque to clients except for
ordering; they are never reused.

Cursor edge and the settle window
---------------------------------
A device that acks through position P must never miss a message that
becomes visible later at a position <= P. A backend guarantees this in one
of two ways, advertised by ``settle_window``:

* ``settle_window == 0`` (SQLite): positions are assigned inside the
  writing transaction, so visibility order equals position order.
* ``settle_window > 0`` (Cassandra): positions come from server clocks, so a
  slow or skewed writer can make a message visible after a later one. Every
  acknowledged write becomes visible within ``settle_window`` position units
  of its position. Fetch therefore re-reads the window below the cursor
  (``cursor - settle_window``), so a late message is still delivered; the
  repeats it brings are dropped by clients by message id. Compaction only
  removes positions at or below ``min(cursor) - settle_window``.

All methods are coroutines and may raise ``StoreUnavailable``.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from rossby.errors import ResourceExhausted, StoreUnavailable

Position = int


class DeviceState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """Public keys of one device (the server never sees a private key)."""

    encryption_key: bytes  # X25519, 32 bytes
    signing_key: bytes  # Ed25519, 32 bytes
    key_signature: bytes  # Ed25519 over the encryption key, 64 bytes


@dataclass(frozen=True, slots=True)
class Box:
    box_id: uuid.UUID
    home_region: str
    created_at: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class Device:
    box_id: uuid.UUID
    device_id: uuid.UUID
    name: str
    keys: DeviceKeys
    #: The device's Hawk key as stored: wrapped by the server's keyring
    #: (``rossby.server.hawkkeys``), or 32 clear bytes in rows written before
    #: it. Backends store and return it as given.
    hawk_key: bytes
    state: DeviceState
    created_at: float


@dataclass(frozen=True, slots=True)
class Profile:
    box_id: uuid.UUID
    display_name: str = ""
    description: str = ""
    avatar_ref: str = ""
    discoverable: bool = True
    accept_from: str = "anyone"  # "anyone" | "contacts-only"


@dataclass(frozen=True, slots=True)
class Registration:
    """A device that asked to register and has not proven its codes yet.

    ``code_hashes`` are keyed hashes of the one-time codes, one per contact
    in request order; the codes themselves are never stored.
    """

    device_id: uuid.UUID
    box_id: uuid.UUID  # chosen at Register, used at Authorize
    contact_hashes: tuple[bytes, ...]
    code_hashes: tuple[bytes, ...]
    keys: DeviceKeys
    device_name: str
    created_at: float
    expires_at: float
    sent_at: float  # when codes were last sent (resend rate limit)
    attempts: int = 0
    completed: bool = False


@dataclass(frozen=True, slots=True)
class NewMessage:
    message_id: uuid.UUID
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class StoredMessage:
    position: Position
    message_id: uuid.UUID
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    received_at: float  # Unix seconds, server receive time
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Enqueued:
    position: Position
    duplicate: bool  # True when an earlier attempt already queued this id


@dataclass(frozen=True, slots=True)
class Page:
    messages: Sequence[StoredMessage]
    more: bool  # more messages wait after the last one returned
    cursor: Position  # the device's stored cursor
    #: Set when the backend read past the last message returned (it dropped
    #: later copies of an id, see ``Store.fetch``): the next page starts
    #: after this position instead.
    read_through: Position = 0


@dataclass(frozen=True, slots=True)
class Compaction:
    purged_through: Position  # everything at or below is gone
    removed: int | None  # rows removed by this call, when the backend knows


@dataclass(frozen=True, slots=True)
class Presence:
    """One server process holds a Subscribe stream of one device.

    A hint for real-time delivery (docs/realtime.md), never a source of
    truth: a lost or stale row only delays delivery to the streams'
    safety-net poll. ``server_id`` is random per process start; ``address``
    is where that process's ``rossby.v1.Peer`` service listens.
    """

    box_id: uuid.UUID
    device_id: uuid.UUID
    server_id: str
    address: str
    region: str
    since: float  # Unix seconds, when the process began holding a stream
    expires_at: float  # Unix seconds; refreshed while the stream lives


@dataclass(frozen=True, slots=True)
class Connection:
    """How a networked backend logs in and encrypts its connections.

    Empty fields mean none (the default: an open database on a trusted
    network). A backend that has no network (SQLite) ignores it; the
    settings layer refuses these settings with such a store.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    tls_ca: str = ""  # PEM CA file; non-empty turns TLS on
    tls_cert: str = ""  # PEM client certificate, for client authentication
    tls_key: str = field(default="", repr=False)
    tls_check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca)


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Behaviour knobs shared by every backend."""

    message_ttl: float = 30 * 86400.0  # seconds a message lives unread
    pending_cap: int = 10_000  # queued messages per box before Send fails
    registration_ttl: float = 600.0  # seconds a pending registration lives
    clock: Callable[[], float] = field(default=time.time)
    connection: Connection = field(default_factory=Connection)


class PendingCapExceeded(ResourceExhausted):
    """The box already holds ``pending_cap`` undelivered messages."""

    default_reason = "PENDING_CAP"


class CodeSendLimitExceeded(ResourceExhausted):
    """A contact already had its quota of one-time codes in the window.

    Raised by ``Store.reserve_code_sends`` with metadata
    ``retry_after_seconds`` and ``limit``; the client sees it as is.
    """

    default_reason = "CONTACT_RATE_LIMITED"


class AttemptContended(StoreUnavailable):
    """An attempt reservation could not be decided under contention.

    Raised by the ``reserve_*attempt`` methods; nothing was compared, the
    reservation may or may not have been counted. Retry after a moment.
    """

    default_reason = "ATTEMPT_CONTENDED"

    def __init__(self, message: str, *, applied: bool | None = False) -> None:
        super().__init__(message, applied=applied)


def requester_bucket(requester: bytes, contact_hash: bytes) -> bytes:
    """The row key one requester's sends to one contact are counted under
    (``reserve_code_sends``): 32 bytes, like a contact hash, and as opaque
    (the requester is already a keyed tag)."""
    return hashlib.sha256(b"rossby/v1 code-sends requester\0" + requester + contact_hash).digest()


def code_send_buckets(
    contact_hashes: Sequence[bytes], limit: int, requester: bytes, requester_limit: int
) -> list[tuple[bytes, int]]:
    """Every (row key, limit) ``reserve_code_sends`` counts, in a stable
    order: each contact under ``limit``, then (with a requester) each
    requester share under ``requester_limit``. Both backends use it."""
    hashes = list(dict.fromkeys(contact_hashes))
    buckets = [(h, limit) for h in hashes]
    if requester and requester_limit > 0:
        buckets += [(requester_bucket(requester, h), requester_limit) for h in hashes]
    return buckets


def code_send_refusal(
    recent: Sequence[Sequence[float]],
    *,
    now: float,
    window: float,
    limit: int,
    limits: Sequence[int] | None = None,
) -> CodeSendLimitExceeded | None:
    """What ``reserve_code_sends`` raises, or None when every count has room.

    ``recent`` holds, per counted key, its send times after ``now - window``,
    newest first, at most that key's limit of them (both backends read them
    that way, so the bound is a LIMIT, not a scan); ``limits`` the limit per
    key (default ``limit`` for all). A key at its limit has room again once
    its limit-th newest send leaves the window.
    """
    per_key = list(limits) if limits is not None else [limit] * len(recent)
    refused = [
        (times[n - 1] + window - now, n)
        for times, n in zip(recent, per_key, strict=True)
        if len(times) >= n
    ]
    if not refused:
        return None
    wait, which = max(refused)
    return CodeSendLimitExceeded(
        f"a contact was sent {which} codes in the last {window:g} seconds; retry later",
        metadata={"retry_after_seconds": str(max(1, math.ceil(wait))), "limit": str(which)},
    )


class Store(abc.ABC):
    """The storage seam. Implementations stay terse; the contract is here.

    Use as an async context manager, or call ``close`` yourself.
    """

    options: StoreOptions

    #: Position units below a cursor that Fetch re-reads (see module doc).
    settle_window: Position = 0

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
        """Mark the device revoked: it leaves ``list_devices`` and its
        cursor no longer holds back compaction. Idempotent."""

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
        ``options.message_ttl`` seconds after it was queued, read or not.

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
        ``options.pending_cap`` messages not yet passed by every active
        device (a backend may also count passed ones awaiting compaction);
        nothing queued is ever dropped to make room. The cap is exact when
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
        the cursor". Expired messages are never returned. Of several copies
        of one message id (overlapping Send attempts, see ``enqueue``) only
        the lowest is returned; when that drops the last rows of a full
        read, ``Page.read_through`` says where the next page starts. Raises
        ``NotFound`` for an unknown or revoked device.
        """

    @abc.abstractmethod
    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        """Advance the device's cursor to ``through``; answer the cursor.

        Never moves backwards (concurrent acks keep the largest) and never
        past the queue head (an ack beyond the last position issued is
        clamped to it). Raises ``NotFound`` for an unknown or revoked device.
        """

    @abc.abstractmethod
    async def compact(self, box_id: uuid.UUID) -> Compaction:
        """Remove what every active device has passed.

        Deletes positions at or below ``min(active cursors) -
        settle_window`` with one range delete, never one delete per message.
        Safe to run concurrently and repeatedly.
        """

    @abc.abstractmethod
    async def pending_count(self, box_id: uuid.UUID) -> int:
        """Messages queued and not yet compacted or expired (capped at
        ``options.pending_cap + 1`` where counting is costly)."""

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

    # -- presence (real-time delivery hints) ------------------------------
    #
    # Not abstract so that wrappers and test doubles need not implement
    # them; every backend does. The server treats NotImplementedError as
    # "no presence": streams then rely on the in-process hub and the poll.

    async def put_presence(self, presence: Presence) -> None:
        """Create or refresh a presence row; it disappears by itself after
        ``presence.expires_at`` unless refreshed again."""
        raise NotImplementedError

    async def list_presence(self, box_id: uuid.UUID) -> list[Presence]:
        """The box's presence rows that have not expired (a small partition)."""
        raise NotImplementedError

    async def delete_presence(
        self, box_id: uuid.UUID, device_id: uuid.UUID, server_id: str
    ) -> None:
        """Drop one row (the process's last stream of the device ended).
        Idempotent."""
        raise NotImplementedError

    async def purge_presence(self) -> int:
        """Remove expired rows where the backend has no native TTL; answer
        rows removed."""
        return 0

    async def put_presences(self, presences: Sequence[Presence]) -> None:
        """``put_presence`` for many rows (a process refreshing all of its
        rows); a backend may write them in one transaction."""
        for presence in presences:
            await self.put_presence(presence)


__all__ = [
    "AttemptContended",
    "Box",
    "CodeSendLimitExceeded",
    "Compaction",
    "Device",
    "DeviceKeys",
    "DeviceState",
    "Enqueued",
    "NewMessage",
    "Page",
    "PendingCapExceeded",
    "Position",
    "Presence",
    "Profile",
    "Registration",
    "Store",
    "StoreOptions",
    "StoredMessage",
    "code_send_buckets",
    "code_send_refusal",
    "requester_bucket",
]
