"""Push targets on Cassandra (schema version 9, ``schema/0009_push_targets.cql``).

A mixin for ``CassandraStore``, like ``CassandraPresence``. The table is
partitioned by box, clustered by device: a Send's wake-up lists a box's
targets with one single-partition read in this server's DC (the ``keys``
profile, the store's consistency).

``delete_push_target(..., registered_at=...)`` must remove a registration
only if it is still the stored one: a push service's "gone" for an old
subscription may arrive after the device registered a new one. Neither of
the obvious ways is right here:

- read, compare, delete races: a re-registration between the read and the
  delete is removed;
- a lightweight transaction (``DELETE ... IF registered_at = ?``) is exact
  only if every write of the row is one too (a plain write does not take
  part in Paxos), which would put a Paxos round on every SetPushTarget
  and on every revocation, across regions at SERIAL.

Instead the write timestamp *is* the registration: a put is written
``USING TIMESTAMP`` its ``registered_at`` in microseconds, and the
conditional delete is a row tombstone ``USING TIMESTAMP`` that same value.
Cassandra keeps, per cell, the write with the highest timestamp, and a
tombstone wins a tie: so the tombstone removes that registration (and any
older one a slow replica still holds) and leaves a newer registration,
stamped later, untouched, in whichever order the writes reach a replica.
An unconditional delete (ClearPushTarget, revocation) is stamped with the
store clock now. The price: ordering follows the servers' clocks, so a
registration made on a server whose clock lags a concurrent Clear by more
than their distance in time loses to it; the device registers again when
it next starts (clients re-register on every start anyway).

``revoke_device`` (``CassandraDevices``) deletes the device's row after
marking it revoked.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.store.cassandra.config import KEYS
from rossby.store.pushtargets import PushKind, PushTarget

if TYPE_CHECKING:
    from rossby.store.base import StoreOptions
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge

#: Rows one box's target read answers at most: one per device, and a box
#: has far fewer devices than this.
MAX_ROWS = 1000

_COLUMNS = "device_id, kind, registered_at, endpoint, p256dh, auth, app_id, pushkey, hint"


def write_stamp(seconds: float) -> int:
    """The write timestamp (microseconds) of a registration made at ``seconds``."""
    return round(seconds * 1_000_000)


class CassandraPushTargets:
    """``put_push_target``, ``list_push_targets``, ``delete_push_target``."""

    if TYPE_CHECKING:
        options: StoreOptions
        _db: Bridge
        _settings: Settings

    def _push_cql(self, which: str) -> str:
        ks = self._settings.keyspace
        if which == "put":
            return (
                f"INSERT INTO {ks}.push_targets (box_id, {_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            )
        if which == "list":
            return f"SELECT {_COLUMNS} FROM {ks}.push_targets WHERE box_id = ? LIMIT {MAX_ROWS}"
        return f"DELETE FROM {ks}.push_targets USING TIMESTAMP ? WHERE box_id = ? AND device_id = ?"

    async def _push_run(self, which: str, params: Sequence[Any]) -> list[Any]:
        return await self._db.execute(self._push_cql(which), params, profile=KEYS)

    async def put_push_target(self, target: PushTarget) -> None:
        t = target
        await self._push_run(
            "put",
            (t.box_id, t.device_id, *t.stored(), write_stamp(t.registered_at)),
        )

    async def list_push_targets(self, box_id: uuid.UUID) -> list[PushTarget]:
        rows = await self._push_run("list", (box_id,))
        out: list[PushTarget] = []
        for row in rows:
            if row["kind"] is None or row["registered_at"] is None:
                continue  # a partial row: never written whole by this code
            out.append(
                PushTarget(
                    box_id=box_id,
                    device_id=row["device_id"],
                    kind=PushKind(row["kind"]),
                    registered_at=row["registered_at"],
                    endpoint=row["endpoint"] or "",
                    p256dh=row["p256dh"] or b"",
                    auth=row["auth"] or b"",
                    app_id=row["app_id"] or "",
                    pushkey=row["pushkey"] or "",
                    hint=row["hint"] or "",
                )
            )
        return out

    async def delete_push_target(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        registered_at: float | None = None,
    ) -> None:
        when = self.options.clock() if registered_at is None else registered_at
        await self._push_run("delete", (write_stamp(when), box_id, device_id))


__all__ = ["CassandraPushTargets", "write_stamp"]
