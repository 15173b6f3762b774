"""The storage contract for accounts: key log, link offers, a box's
contacts, contact challenges and sender rules.

A part of the one ``Store`` contract (``Store`` extends it), written apart
so its records and methods read together; the backends implement it in
``rossby.store.sqlite.accounts`` and ``rossby.store.cassandra.accounts``.
Every ``Store``, a wrapper such as ``MeteredStore`` included, is an
``AccountStore``, so account calls go through the wrapper like the others.

As with ``Store``, backends store what they are given (the server builds
entries, hashes and expiry times) and own atomicity: every method that says
"exactly one" or "compare-and-set" is linearizable across processes
(SQLite: the write lock; Cassandra: lightweight transactions).
"""

from __future__ import annotations

import abc
import enum
import uuid
from dataclasses import dataclass, fields


class LinkState(enum.StrEnum):
    OPEN = "open"
    JOINED = "joined"
    APPROVED = "approved"


class SenderRule(enum.StrEnum):
    BLOCKED = "blocked"
    ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class KeyLogEntry:
    """One entry of a box's key log, as built by the server (see
    ``rossby.crypto.keylog`` for the encoding ``hash`` covers)."""

    box_id: uuid.UUID
    seq: int  # 1, 2, 3, ... without gaps
    prev_hash: bytes  # 32 bytes; zeros for seq 1
    hash: bytes  # 32 bytes
    timestamp_ms: int
    kind: str  # "register" | "link" | "rotate" | "revoke" | "idle_unlink"
    device_id: uuid.UUID
    actor_device_id: uuid.UUID
    encryption_key: bytes
    signing_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class LinkOffer:
    """A device-link offer. The passphrase never reaches the server; the
    ``verifier`` lets it check proofs. Fields after ``state`` fill in as the
    offer moves OPEN -> JOINED -> APPROVED."""

    offer_id: uuid.UUID
    box_id: uuid.UUID
    creator_device_id: uuid.UUID
    verifier: bytes
    created_at: float
    expires_at: float  # the offer works until then
    keep_until: float  # the row is kept until then (so late calls hear "expired")
    attempts: int = 0
    state: LinkState = LinkState.OPEN
    device_id: uuid.UUID | None = None
    device_name: str = ""
    encryption_key: bytes = b""
    signing_key: bytes = b""
    key_signature: bytes = b""
    join_mac: bytes = b""
    approver_device_id: uuid.UUID | None = None
    approval_signature: bytes = b""
    confirm: bytes = b""
    sealed_credentials: bytes = b""


@dataclass(frozen=True, slots=True)
class ContactChallenge:
    """A code sent to a contact a box wants to add (keyed hash only)."""

    box_id: uuid.UUID
    contact_hash: bytes
    code_hash: bytes
    sent_at: float
    expires_at: float  # the code works until then
    keep_until: float
    attempts: int = 0


def _columns(record: type) -> str:
    return ", ".join(f.name for f in fields(record))


#: The columns each account record is stored in, on both backends: the
#: record's fields, in order (the schema files name them so).
KEY_LOG_COLUMNS = _columns(KeyLogEntry)
LINK_OFFER_COLUMNS = _columns(LinkOffer)
CHALLENGE_COLUMNS = _columns(ContactChallenge)


class AccountStore(abc.ABC):
    """Storage for the account RPCs. All methods may raise ``StoreUnavailable``."""

    # -- key log: (box, seq) -> entry; append-only ---------------------------

    @abc.abstractmethod
    async def key_log(
        self, box_id: uuid.UUID, *, after: int = 0, limit: int = 1000
    ) -> list[KeyLogEntry]:
        """Entries with ``seq > after``, ascending, at most ``limit``."""

    @abc.abstractmethod
    async def key_log_head(self, box_id: uuid.UUID) -> KeyLogEntry | None:
        """The entry with the highest seq, or None for an empty log."""

    @abc.abstractmethod
    async def append_key_log(self, entry: KeyLogEntry) -> bool:
        """Write ``entry`` if no entry holds its (box, seq); answer whether
        it was written. Exactly one of racing appends at one seq wins
        (Cassandra: ``INSERT ... IF NOT EXISTS`` at SERIAL), so the chain
        stays linear; a loser re-reads the head and builds on it. A retry
        of an append that did land answers False: callers compare the
        stored entry with theirs."""

    # -- link offers: offer id -> offer ------------------------------------

    @abc.abstractmethod
    async def create_link_offer(self, offer: LinkOffer) -> LinkOffer:
        """Store a new offer unless its id is taken; answer the stored one
        (the caller compares to learn whether it was theirs)."""

    @abc.abstractmethod
    async def get_link_offer(self, offer_id: uuid.UUID) -> LinkOffer | None:
        """The offer, until its ``keep_until``."""

    @abc.abstractmethod
    async def reserve_link_attempt(self, offer_id: uuid.UUID, *, limit: int) -> int:
        """Reserve one comparison of a link proof, before it is compared;
        answer its number (1 .. ``limit``) or 0 when none is left. Exact
        and raising like ``Store.reserve_attempt`` (``AttemptContended``);
        ``NotFound`` without an offer."""

    @abc.abstractmethod
    async def transition_link_offer(self, offer: LinkOffer, expected: LinkState) -> bool:
        """Compare-and-set: if the stored offer is in state ``expected``,
        write ``offer``'s state and its join and approval fields (never
        ``attempts``); answer whether it applied."""

    # -- a box's contacts (keyed hashes) -----------------------------------

    @abc.abstractmethod
    async def box_contacts(self, box_id: uuid.UUID) -> list[bytes]:
        """The contact hashes recorded for the box."""

    @abc.abstractmethod
    async def add_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        """Record a contact the box claimed. Idempotent."""

    @abc.abstractmethod
    async def remove_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        """Forget a contact of the box. Idempotent."""

    # -- contact challenges: (box, contact hash) -> code --------------------

    @abc.abstractmethod
    async def put_contact_challenge(self, challenge: ContactChallenge) -> None:
        """Create or replace the challenge (a resend)."""

    @abc.abstractmethod
    async def get_contact_challenge(
        self, box_id: uuid.UUID, contact_hash: bytes
    ) -> ContactChallenge | None:
        """The challenge, until its ``keep_until``."""

    @abc.abstractmethod
    async def reserve_contact_attempt(
        self, box_id: uuid.UUID, contact_hash: bytes, *, sent_at: float, limit: int
    ) -> int:
        """Reserve one comparison of the code sent at ``sent_at``, before it
        is compared; like ``Store.reserve_attempt``, with ``NotFound`` when
        there is no challenge or a newer one (a resend)."""

    @abc.abstractmethod
    async def delete_contact_challenge(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        """Drop the challenge (after success). Idempotent."""

    # -- sender rules: (box, other box) -> blocked | accepted -----------------

    @abc.abstractmethod
    async def set_sender_rule(
        self, box_id: uuid.UUID, other: uuid.UUID, rule: SenderRule | None
    ) -> None:
        """Set or (with None) clear the rule ``box_id`` holds about ``other``."""

    @abc.abstractmethod
    async def get_sender_rule(self, box_id: uuid.UUID, other: uuid.UUID) -> SenderRule | None:
        """The rule ``box_id`` holds about ``other``."""

    @abc.abstractmethod
    async def list_sender_rules(self, box_id: uuid.UUID, rule: SenderRule) -> list[uuid.UUID]:
        """Every box ``box_id`` holds ``rule`` about."""

    @abc.abstractmethod
    async def has_sender_rules(self, box_id: uuid.UUID) -> bool:
        """Whether ``box_id`` holds any rule at all: one row read at most.

        Most boxes hold none, and then the Send path can decide for every
        sender from the profile alone (``rossby.server.authcache``).
        """


__all__ = [
    "CHALLENGE_COLUMNS",
    "KEY_LOG_COLUMNS",
    "LINK_OFFER_COLUMNS",
    "AccountStore",
    "ContactChallenge",
    "KeyLogEntry",
    "LinkOffer",
    "LinkState",
    "SenderRule",
]
