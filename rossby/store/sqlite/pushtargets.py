"""Push targets on SQLite (schema version 8, ``migrations/0008_push_targets.sql``).

A mixin for ``SqliteStore``, like ``SqliteNonces``. A put is one upsert;
the conditional delete is ``DELETE ... WHERE registered_at = ?`` inside the
writer's transaction, which SQLite serialises against every other process
on the file, so a "gone" for an old registration can never remove a newer
one. ``revoke_device`` (``SqliteDevices``) deletes the revoked device's
row in its own transaction.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from rossby.store.pushtargets import PushKind, PushTarget
from rossby.store.sqlite.rows import WorkerCalls, _b, _rows, _u

_COLUMNS = "box_id, device_id, kind, registered_at, endpoint, p256dh, auth, app_id, pushkey, hint"


def _target(row: Any) -> PushTarget:
    return PushTarget(
        box_id=_u(row["box_id"]),
        device_id=_u(row["device_id"]),
        kind=PushKind(row["kind"]),
        registered_at=row["registered_at"],
        endpoint=row["endpoint"],
        p256dh=bytes(row["p256dh"]),
        auth=bytes(row["auth"]),
        app_id=row["app_id"],
        pushkey=row["pushkey"],
        hint=row["hint"],
    )


def delete_device_target(conn: sqlite3.Connection, box: bytes, device: bytes) -> None:
    """The device's target goes with it (revocation, idle unlink)."""
    conn.execute("DELETE FROM push_targets WHERE box_id = ? AND device_id = ?", (box, device))


class SqlitePushTargets(WorkerCalls):
    """``put_push_target``, ``list_push_targets``, ``delete_push_target``."""

    async def put_push_target(self, target: PushTarget) -> None:
        t = target
        row = (_b(t.box_id), _b(t.device_id), *t.stored())

        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO push_targets ({_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        await self._write(body)

    async def list_push_targets(self, box_id: uuid.UUID) -> list[PushTarget]:
        rows = await self._run(
            lambda conn: _rows(
                conn,
                f"SELECT {_COLUMNS} FROM push_targets WHERE box_id = ? ORDER BY device_id",
                (_b(box_id),),
            )
        )
        return [_target(row) for row in rows]

    async def delete_push_target(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        registered_at: float | None = None,
    ) -> None:
        box, device = _b(box_id), _b(device_id)

        def body(conn: sqlite3.Connection) -> None:
            if registered_at is None:
                delete_device_target(conn, box, device)
                return
            conn.execute(
                "DELETE FROM push_targets WHERE box_id = ? AND device_id = ? AND registered_at = ?",
                (box, device, registered_at),
            )

        await self._write(body)


__all__ = ["SqlitePushTargets", "delete_device_target"]
