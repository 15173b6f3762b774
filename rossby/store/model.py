"""The records the store contract speaks in, its options and its own errors.

Plain frozen dataclasses, shared by the contract (``rossby.store.contract``),
both backends and the server, so none of them depends on another for a type.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    #: When the device last made a signed call, as recorded (coarsely, see
    #: ``Store.record_device_seen``); a new device is seen at its creation.
    #: None for a device from before the column existed: the server starts
    #: its idle clock the first time it looks (``rossby.server.idle``).
    last_seen: float | None = None


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
    #: Disappearing messages: seconds after queueing when the store stops
    #: handing it out, capped at ``options.message_ttl`` (0: message_ttl).
    #: The sender's own timer is inside the ciphertext; this is the server's
    #: copy of it, so an unread message does not sit here for a month.
    expire_after: float = 0.0

    def lifetime(self, message_ttl: float) -> float:
        """Seconds this message lives in a store whose TTL is ``message_ttl``."""
        if self.expire_after <= 0:
            return message_ttl
        return min(self.expire_after, message_ttl)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    position: Position
    message_id: uuid.UUID
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    received_at: float  # Unix seconds, server receive time
    ciphertext: bytes
    #: Unix seconds; never handed out at or after this (received_at plus
    #: the message's lifetime, ``NewMessage.lifetime``).
    expires_at: float


@dataclass(frozen=True, slots=True)
class Enqueued:
    position: Position
    duplicate: bool  # True when an earlier attempt already queued this id


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages dropped for one device because it fell more than
    ``pending_cap`` behind (``rossby.store.overflow``): ``missed`` of them,
    at positions in (``after``, ``through``]. Recorded with the cursor move
    that dropped them, so it is reported until the device acks at or above
    ``through``, whatever crashes in between."""

    missed: int
    after: Position
    through: Position


@dataclass(frozen=True, slots=True)
class Page:
    messages: Sequence[StoredMessage]
    more: bool  # more messages wait after the last one returned
    cursor: Position  # the device's stored cursor
    #: Set when the backend read past the last message returned (it dropped
    #: later copies of an id, see ``Store.fetch``): the next page starts
    #: after this position instead.
    read_through: Position = 0
    #: The highest position a sweep may ack when this page was its first
    #: (``None``: no limit). A sweep pages with ``after``, so a message that
    #: lands below a page already read is skipped for the rest of the sweep
    #: and only the next sweep's re-read below the cursor delivers it; an
    #: ack past this limit could start that re-read above it (docs/store.md,
    #: "Long sweeps"). Acking ``min(highest seen, first page's ack_limit)``
    #: only repeats messages.
    ack_limit: Position | None = None
    #: The device's recorded overflow gap, when this page starts at or below
    #: its ``through`` (a page further on is past it).
    gap: Gap | None = None
    #: Messages this very call dropped for the device (0 almost always):
    #: what the server's overflow counter adds, counted once, not once per
    #: report of the gap.
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Compaction:
    purged_through: Position  # everything at or below is gone
    removed: int | None  # rows removed by this call, when the backend knows
    #: Messages dropped by this call for devices over the cap (their gaps).
    dropped: int = 0


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
    """The box already holds ``pending_cap`` messages its most advanced
    device has not acknowledged (devices further behind overflow instead,
    ``rossby.store.overflow``)."""

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


__all__ = [
    "AttemptContended",
    "Box",
    "CodeSendLimitExceeded",
    "Compaction",
    "Connection",
    "Device",
    "DeviceKeys",
    "DeviceState",
    "Enqueued",
    "Gap",
    "NewMessage",
    "Page",
    "PendingCapExceeded",
    "Position",
    "Presence",
    "Profile",
    "Registration",
    "StoreOptions",
    "StoredMessage",
]
