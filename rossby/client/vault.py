"""The forward-secrecy half of ``state.bin``: prekey private halves and ratchet sessions.

Kept apart from ``rossby.client.state`` because these records change on
every message and have rules of their own: a one-time prekey private is
deleted the moment a session used it (what makes a captured first message
unreadable later), a retired signed or last-resort prekey is kept for a
grace period and then deleted, and a session is kept per (peer box, peer
device) with a few archived ones that may still decrypt but never encrypt.

Both documents are optional fields of the state JSON (``"prekeys"``,
``"sessions"``): a state file written before forward secrecy opens with an
empty vault and no sessions, and the device then publishes prekeys.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from rossby.crypto.errors import InvalidEnvelope
from rossby.crypto.pqxdh import InitialHeader

MAX_ARCHIVED = 3
"""Older sessions kept per peer device for decryption only: messages the
peer sent on a session before it learned of a newer one (two devices that
started sessions with each other at once, or a reset while messages were in
flight). Signal keeps a similar short list."""

SessionKey = tuple[uuid.UUID, uuid.UUID]
"""(peer box, peer device)."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True, slots=True)
class FirstContactKeys:
    """The privates a first message's PQXDH header names (PQXDH 3.4)."""

    signed: bytes = field(repr=False)
    one_time: bytes | None = field(repr=False)
    kem: bytes = field(repr=False)
    #: One-time key ids to delete once the message opened: (X25519 id, KEM id).
    one_time_id: int | None
    kem_one_time_id: int | None


@dataclass(slots=True)
class PrekeyVault:
    """The private halves of what this device published, by key id.

    Key ids come from one counter (``next_id``), so an id names one key of
    one kind and a header cannot make us use a signed prekey as a one-time
    one. ``retired`` holds ids that are no longer published (replaced signed
    and last-resort prekeys, pools dropped by an identity rotation) with the
    time they were retired: still usable by a first message already on its
    way, deleted once the grace period is over.
    """

    next_id: int = 1
    signed_id: int = 0
    last_resort_id: int = 0
    #: When the current signed and last-resort prekeys were made (ms).
    rotated_at_ms: int = 0
    signed: dict[int, bytes] = field(default_factory=dict)
    one_time: dict[int, bytes] = field(default_factory=dict)
    kem: dict[int, bytes] = field(default_factory=dict)
    last_resort: dict[int, bytes] = field(default_factory=dict)
    retired: dict[int, int] = field(default_factory=dict)

    def take_ids(self, count: int) -> int:
        """Reserve ``count`` fresh ids; answers the first."""
        first = self.next_id
        self.next_id += count
        return first

    def retire(self, key_id: int, at_ms: int) -> None:
        if key_id:
            self.retired.setdefault(key_id, at_ms)

    def purge(self, before_ms: int) -> int:
        """Delete every key retired before ``before_ms``; answers how many."""
        gone = [k for k, at in self.retired.items() if at < before_ms]
        for key_id in gone:
            for pool in (self.signed, self.one_time, self.kem, self.last_resort):
                pool.pop(key_id, None)
            del self.retired[key_id]
        return len(gone)

    def forget(self, ids: list[int]) -> None:
        """Drop keys that were generated but never published (a failed upload)."""
        for key_id in ids:
            for pool in (self.signed, self.one_time, self.kem, self.last_resort):
                pool.pop(key_id, None)
            self.retired.pop(key_id, None)

    def first_contact(self, header: InitialHeader) -> FirstContactKeys:
        """The privates ``header`` names; ``InvalidEnvelope`` when one is not here
        (spent: a replayed first message; retired and purged; or never ours)."""
        signed = self.signed.get(header.signed_prekey_id)
        kem_pool = self.last_resort if header.kem_last_resort else self.kem
        kem = kem_pool.get(header.kem_prekey_id)
        one_time: bytes | None = None
        if header.one_time_prekey_id is not None:
            one_time = self.one_time.get(header.one_time_prekey_id)
            if one_time is None:
                raise InvalidEnvelope
        if signed is None or kem is None:
            raise InvalidEnvelope
        return FirstContactKeys(
            signed=signed,
            one_time=one_time,
            kem=kem,
            one_time_id=header.one_time_prekey_id,
            kem_one_time_id=None if header.kem_last_resort else header.kem_prekey_id,
        )

    def spend(self, keys: FirstContactKeys) -> None:
        """Delete the one-time privates a first message used: once it opened, they
        are what a thief must not find (PQXDH 3.4)."""
        if keys.one_time_id is not None:
            self.one_time.pop(keys.one_time_id, None)
        if keys.kem_one_time_id is not None:
            self.kem.pop(keys.kem_one_time_id, None)

    def to_doc(self) -> dict[str, Any]:
        return {
            "next_id": self.next_id,
            "signed_id": self.signed_id,
            "last_resort_id": self.last_resort_id,
            "rotated_at_ms": self.rotated_at_ms,
            "signed": {str(k): b64(v) for k, v in self.signed.items()},
            "one_time": {str(k): b64(v) for k, v in self.one_time.items()},
            "kem": {str(k): b64(v) for k, v in self.kem.items()},
            "last_resort": {str(k): b64(v) for k, v in self.last_resort.items()},
            "retired": {str(k): v for k, v in self.retired.items()},
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> PrekeyVault:
        if doc is None:
            return cls()

        def pool(name: str) -> dict[int, bytes]:
            return {int(k): unb64(v) for k, v in doc.get(name, {}).items()}

        return cls(
            next_id=int(doc["next_id"]),
            signed_id=int(doc["signed_id"]),
            last_resort_id=int(doc["last_resort_id"]),
            rotated_at_ms=int(doc["rotated_at_ms"]),
            signed=pool("signed"),
            one_time=pool("one_time"),
            kem=pool("kem"),
            last_resort=pool("last_resort"),
            retired={int(k): int(v) for k, v in doc.get("retired", {}).items()},
        )


@dataclass(slots=True)
class SessionRecord:
    """One ratchet session with one peer device.

    ``ratchet`` is ``RatchetSession.to_json()``, which carries the PQXDH
    associated data the session binds into every message.

    ``peer_dh`` and ``peer_signing`` are the identity keys the session was
    agreed with: when the pinned keys differ, the peer rotated (or the
    keystore lies) and the session is reset. ``initial`` is the encoded
    PQXDH header this device sent when it started the session; it goes with
    every message until the peer's first message on the session arrives, so
    the peer can set the session up from whichever message it reads first.
    """

    ratchet: dict[str, Any]
    peer_dh: bytes
    peer_signing: bytes
    created_at_ms: int
    initial: bytes | None = None
    #: Our own identity DH key when the session was agreed: after we rotate,
    #: an older session may still decrypt but is never sent on again.
    own_dh: bytes = b""

    def to_doc(self) -> dict[str, Any]:
        return {
            "ratchet": self.ratchet,
            "peer_dh": b64(self.peer_dh),
            "peer_signing": b64(self.peer_signing),
            "created_at_ms": self.created_at_ms,
            "initial": None if self.initial is None else b64(self.initial),
            "own_dh": b64(self.own_dh),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SessionRecord:
        ratchet = doc["ratchet"]
        if not isinstance(ratchet, dict):
            raise ValueError("a ratchet state is a JSON object")
        initial = doc.get("initial")
        return cls(
            ratchet=ratchet,
            peer_dh=unb64(doc["peer_dh"]),
            peer_signing=unb64(doc["peer_signing"]),
            created_at_ms=int(doc["created_at_ms"]),
            initial=None if initial is None else unb64(initial),
            own_dh=unb64(doc.get("own_dh", "")),
        )


@dataclass(slots=True)
class DeviceSessions:
    """The sessions with one peer device: the one we send on, and archived ones."""

    current: SessionRecord | None = None
    archived: list[SessionRecord] = field(default_factory=list)

    def install(self, record: SessionRecord) -> None:
        """Make ``record`` current; the previous current one is archived."""
        if self.current is not None and self.current is not record:
            self.archive(self.current)
        if record in self.archived:
            self.archived.remove(record)
        self.current = record

    def archive(self, record: SessionRecord) -> None:
        if record is self.current:
            self.current = None
        if record not in self.archived:
            self.archived.insert(0, record)
        del self.archived[MAX_ARCHIVED:]

    def candidates(self) -> list[SessionRecord]:
        """Every session a message may be on, the current one first."""
        return [*([self.current] if self.current else []), *self.archived]

    def to_doc(self) -> dict[str, Any]:
        return {
            "current": None if self.current is None else self.current.to_doc(),
            "archived": [r.to_doc() for r in self.archived],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DeviceSessions:
        current = doc.get("current")
        return cls(
            current=None if current is None else SessionRecord.from_doc(current),
            archived=[SessionRecord.from_doc(r) for r in doc.get("archived", [])],
        )


def sessions_to_doc(sessions: dict[SessionKey, DeviceSessions]) -> dict[str, Any]:
    return {f"{box}.{device}": s.to_doc() for (box, device), s in sessions.items()}


def sessions_from_doc(doc: dict[str, Any] | None) -> dict[SessionKey, DeviceSessions]:
    out: dict[SessionKey, DeviceSessions] = {}
    for key, value in (doc or {}).items():
        box, _, device = str(key).partition(".")
        out[(uuid.UUID(box), uuid.UUID(device))] = DeviceSessions.from_doc(value)
    return out


__all__ = [
    "MAX_ARCHIVED",
    "DeviceSessions",
    "FirstContactKeys",
    "PrekeyVault",
    "SessionKey",
    "SessionRecord",
    "b64",
    "sessions_from_doc",
    "sessions_to_doc",
    "unb64",
]
