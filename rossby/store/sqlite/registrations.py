"""Contacts (contact hash -> box) and pending registrations on SQLite:
a mixin of ``SqliteStore``. Each call is one statement or one write
transaction under the database's write lock, so claims and attempt
reservations are exact across processes.
"""

from __future__ import annotations

import sqlite3
import uuid

from rossby.errors import NotFound
from rossby.store.model import DeviceKeys, Registration
from rossby.store.sqlite.rows import WorkerCalls, _b, _changes, _pack, _row, _u, _unpack


class SqliteRegistrations(WorkerCalls):
    """``lookup_contact`` ... ``complete_registration``."""

    # -- contacts ----------------------------------------------------------

    async def lookup_contact(self, contact_hash: bytes) -> uuid.UUID | None:
        row = await self._run(
            lambda conn: _row(
                conn, "SELECT box_id FROM contacts WHERE contact_hash = ?", (contact_hash,)
            )
        )
        return None if row is None else _u(row["box_id"])

    async def claim_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> uuid.UUID:
        def body(conn: sqlite3.Connection) -> uuid.UUID:
            conn.execute(
                "INSERT INTO contacts (contact_hash, box_id, claimed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (contact_hash) DO NOTHING",
                (contact_hash, _b(box_id), self._now()),
            )
            owner = _row(
                conn, "SELECT box_id FROM contacts WHERE contact_hash = ?", (contact_hash,)
            )
            return _u(owner["box_id"])

        return await self._write(body)

    async def release_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> None:
        await self._write(
            lambda conn: _changes(
                conn,
                "DELETE FROM contacts WHERE contact_hash = ? AND box_id = ?",
                (contact_hash, _b(box_id)),
            )
        )

    # -- registrations -----------------------------------------------------

    async def put_registration(self, registration: Registration) -> None:
        r = registration

        def body(conn: sqlite3.Connection) -> None:
            purge_at = min(r.expires_at, self._now() + self.options.registration_ttl)
            conn.execute(
                "INSERT OR REPLACE INTO registrations (device_id, box_id, contact_hashes,"
                " code_hashes, encryption_key, signing_key, key_signature, device_name,"
                " created_at, expires_at, purge_at, sent_at, attempts, completed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _b(r.device_id),
                    _b(r.box_id),
                    _pack(r.contact_hashes),
                    _pack(r.code_hashes),
                    r.keys.encryption_key,
                    r.keys.signing_key,
                    r.keys.key_signature,
                    r.device_name,
                    r.created_at,
                    r.expires_at,
                    purge_at,
                    r.sent_at,
                    r.attempts,
                    int(r.completed),
                ),
            )

        await self._write(body)

    async def get_registration(self, device_id: uuid.UUID) -> Registration | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                "SELECT device_id, box_id, contact_hashes, code_hashes, encryption_key,"
                " signing_key, key_signature, device_name, created_at, expires_at, sent_at,"
                " attempts, completed FROM registrations WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
        )
        if row is None:
            return None
        return Registration(
            device_id=_u(row["device_id"]),
            box_id=_u(row["box_id"]),
            contact_hashes=_unpack(row["contact_hashes"]),
            code_hashes=_unpack(row["code_hashes"]),
            keys=DeviceKeys(
                encryption_key=row["encryption_key"],
                signing_key=row["signing_key"],
                key_signature=row["key_signature"],
            ),
            device_name=row["device_name"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            sent_at=row["sent_at"],
            attempts=row["attempts"],
            completed=bool(row["completed"]),
        )

    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = _row(
                conn,
                "SELECT attempts, expires_at FROM registrations"
                " WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
            if row is None or row["expires_at"] != expires_at:
                raise NotFound(f"no such pending registration for device {device_id}")
            if int(row["attempts"]) >= limit:
                return 0
            # Under the write lock: the read and this update are one step.
            conn.execute(
                "UPDATE registrations SET attempts = attempts + 1 WHERE device_id = ?",
                (_b(device_id),),
            )
            return int(row["attempts"]) + 1

        return await self._write(body)

    async def complete_registration(self, device_id: uuid.UUID) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE registrations SET completed = 1 WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
            if not changed:
                raise NotFound(f"no pending registration for device {device_id}")

        await self._write(body)


__all__ = ["SqliteRegistrations"]
