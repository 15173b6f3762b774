"""Boxes, devices (the keystore) and profiles on SQLite: a mixin of
``SqliteStore``. A device is inserted with its cursor in one transaction,
so none exists without the other.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from rossby.errors import AlreadyExists, NotFound
from rossby.store.model import Box, Device, DeviceKeys, DeviceState, Position, Profile
from rossby.store.sqlite.pushtargets import delete_device_target
from rossby.store.sqlite.rows import WorkerCalls, _b, _changes, _row, _rows, _u

_DEVICE_COLUMNS = (
    "box_id, device_id, name, encryption_key, signing_key, key_signature, hawk_key, state,"
    " created_at, last_seen"
)


def _device(row: Any) -> Device:
    return Device(
        box_id=_u(row["box_id"]),
        device_id=_u(row["device_id"]),
        name=row["name"],
        keys=DeviceKeys(
            encryption_key=row["encryption_key"],
            signing_key=row["signing_key"],
            key_signature=row["key_signature"],
        ),
        hawk_key=row["hawk_key"],
        state=DeviceState(row["state"]),
        created_at=row["created_at"],
        last_seen=row["last_seen"],
    )


def _insert_device(conn: sqlite3.Connection, device: Device, start: Position) -> bool:
    """Insert an active device and its cursor at ``start``; False if the
    device already exists (left untouched, so a retry cannot reset its
    cursor or bring a revoked device back)."""
    inserted = _changes(
        conn,
        "INSERT INTO devices (box_id, device_id, name, encryption_key, signing_key,"
        " key_signature, hawk_key, state, created_at, start_position, last_seen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            _b(device.box_id),
            _b(device.device_id),
            device.name,
            device.keys.encryption_key,
            device.keys.signing_key,
            device.keys.key_signature,
            device.hawk_key,
            DeviceState.ACTIVE.value,
            device.created_at,
            start,
            device.created_at if device.last_seen is None else device.last_seen,
        ),
    )
    if inserted:
        conn.execute(
            "INSERT INTO cursors (box_id, device_id, cursor) VALUES (?, ?, ?)"
            " ON CONFLICT DO UPDATE SET cursor = excluded.cursor",
            (_b(device.box_id), _b(device.device_id), start),
        )
    return bool(inserted)


class SqliteDevices(WorkerCalls):
    """``create_box`` ... ``put_profile``."""

    # -- boxes, devices, profiles ------------------------------------------

    async def create_box(self, box: Box, first_device: Device) -> None:
        def body(conn: sqlite3.Connection) -> None:
            bid = _b(box.box_id)
            if _row(conn, "SELECT 1 FROM boxes WHERE box_id = ?", (bid,)) is not None:
                if _row(
                    conn,
                    "SELECT 1 FROM devices WHERE box_id = ? AND device_id = ?",
                    (bid, _b(first_device.device_id)),
                ):
                    return  # a retry: everything is already in place
                raise AlreadyExists(f"box {box.box_id} exists with another first device")
            conn.execute(
                "INSERT INTO boxes (box_id, home_region, created_at) VALUES (?, ?, ?)",
                (bid, box.home_region, box.created_at),
            )
            conn.execute(
                "INSERT INTO queues (box_id, head, purged_through) VALUES (?, 0, 0)", (bid,)
            )
            _insert_device(conn, first_device, 0)
            defaults = Profile(box_id=box.box_id)
            conn.execute(
                "INSERT INTO profiles (box_id, display_name, description, avatar_ref,"
                " discoverable, accept_from) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    bid,
                    defaults.display_name,
                    defaults.description,
                    defaults.avatar_ref,
                    int(defaults.discoverable),
                    defaults.accept_from,
                ),
            )

        await self._write(body)

    async def get_box(self, box_id: uuid.UUID) -> Box | None:
        row = await self._run(
            lambda conn: _row(
                conn, "SELECT home_region, created_at FROM boxes WHERE box_id = ?", (_b(box_id),)
            )
        )
        if row is None:
            return None
        return Box(box_id=box_id, home_region=row["home_region"], created_at=row["created_at"])

    async def add_device(self, device: Device) -> None:
        def body(conn: sqlite3.Connection) -> None:
            queue = _row(conn, "SELECT head FROM queues WHERE box_id = ?", (_b(device.box_id),))
            if queue is None:
                raise NotFound(f"no box {device.box_id}")
            _insert_device(conn, device, queue["head"])

        await self._write(body)

    async def get_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE box_id = ? AND device_id = ?",
                (_b(box_id), _b(device_id)),
            )
        )
        return None if row is None else _device(row)

    async def list_devices(self, box_id: uuid.UUID) -> list[Device]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE box_id = ? AND state = ?"
                " ORDER BY created_at, rowid",
                (_b(box_id), DeviceState.ACTIVE.value),
            )
        )
        return [_device(row) for row in rows]

    async def rotate_device_keys(
        self, box_id: uuid.UUID, device_id: uuid.UUID, keys: DeviceKeys
    ) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE devices SET encryption_key = ?, signing_key = ?, key_signature = ?"
                " WHERE box_id = ? AND device_id = ? AND state = ?",
                (
                    keys.encryption_key,
                    keys.signing_key,
                    keys.key_signature,
                    _b(box_id),
                    _b(device_id),
                    DeviceState.ACTIVE.value,
                ),
            )
            if not changed:
                raise NotFound(f"no active device {device_id} in box {box_id}")

        await self._write(body)

    async def set_hawk_key(self, box_id: uuid.UUID, device_id: uuid.UUID, hawk_key: bytes) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE devices SET hawk_key = ? WHERE box_id = ? AND device_id = ?",
                (hawk_key, _b(box_id), _b(device_id)),
            )
            if not changed:
                raise NotFound(f"no device {device_id} in box {box_id}")

        await self._write(body)

    async def device_page(
        self, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
    ) -> list[Device]:
        # The primary key's order: a keyset page, no OFFSET to rescan.
        if after is None:
            sql = f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY box_id, device_id LIMIT ?"
            params: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE (box_id, device_id) > (?, ?)"
                " ORDER BY box_id, device_id LIMIT ?"
            )
            params = (_b(after[0]), _b(after[1]), limit)
        rows = await self._run(lambda conn: _rows(conn, sql, params))
        return [_device(row) for row in rows]

    async def revoke_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        def body(conn: sqlite3.Connection) -> None:
            _changes(
                conn,
                "UPDATE devices SET state = ? WHERE box_id = ? AND device_id = ?",
                (DeviceState.REVOKED.value, _b(box_id), _b(device_id)),
            )
            # A revoked device is never woken again (one transaction).
            delete_device_target(conn, _b(box_id), _b(device_id))

        await self._write(body)

    async def record_device_seen(self, box_id: uuid.UUID, device_id: uuid.UUID, at: float) -> None:
        await self._write(
            lambda conn: _changes(
                conn,
                "UPDATE devices SET last_seen = ? WHERE box_id = ? AND device_id = ?"
                " AND (last_seen IS NULL OR last_seen < ?)",
                (at, _b(box_id), _b(device_id), at),
            )
        )

    async def get_profile(self, box_id: uuid.UUID) -> Profile | None:
        row = await self._run(
            lambda conn: _row(
                conn,
                "SELECT display_name, description, avatar_ref, discoverable, accept_from"
                " FROM profiles WHERE box_id = ?",
                (_b(box_id),),
            )
        )
        if row is None:
            return None
        return Profile(
            box_id=box_id,
            display_name=row["display_name"],
            description=row["description"],
            avatar_ref=row["avatar_ref"],
            discoverable=bool(row["discoverable"]),
            accept_from=row["accept_from"],
        )

    async def put_profile(self, profile: Profile) -> None:
        def body(conn: sqlite3.Connection) -> None:
            changed = _changes(
                conn,
                "UPDATE profiles SET display_name = ?, description = ?, avatar_ref = ?,"
                " discoverable = ?, accept_from = ? WHERE box_id = ?",
                (
                    profile.display_name,
                    profile.description,
                    profile.avatar_ref,
                    int(profile.discoverable),
                    profile.accept_from,
                    _b(profile.box_id),
                ),
            )
            if not changed:
                raise NotFound(f"no box {profile.box_id}")

        await self._write(body)


__all__ = ["SqliteDevices"]
