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
        return None if row is None else _u(row[0])

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
            return _u(owner[0])

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
            device_id=_u(row[0]),
            box_id=_u(row[1]),
            contact_hashes=_unpack(row[2]),
            code_hashes=_unpack(row[3]),
            keys=DeviceKeys(encryption_key=row[4], signing_key=row[5], key_signature=row[6]),
            device_name=row[7],
            created_at=row[8],
            expires_at=row[9],
            sent_at=row[10],
            attempts=row[11],
            completed=bool(row[12]),
        )

    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = _row(
                conn,
                "SELECT attempts, expires_at FROM registrations"
                " WHERE device_id = ? AND purge_at > ?",
                (_b(device_id), self._now()),
            )
            if row is None or row[1] != expires_at:
                raise NotFound(f"no such pending registration for device {device_id}")
            if int(row[0]) >= limit:
                return 0
            # Under the write lock: the read and this update are one step.
            conn.execute(
                "UPDATE registrations SET attempts = attempts + 1 WHERE device_id = ?",
                (_b(device_id),),
            )
            return int(row[0]) + 1

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
