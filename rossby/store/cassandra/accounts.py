"""``AccountStore`` on Cassandra: a mixin of ``CassandraStore``
(schema version 4, ``schema/0004_accounts.cql``).

Consistency, per table:

* ``key_log``: appended only by ``INSERT ... IF NOT EXISTS`` at SERIAL (the
  ``contacts`` profile, global like contact claims), so exactly one append
  wins each (box, seq) in every datacenter and the chain stays linear.
  Reads are plain reads at the store's level; a stale head only makes the
  next append lose its LWT and rebuild on the real head.
* ``link_offers`` and ``contact_challenges``: LWT-only rows (the
  ``registrations`` profile, SERIAL) with a TTL to ``keep_until``, like
  registrations: the attempt counters and the offer's state machine are
  compare-and-sets, and mixing plain writes into LWT rows would break
  their ordering. Every write re-applies the TTL that remains, so no cell
  outlives its row.
* ``box_contacts`` and ``sender_rules``: plain idempotent writes (``keys``).

Within one process, LWTs on one key queue on ``KeyedLocks`` first (see
``locks.py``); Paxos only arbitrates between processes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.errors import NotFound
from rossby.store.accounts import (
    CHALLENGE_COLUMNS,
    KEY_LOG_COLUMNS,
    LINK_OFFER_COLUMNS,
    AccountStore,
    ContactChallenge,
    KeyLogEntry,
    LinkOffer,
    LinkState,
    SenderRule,
)
from rossby.store.base import StoreOptions
from rossby.store.cassandra.attempts import insert_or_replace, reserve_counter
from rossby.store.cassandra.config import CONTACTS, KEYS, REGISTRATIONS

if TYPE_CHECKING:
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge
    from rossby.store.cassandra.locks import KeyedLocks

APPLIED = "[applied]"
CAS_ROUNDS = 64
MAX_RULES = 10_000

_LOG_COLUMNS = KEY_LOG_COLUMNS
_OFFER_COLUMNS = LINK_OFFER_COLUMNS
_CHALLENGE_COLUMNS = CHALLENGE_COLUMNS


def _entry(row: dict[str, Any]) -> KeyLogEntry:
    return KeyLogEntry(
        box_id=row["box_id"],
        seq=int(row["seq"]),
        prev_hash=row["prev_hash"] or b"",
        hash=row["hash"] or b"",
        timestamp_ms=int(row["timestamp_ms"] or 0),
        kind=row["kind"] or "",
        device_id=row["device_id"],
        actor_device_id=row["actor_device_id"],
        encryption_key=row["encryption_key"] or b"",
        signing_key=row["signing_key"] or b"",
        signature=row["signature"] or b"",
    )


def _offer(row: dict[str, Any]) -> LinkOffer:
    return LinkOffer(
        offer_id=row["offer_id"],
        box_id=row["box_id"],
        creator_device_id=row["creator_device_id"],
        verifier=row["verifier"] or b"",
        created_at=row["created_at"] or 0.0,
        expires_at=row["expires_at"] or 0.0,
        keep_until=row["keep_until"] or 0.0,
        attempts=int(row["attempts"] or 0),
        state=LinkState(row["state"] or LinkState.OPEN.value),
        device_id=row["device_id"],
        device_name=row["device_name"] or "",
        encryption_key=row["encryption_key"] or b"",
        signing_key=row["signing_key"] or b"",
        key_signature=row["key_signature"] or b"",
        join_mac=row["join_mac"] or b"",
        approver_device_id=row["approver_device_id"],
        approval_signature=row["approval_signature"] or b"",
        confirm=row["confirm"] or b"",
        sealed_credentials=row["sealed_credentials"] or b"",
    )


def _challenge(row: dict[str, Any]) -> ContactChallenge:
    return ContactChallenge(
        box_id=row["box_id"],
        contact_hash=row["contact_hash"],
        code_hash=row["code_hash"] or b"",
        sent_at=row["sent_at"] or 0.0,
        expires_at=row["expires_at"] or 0.0,
        keep_until=row["keep_until"] or 0.0,
        attempts=int(row["attempts"] or 0),
    )


class CassandraAccounts(AccountStore):
    """Mixed into ``CassandraStore``, which provides the plumbing below."""

    if TYPE_CHECKING:
        options: StoreOptions
        _db: Bridge
        _settings: Settings
        _locks: KeyedLocks

    async def _acc(self, cql: str, params: Sequence[Any], profile: str) -> list[Any]:
        return await self._db.execute(
            cql.replace("{ks}", self._settings.keyspace), params, profile=profile
        )

    async def _account_lwt(self, cql: str, params: Sequence[Any]) -> list[Any]:
        """An LWT on a row of link offers or contact challenges (SERIAL)."""
        return await self._acc(cql, params, REGISTRATIONS)

    def _ttl(self, keep_until: float) -> int:
        return max(1, math.ceil(keep_until - self.options.clock()))

    def _live(self, keep_until: float | None) -> bool:
        return keep_until is not None and keep_until > self.options.clock()

    # -- key log -------------------------------------------------------------

    async def key_log(
        self, box_id: uuid.UUID, *, after: int = 0, limit: int = 1000
    ) -> list[KeyLogEntry]:
        if limit <= 0:
            return []
        rows = await self._acc(
            f"SELECT {_LOG_COLUMNS} FROM {{ks}}.key_log WHERE box_id = ? AND seq > ? LIMIT ?",
            (box_id, after, limit),
            CONTACTS,
        )
        return [_entry(r) for r in rows]

    async def key_log_head(self, box_id: uuid.UUID) -> KeyLogEntry | None:
        rows = await self._acc(
            f"SELECT {_LOG_COLUMNS} FROM {{ks}}.key_log WHERE box_id = ? ORDER BY seq DESC LIMIT 1",
            (box_id,),
            CONTACTS,
        )
        return _entry(rows[0]) if rows else None

    async def append_key_log(self, entry: KeyLogEntry) -> bool:
        e = entry
        async with self._locks.hold(("key_log", e.box_id)):
            rows = await self._acc(
                f"INSERT INTO {{ks}}.key_log ({_LOG_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                (
                    e.box_id,
                    e.seq,
                    e.prev_hash,
                    e.hash,
                    e.timestamp_ms,
                    e.kind,
                    e.device_id,
                    e.actor_device_id,
                    e.encryption_key,
                    e.signing_key,
                    e.signature,
                ),
                CONTACTS,
            )
        return bool(rows[0][APPLIED])

    # -- link offers -----------------------------------------------------------

    async def create_link_offer(self, offer: LinkOffer) -> LinkOffer:
        o = offer
        async with self._locks.hold(("link", o.offer_id)):
            rows = await self._acc(
                "INSERT INTO {ks}.link_offers (offer_id, box_id, creator_device_id, verifier,"
                " created_at, expires_at, keep_until, attempts, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) IF NOT EXISTS USING TTL ?",
                (
                    o.offer_id,
                    o.box_id,
                    o.creator_device_id,
                    o.verifier,
                    o.created_at,
                    o.expires_at,
                    o.keep_until,
                    LinkState.OPEN.value,
                    self._ttl(o.keep_until),
                ),
                REGISTRATIONS,
            )
        row = rows[0]
        if row[APPLIED]:
            return o
        return _offer(row)

    async def get_link_offer(self, offer_id: uuid.UUID) -> LinkOffer | None:
        rows = await self._acc(
            f"SELECT {_OFFER_COLUMNS} FROM {{ks}}.link_offers WHERE offer_id = ?",
            (offer_id,),
            REGISTRATIONS,
        )
        if not rows or rows[0]["box_id"] is None or not self._live(rows[0]["keep_until"]):
            return None
        return _offer(rows[0])

    async def reserve_link_attempt(self, offer_id: uuid.UUID, *, limit: int) -> int:
        async with self._locks.hold(("link", offer_id)):
            current = await self.get_link_offer(offer_id)
            if current is None:
                raise NotFound("no such link offer")
            return await reserve_counter(
                self._account_lwt,
                "UPDATE {ks}.link_offers USING TTL ? SET attempts = ? WHERE offer_id = ?"
                " IF attempts = ? AND keep_until = ?",
                (offer_id,),
                attempts=current.attempts,
                version=current.keep_until,
                ttl=self._ttl,
                limit=limit,
                version_column="keep_until",
                what="link offer",
                live=self._live,
            )

    async def transition_link_offer(self, offer: LinkOffer, expected: LinkState) -> bool:
        o = offer
        async with self._locks.hold(("link", o.offer_id)):
            rows = await self._acc(
                "UPDATE {ks}.link_offers USING TTL ? SET state = ?, device_id = ?,"
                " device_name = ?, encryption_key = ?, signing_key = ?, key_signature = ?,"
                " join_mac = ?, approver_device_id = ?, approval_signature = ?, confirm = ?,"
                " sealed_credentials = ? WHERE offer_id = ? IF state = ?",
                (
                    self._ttl(o.keep_until),
                    o.state.value,
                    o.device_id,
                    o.device_name,
                    o.encryption_key,
                    o.signing_key,
                    o.key_signature,
                    o.join_mac,
                    o.approver_device_id,
                    o.approval_signature,
                    o.confirm,
                    o.sealed_credentials,
                    o.offer_id,
                    expected.value,
                ),
                REGISTRATIONS,
            )
        return bool(rows[0][APPLIED])

    # -- a box's contacts ----------------------------------------------------

    async def box_contacts(self, box_id: uuid.UUID) -> list[bytes]:
        rows = await self._acc(
            "SELECT contact_hash, added_at FROM {ks}.box_contacts WHERE box_id = ? LIMIT 1000",
            (box_id,),
            KEYS,
        )
        ordered = sorted(rows, key=lambda r: (r["added_at"] or 0.0, r["contact_hash"]))
        return [bytes(r["contact_hash"]) for r in ordered]

    async def add_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        await self._acc(
            "INSERT INTO {ks}.box_contacts (box_id, contact_hash, added_at) VALUES (?, ?, ?)",
            (box_id, contact_hash, self.options.clock()),
            KEYS,
        )

    async def remove_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        await self._acc(
            "DELETE FROM {ks}.box_contacts WHERE box_id = ? AND contact_hash = ?",
            (box_id, contact_hash),
            KEYS,
        )

    # -- contact challenges ------------------------------------------------

    async def put_contact_challenge(self, challenge: ContactChallenge) -> None:
        c = challenge
        values = (c.code_hash, c.sent_at, c.expires_at, c.keep_until, c.attempts)
        ttl = self._ttl(c.keep_until)
        async with self._locks.hold(("challenge", c.box_id, c.contact_hash)):
            await insert_or_replace(
                self._account_lwt,
                (
                    f"INSERT INTO {{ks}}.contact_challenges ({_CHALLENGE_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
                    (c.box_id, c.contact_hash, *values, ttl),
                ),
                (
                    "UPDATE {ks}.contact_challenges USING TTL ? SET code_hash = ?, sent_at = ?,"
                    " expires_at = ?, keep_until = ?, attempts = ?"
                    " WHERE box_id = ? AND contact_hash = ? IF EXISTS",
                    (ttl, *values, c.box_id, c.contact_hash),
                ),
                rounds=CAS_ROUNDS,
                contended="store: contact challenge kept changing",
            )

    async def get_contact_challenge(
        self, box_id: uuid.UUID, contact_hash: bytes
    ) -> ContactChallenge | None:
        rows = await self._acc(
            f"SELECT {_CHALLENGE_COLUMNS} FROM {{ks}}.contact_challenges"
            " WHERE box_id = ? AND contact_hash = ?",
            (box_id, contact_hash),
            REGISTRATIONS,
        )
        if not rows or rows[0]["code_hash"] is None or not self._live(rows[0]["keep_until"]):
            return None
        return _challenge(rows[0])

    async def reserve_contact_attempt(
        self, box_id: uuid.UUID, contact_hash: bytes, *, sent_at: float, limit: int
    ) -> int:
        async with self._locks.hold(("challenge", box_id, contact_hash)):
            current = await self.get_contact_challenge(box_id, contact_hash)
            if current is None or current.sent_at != sent_at:
                raise NotFound("no such contact challenge")
            keep = current.keep_until
            # Conditioned on sent_at too: a resend in between resets the
            # counter, and this code belongs to the old one.
            return await reserve_counter(
                self._account_lwt,
                "UPDATE {ks}.contact_challenges USING TTL ? SET attempts = ?"
                " WHERE box_id = ? AND contact_hash = ? IF attempts = ? AND sent_at = ?",
                (box_id, contact_hash),
                attempts=current.attempts,
                version=sent_at,
                ttl=lambda _sent: self._ttl(keep),
                limit=limit,
                version_column="sent_at",
                what="contact challenge",
                live=lambda _sent: self._live(keep),
            )

    async def delete_contact_challenge(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        async with self._locks.hold(("challenge", box_id, contact_hash)):
            await self._acc(
                "DELETE FROM {ks}.contact_challenges WHERE box_id = ? AND contact_hash = ?"
                " IF EXISTS",
                (box_id, contact_hash),
                REGISTRATIONS,
            )

    # -- sender rules ----------------------------------------------------------

    async def set_sender_rule(
        self, box_id: uuid.UUID, other: uuid.UUID, rule: SenderRule | None
    ) -> None:
        if rule is None:
            await self._acc(
                "DELETE FROM {ks}.sender_rules WHERE box_id = ? AND other_id = ?",
                (box_id, other),
                KEYS,
            )
        else:
            await self._acc(
                "INSERT INTO {ks}.sender_rules (box_id, other_id, rule) VALUES (?, ?, ?)",
                (box_id, other, rule.value),
                KEYS,
            )

    async def get_sender_rule(self, box_id: uuid.UUID, other: uuid.UUID) -> SenderRule | None:
        rows = await self._acc(
            "SELECT rule FROM {ks}.sender_rules WHERE box_id = ? AND other_id = ?",
            (box_id, other),
            KEYS,
        )
        return SenderRule(rows[0]["rule"]) if rows and rows[0]["rule"] else None

    async def has_sender_rules(self, box_id: uuid.UUID) -> bool:
        rows = await self._acc(
            "SELECT other_id FROM {ks}.sender_rules WHERE box_id = ? LIMIT 1", (box_id,), KEYS
        )
        return bool(rows)

    async def list_sender_rules(self, box_id: uuid.UUID, rule: SenderRule) -> list[uuid.UUID]:
        rows = await self._acc(
            f"SELECT other_id, rule FROM {{ks}}.sender_rules WHERE box_id = ? LIMIT {MAX_RULES}",
            (box_id,),
            KEYS,
        )
        others = (r["other_id"] for r in rows if r["rule"] == rule.value)
        return sorted(others, key=lambda u: u.bytes)


__all__ = ["CassandraAccounts"]
