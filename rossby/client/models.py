"""The values the SDK hands back: identities, contacts, send reports, events.

All frozen: an event that a UI stores and a later event must not share
mutable state. Box and device ids are ``uuid.UUID``; contacts are shown in
their normalized form (``alice@example.com``, ``+14155550100``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this device is, from local state only (no network)."""

    device_id: uuid.UUID
    device_name: str
    box_id: uuid.UUID | None  # None until the codes are verified
    contacts: tuple[str, ...]
    server: str
    hawk_address: str
    home_region: str | None
    authorized: bool


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: uuid.UUID
    name: str
    encryption_key: bytes
    signing_key: bytes
    this_device: bool = False

    @property
    def fingerprint(self) -> str:
        """Short hex of the two public keys, for telling devices apart in a list."""
        return (self.encryption_key[:4] + self.signing_key[:4]).hex()


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A box's device keys differ from the ones pinned for it.

    ``rekeyed`` devices kept their id but present new keys: the case a
    man-in-the-middle keystore produces. ``added`` devices can read every
    message sent to the box from now on; ``removed`` ones no longer can.
    ``previous_box`` is set when the contact now resolves to a different box
    altogether. The new keys ARE pinned after the change is reported (trust
    on first use, Signal-style): the warning is raised once per change, and
    the safety number shows whether the new keys are genuine.
    """

    box_id: uuid.UUID
    contact: str | None
    own_box: bool
    added: tuple[uuid.UUID, ...] = ()
    removed: tuple[uuid.UUID, ...] = ()
    rekeyed: tuple[uuid.UUID, ...] = ()
    previous_box: uuid.UUID | None = None

    def describe(self) -> str:
        who = "your own box" if self.own_box else (self.contact or f"box {self.box_id}")
        parts = []
        if self.previous_box is not None:
            parts.append(f"now resolves to box {self.box_id} (was {self.previous_box})")
        if self.rekeyed:
            parts.append(f"{len(self.rekeyed)} device(s) have NEW KEYS")
        if self.added:
            parts.append(f"{len(self.added)} device(s) were added")
        if self.removed:
            parts.append(f"{len(self.removed)} device(s) were removed")
        return (
            f"keys of {who} changed: {', '.join(parts)}; the safety number changed, "
            f"compare it again before trusting this conversation"
        )


class KeyChangeWarning(UserWarning):
    """Issued through ``warnings.warn`` for every ``KeyChange``.

    Library users who never look at ``SendReport.key_changes`` or the
    events of ``fetch_messages`` still see it; the CLI prints the change
    itself and silences this duplicate.
    """

    def __init__(self, change: KeyChange) -> None:
        super().__init__(change.describe())
        self.change = change


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """A box's public profile (``accept_from``: "anyone" or "contacts-only")."""

    display_name: str = ""
    description: str = ""
    avatar_ref: str = ""
    discoverable: bool = True
    accept_from: str = "anyone"


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """A contact resolved through the keystore, verified and pinned.

    ``key_log_seq`` is the head of the box's key log the keys were checked
    against (0: the box has no log).
    """

    contact: str
    box_id: uuid.UUID
    devices: tuple[DeviceInfo, ...]
    key_change: KeyChange | None = None
    profile: ProfileInfo | None = None
    key_log_seq: int = 0


@dataclass(frozen=True, slots=True)
class KeyLogRecord:
    """One verified entry of a box's key log."""

    seq: int
    kind: str  # "register" | "link" | "rotate" | "revoke" | "idle_unlink"
    device_id: uuid.UUID
    actor_device_id: uuid.UUID  # the nil UUID for "idle_unlink" (no actor)
    timestamp_ms: int
    encryption_key: bytes
    signing_key: bytes
    hash: bytes

    @property
    def fingerprint(self) -> str:
        return (self.encryption_key[:4] + self.signing_key[:4]).hex()

    def describe(self) -> str:
        d, a = str(self.device_id)[:8], str(self.actor_device_id)[:8]
        what = {
            "register": f"device {d} registered the box",
            "link": f"device {d} linked, approved by {a}",
            "rotate": f"device {d} rotated its keys",
            "revoke": f"device {d} revoked by {a}",
            "idle_unlink": f"device {d} unlinked by the server after being idle",
        }.get(self.kind, self.kind)
        return f"{what} (keys {self.fingerprint})"


@dataclass(frozen=True, slots=True)
class KeyLogView:
    """A box's whole key log, verified from its first entry."""

    box_id: uuid.UUID
    contact: str | None
    entries: tuple[KeyLogRecord, ...]

    @property
    def head(self) -> bytes:
        return self.entries[-1].hash if self.entries else b""


@dataclass(frozen=True, slots=True)
class LinkInvite:
    """A link offer this (old) device opened: show ``uri`` as a QR code or
    ``text`` for typing. ``mac_key`` never leaves the device."""

    offer_id: uuid.UUID
    passphrase: str = field(repr=False)
    uri: str = field(repr=False)
    text: str = field(repr=False)
    expires_at_ms: int = 0
    mac_key: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """The device that joined an offer and proved the passphrase."""

    offer_id: uuid.UUID
    device_id: uuid.UUID
    device_name: str
    encryption_key: bytes
    signing_key: bytes
    key_signature: bytes

    @property
    def fingerprint(self) -> str:
        return (self.encryption_key[:4] + self.signing_key[:4]).hex()


#: "ephemeral": handed to the devices streaming now, never stored (typing etc.).
Outcome = Literal["queued", "duplicate", "rejected", "ephemeral"]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient box's outcome. ``own_copy`` marks the sync copy to our box."""

    box_id: uuid.UUID
    contact: str | None
    outcome: Outcome
    position: int = 0
    code: int = 0  # google.rpc.Code for "rejected"
    reason: str = ""
    own_copy: bool = False


@dataclass(frozen=True, slots=True)
class SendReport:
    message_id: uuid.UUID
    sent_at_ms: int
    results: tuple[RecipientResult, ...]
    key_changes: tuple[KeyChange, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.outcome != "rejected" for r in self.results)


@dataclass(frozen=True, slots=True)
class RegistrationStarted:
    contacts: tuple[str, ...]
    code_ttl_seconds: int


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message whose signature verified and whose body decrypted.

    ``outgoing`` is True for the sync copy of a message another device of
    this box sent; ``recipients`` then lists where it went. ``sent_at_ms`` is
    the sender's clock (signed), ``received_at_ms`` the server's.
    ``expires_at_ms`` is when the server stops handing it out (the sender's
    ``expire_after``, else the server's message_ttl; 0 if the server did not
    say): a client may drop its own copy then too.
    """

    message_id: uuid.UUID
    position: int
    sender_box: uuid.UUID
    sender_device: uuid.UUID
    sender_contact: str | None
    sender_device_name: str
    outgoing: bool
    recipient_box: uuid.UUID
    recipients: tuple[uuid.UUID, ...]
    sent_at_ms: int
    received_at_ms: int
    kind: str
    body: bytes
    text: str | None
    expires_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message that failed verification or decryption; it was acked anyway.

    The sender fields are what the server reported, i.e. which device's
    Hawk credentials sent it; nothing inside the message is trusted.
    """

    message_id: str
    position: int
    sender_box: str
    sender_device: str
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message from a box we know no contact for; kept locally until we do.

    Resolving the sender (``resolve``, ``send`` or ``safety_number`` with
    their contact) lets the next ``fetch_messages`` open it.
    """

    message_id: str
    position: int
    sender_box: str
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class MessagesDropped:
    """The server dropped ``missed`` messages for this device: it fell more
    than the box's ``pending_cap`` behind the box's most advanced device,
    so its oldest messages (positions in (``after``, ``through``]) were
    skipped for it alone, to keep the box accepting mail. They cannot be
    fetched any more: tell the user, and ask the senders to resend (or
    resync from another device of the box). Yielded before the messages
    after the gap, by ``fetch_messages`` and ``listen``; the server reports
    it until the client acks past ``through``, which both do once yielded.
    """

    missed: int
    after: int
    through: int


Event = ReceivedMessage | RejectedMessage | HeldMessage | KeyChange | MessagesDropped


@dataclass(slots=True)
class FetchStats:
    """Counters over the client's lifetime; the CLI prints them after a fetch."""

    received: int = 0
    rejected: int = 0
    duplicates: int = 0
    held: int = 0
    acked_through: int = 0


@dataclass(frozen=True, slots=True)
class PrekeyStatusInfo:
    """The server's count of this device's published prekeys (``GetPrekeyStatus``).

    ``low``: a pool is below the server's ``low_water`` (in some region), or
    the signed or last-resort prekey is missing; the SDK refills on its own
    when a fetch or a stream says so.
    """

    one_time: int
    one_time_kem: int
    signed_prekey_id: int
    signed_uploaded_at_ms: int
    last_resort_id: int
    low: bool
    low_water: int
    pool_max: int


__all__ = [
    "ContactInfo",
    "DeviceInfo",
    "Event",
    "FetchStats",
    "HeldMessage",
    "Identity",
    "KeyChange",
    "KeyChangeWarning",
    "KeyLogRecord",
    "KeyLogView",
    "LinkInvite",
    "LinkRequest",
    "Outcome",
    "PrekeyStatusInfo",
    "ProfileInfo",
    "ReceivedMessage",
    "RecipientResult",
    "RegistrationStarted",
    "RejectedMessage",
    "SendReport",
]
