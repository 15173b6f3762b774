"""``AccountStore`` on SQLite: a mixin of ``SqliteStore``.

Runs on the store's worker thread through its ``_write`` (``BEGIN
IMMEDIATE``) and ``_run`` helpers, so every compare-and-set here is one
statement or one transaction under the database's write lock. Rows that
outlived their ``keep_until`` are removed a batch at a time by the writes
that create new ones (reads already ignore them).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

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
from rossby.store.sqlite.rows import _row, _rows

T = TypeVar("T")

#: Expired rows a creating write removes on the way.
SWEEP = 100

_LOG_COLUMNS = KEY_LOG_COLUMNS
_OFFER_COLUMNS = LINK_OFFER_COLUMNS
_CHALLENGE_COLUMNS = CHALLENGE_COLUMNS


def _b(value: uuid.UUID | None) -> bytes | None:
    return None if value is None else value.bytes


def _u(value: bytes | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(bytes=value)


def _uu(value: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=value)


def _entry(row: Any) -> KeyLogEntry:
    return KeyLogEntry(
        box_id=_uu(row["box_id"]),
        seq=int(row["seq"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        timestamp_ms=int(row["timestamp_ms"]),
        kind=row["kind"],
        device_id=_uu(row["device_id"]),
        actor_device_id=_uu(row["actor_device_id"]),
        encryption_key=row["encryption_key"],
        signing_key=row["signing_key"],
        signature=row["signature"],
    )


def _offer(row: Any) -> LinkOffer:
    return LinkOffer(
        offer_id=_uu(row["offer_id"]),
        box_id=_uu(row["box_id"]),
        creator_device_id=_uu(row["creator_device_id"]),
        verifier=row["verifier"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        keep_until=row["keep_until"],
        attempts=int(row["attempts"]),
        state=LinkState(row["state"]),
        device_id=_u(row["device_id"]),
        device_name=row["device_name"],
        encryption_key=row["encryption_key"],
        signing_key=row["signing_key"],
        key_signature=row["key_signature"],
        join_mac=row["join_mac"],
        approver_device_id=_u(row["approver_device_id"]),
        approval_signature=row["approval_signature"],
        confirm=row["confirm"],
        sealed_credentials=row["sealed_credentials"],
    )


def _challenge(row: Any) -> ContactChallenge:
    return ContactChallenge(
        box_id=_uu(row["box_id"]),
        contact_hash=row["contact_hash"],
        code_hash=row["code_hash"],
        sent_at=row["sent_at"],
        expires_at=row["expires_at"],
        keep_until=row["keep_until"],
        attempts=int(row["attempts"]),
    )


class SqliteAccounts(AccountStore):
    """Mixed into ``SqliteStore``, which provides the plumbing below."""

    if TYPE_CHECKING:

        async def _run(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...

        def _now(self) -> float: ...

    # -- key log -------------------------------------------------------------

    async def key_log(
        self, box_id: uuid.UUID, *, after: int = 0, limit: int = 1000
    ) -> list[KeyLogEntry]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                f"SELECT {_LOG_COLUMNS} FROM key_log WHERE box_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (box_id.bytes, after, max(limit, 0)),
            )
        )
        return [_entry(r) for r in rows]

    async def key_log_head(self, box_id: uuid.UUID) -> KeyLogEntry | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                f"SELECT {_LOG_COLUMNS} FROM key_log WHERE box_id = ? ORDER BY seq DESC LIMIT 1",
                (box_id.bytes,),
            )
        )
        return None if row is None else _entry(row)

    async def append_key_log(self, entry: KeyLogEntry) -> bool:
        e = entry

        def body(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"INSERT INTO key_log ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    e.box_id.bytes,
                    e.seq,
                    e.prev_hash,
                    e.hash,
                    e.timestamp_ms,
                    e.kind,
                    e.device_id.bytes,
                    e.actor_device_id.bytes,
                    e.encryption_key,
                    e.signing_key,
                    e.signature,
                ),
            )
            return cursor.rowcount == 1

        return await self._write(body)

    # -- link offers -----------------------------------------------------------

    async def create_link_offer(self, offer: LinkOffer) -> LinkOffer:
        o = offer

        def body(conn: sqlite3.Connection) -> LinkOffer:
            now = self._now()
            conn.execute(
                "DELETE FROM link_offers WHERE offer_id IN (SELECT offer_id FROM link_offers"
                " WHERE keep_until <= ? LIMIT ?)",
                (now, SWEEP),
            )
            conn.execute(
                "INSERT INTO link_offers (offer_id, box_id, creator_device_id, verifier,"
                " created_at, expires_at, keep_until, attempts, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
                (
                    o.offer_id.bytes,
                    o.box_id.bytes,
                    o.creator_device_id.bytes,
                    o.verifier,
                    o.created_at,
                    o.expires_at,
                    o.keep_until,
                    LinkState.OPEN.value,
                ),
            )
            row = _row(
                conn,
                f"SELECT {_OFFER_COLUMNS} FROM link_offers WHERE offer_id = ?",
                (o.offer_id.bytes,),
            )
            return _offer(row)

        return await self._write(body)

    async def get_link_offer(self, offer_id: uuid.UUID) -> LinkOffer | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                f"SELECT {_OFFER_COLUMNS} FROM link_offers WHERE offer_id = ? AND keep_until > ?",
                (offer_id.bytes, self._now()),
            )
        )
        return None if row is None else _offer(row)

    async def reserve_link_attempt(self, offer_id: uuid.UUID, *, limit: int) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = _row(
                conn,
                "SELECT attempts FROM link_offers WHERE offer_id = ? AND keep_until > ?",
                (offer_id.bytes, self._now()),
            )
            if row is None:
                raise NotFound("no such link offer")
            if int(row["attempts"]) >= limit:
                return 0
            conn.execute(
                "UPDATE link_offers SET attempts = attempts + 1 WHERE offer_id = ?",
                (offer_id.bytes,),
            )
            return int(row["attempts"]) + 1

        return await self._write(body)

    async def transition_link_offer(self, offer: LinkOffer, expected: LinkState) -> bool:
        o = offer

        def body(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE link_offers SET state = ?, device_id = ?, device_name = ?,"
                " encryption_key = ?, signing_key = ?, key_signature = ?, join_mac = ?,"
                " approver_device_id = ?, approval_signature = ?, confirm = ?,"
                " sealed_credentials = ? WHERE offer_id = ? AND state = ? AND keep_until > ?",
                (
                    o.state.value,
                    _b(o.device_id),
                    o.device_name,
                    o.encryption_key,
                    o.signing_key,
                    o.key_signature,
                    o.join_mac,
                    _b(o.approver_device_id),
                    o.approval_signature,
                    o.confirm,
                    o.sealed_credentials,
                    o.offer_id.bytes,
                    expected.value,
                    self._now(),
                ),
            )
            return cursor.rowcount == 1

        return await self._write(body)

    # -- a box's contacts ----------------------------------------------------

    async def box_contacts(self, box_id: uuid.UUID) -> list[bytes]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                "SELECT contact_hash FROM box_contacts WHERE box_id = ? ORDER BY added_at",
                (box_id.bytes,),
            )
        )
        return [bytes(r["contact_hash"]) for r in rows]

    async def add_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        await self._write(
            lambda conn: (
                conn.execute(
                    "INSERT INTO box_contacts (box_id, contact_hash, added_at) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (box_id.bytes, contact_hash, self._now()),
                ).rowcount
            )
        )

    async def remove_box_contact(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM box_contacts WHERE box_id = ? AND contact_hash = ?",
                    (box_id.bytes, contact_hash),
                ).rowcount
            )
        )

    # -- contact challenges ------------------------------------------------

    async def put_contact_challenge(self, challenge: ContactChallenge) -> None:
        c = challenge

        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM contact_challenges WHERE (box_id, contact_hash) IN"
                " (SELECT box_id, contact_hash FROM contact_challenges WHERE keep_until <= ?"
                " LIMIT ?)",
                (self._now(), SWEEP),
            )
            conn.execute(
                f"INSERT OR REPLACE INTO contact_challenges ({_CHALLENGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    c.box_id.bytes,
                    c.contact_hash,
                    c.code_hash,
                    c.sent_at,
                    c.expires_at,
                    c.keep_until,
                    c.attempts,
                ),
            )

        await self._write(body)

    async def get_contact_challenge(
        self, box_id: uuid.UUID, contact_hash: bytes
    ) -> ContactChallenge | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                f"SELECT {_CHALLENGE_COLUMNS} FROM contact_challenges"
                " WHERE box_id = ? AND contact_hash = ? AND keep_until > ?",
                (box_id.bytes, contact_hash, self._now()),
            )
        )
        return None if row is None else _challenge(row)

    async def reserve_contact_attempt(
        self, box_id: uuid.UUID, contact_hash: bytes, *, sent_at: float, limit: int
    ) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = _row(
                conn,
                "SELECT attempts, sent_at FROM contact_challenges"
                " WHERE box_id = ? AND contact_hash = ? AND keep_until > ?",
                (box_id.bytes, contact_hash, self._now()),
            )
            if row is None or row["sent_at"] != sent_at:
                raise NotFound("no such contact challenge")
            if int(row["attempts"]) >= limit:
                return 0
            conn.execute(
                "UPDATE contact_challenges SET attempts = attempts + 1"
                " WHERE box_id = ? AND contact_hash = ?",
                (box_id.bytes, contact_hash),
            )
            return int(row["attempts"]) + 1

        return await self._write(body)

    async def delete_contact_challenge(self, box_id: uuid.UUID, contact_hash: bytes) -> None:
        await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM contact_challenges WHERE box_id = ? AND contact_hash = ?",
                    (box_id.bytes, contact_hash),
                ).rowcount
            )
        )

    # -- sender rules ----------------------------------------------------------

    async def set_sender_rule(
        self, box_id: uuid.UUID, other: uuid.UUID, rule: SenderRule | None
    ) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if rule is None:
                conn.execute(
                    "DELETE FROM sender_rules WHERE box_id = ? AND other_id = ?",
                    (box_id.bytes, other.bytes),
                )
            else:
                conn.execute(
                    "INSERT INTO sender_rules (box_id, other_id, rule) VALUES (?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET rule = excluded.rule",
                    (box_id.bytes, other.bytes, rule.value),
                )

        await self._write(body)

    async def get_sender_rule(self, box_id: uuid.UUID, other: uuid.UUID) -> SenderRule | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                "SELECT rule FROM sender_rules WHERE box_id = ? AND other_id = ?",
                (box_id.bytes, other.bytes),
            )
        )
        return None if row is None else SenderRule(row["rule"])

    async def has_sender_rules(self, box_id: uuid.UUID) -> bool:
        row = await self._run(
            lambda conn: _row(
                conn, "SELECT 1 FROM sender_rules WHERE box_id = ? LIMIT 1", (box_id.bytes,)
            )
        )
        return row is not None

    async def list_sender_rules(self, box_id: uuid.UUID, rule: SenderRule) -> list[uuid.UUID]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                "SELECT other_id FROM sender_rules WHERE box_id = ? AND rule = ? ORDER BY other_id",
                (box_id.bytes, rule.value),
            )
        )
        return [_uu(r["other_id"]) for r in rows]


__all__ = ["SqliteAccounts"]
