"""Boxes, devices (the keystore) and profiles on Cassandra: a mixin of
``CassandraStore``. All of them live in the ``boxes`` partition (the box
and profile as static columns, devices as rows); a device and its cursor
are written in one single-partition batch in the box's home DC, where the
queue operations read cursors.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from cassandra.query import BatchStatement, BatchType

from rossby.errors import AlreadyExists, NotFound
from rossby.replication.consistency import Op
from rossby.store.cassandra.config import KEYS
from rossby.store.cassandra.positions import write_timestamp
from rossby.store.cassandra.routing import CassandraRouting
from rossby.store.model import Box, Device, DeviceKeys, DeviceState, Profile


def _device(box_id: uuid.UUID, row: dict[str, Any]) -> Device:
    return Device(
        box_id=box_id,
        device_id=row["device_id"],
        name=row["name"] or "",
        keys=DeviceKeys(
            encryption_key=row["encryption_key"] or b"",
            signing_key=row["signing_key"] or b"",
            key_signature=row["key_signature"] or b"",
        ),
        hawk_key=row["hawk_key"] or b"",
        state=DeviceState(row["state"]),
        created_at=row["device_created_at"] or 0.0,
        last_seen=row["last_seen"],
    )


def _seen_timestamp(at: float) -> int:
    return int(at * 1_000_000)


class CassandraDevices(CassandraRouting):
    """``create_box`` ... ``put_profile``."""

    if TYPE_CHECKING:

        async def delete_push_target(
            self,
            box_id: uuid.UUID,
            device_id: uuid.UUID,
            *,
            registered_at: float | None = None,
        ) -> None: ...

    async def _device_row(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Any | None:
        rows = await self._run(self._cql.device_get, (box_id, device_id), KEYS)
        return rows[0] if rows and rows[0]["device_id"] is not None else None

    async def _box_exists(self, box_id: uuid.UUID) -> bool:
        rows = await self._run(self._cql.box_get, (box_id,), KEYS)
        return bool(rows) and rows[0]["home_region"] is not None

    async def _write_device(
        self, device: Device, home: str, *, with_box: Box | None = None
    ) -> None:
        """One single-partition batch: atomic, so a box never exists
        without its first device, nor a device without its cursor. Written
        in the box's home DC, where the queue operations read cursors."""
        start = self._positions.head()
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        if with_box is not None:
            p = Profile(box_id=with_box.box_id)
            batch.add(
                await self._db.prepare(self._cql.box_insert),
                (
                    with_box.box_id,
                    with_box.home_region,
                    with_box.created_at,
                    p.display_name,
                    p.description,
                    p.avatar_ref,
                    p.discoverable,
                    p.accept_from,
                ),
            )
        batch.add(
            await self._db.prepare(self._cql.device_insert),
            (
                device.box_id,
                device.device_id,
                device.name,
                device.keys.encryption_key,
                device.keys.signing_key,
                device.keys.key_signature,
                device.hawk_key,
                device.state.value,
                device.created_at,
                start,
            ),
        )
        seen = device.created_at if device.last_seen is None else device.last_seen
        batch.add(
            await self._db.prepare(self._cql.device_seen),
            (_seen_timestamp(seen), seen, device.box_id, device.device_id),
        )
        batch.add(
            await self._db.prepare(self._cql.cursor_set),
            (write_timestamp(start), start, device.box_id, device.device_id),
        )
        await self._run_home(batch, None, Op.CURSOR, home)

    async def create_box(self, box: Box, first_device: Device) -> None:
        if await self._device_row(box.box_id, first_device.device_id) is not None:
            return  # a retry of a creation that landed
        if await self._box_exists(box.box_id):
            raise AlreadyExists("box already exists")
        home = self._route(box.home_region)
        await self._write_device(first_device, home, with_box=box)
        self._homes.put(box.box_id, home)

    async def get_box(self, box_id: uuid.UUID) -> Box | None:
        rows = await self._run(self._cql.box_get, (box_id,), KEYS)
        if not rows or rows[0]["home_region"] is None:
            return None
        row = rows[0]
        self._homes.put(box_id, self._route(row["home_region"]))
        return Box(
            box_id=box_id, home_region=row["home_region"], created_at=row["created_at"] or 0.0
        )

    async def add_device(self, device: Device) -> None:
        if not await self._box_exists(device.box_id):
            raise NotFound("no such box")
        if await self._device_row(device.box_id, device.device_id) is not None:
            return  # a retry; never resurrect a revoked device or move a cursor
        home = await self.home_of(device.box_id) or self._settings.local_dc
        await self._write_device(device, home)

    async def get_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        row = await self._device_row(box_id, device_id)
        return _device(box_id, row) if row is not None else None

    async def list_devices(self, box_id: uuid.UUID) -> list[Device]:
        rows = await self._run(self._cql.devices_all, (box_id,), KEYS)
        devices = [
            _device(box_id, r)
            for r in rows
            if r["device_id"] is not None and r["state"] == DeviceState.ACTIVE
        ]
        devices.sort(key=lambda d: (d.created_at, d.device_id.bytes))
        return devices

    async def _active_device_row(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Any:
        row = await self._device_row(box_id, device_id)
        if row is None or row["state"] != DeviceState.ACTIVE:
            raise NotFound("no such device")
        return row

    async def rotate_device_keys(
        self, box_id: uuid.UUID, device_id: uuid.UUID, keys: DeviceKeys
    ) -> None:
        await self._active_device_row(box_id, device_id)
        await self._run(
            self._cql.device_keys,
            (keys.encryption_key, keys.signing_key, keys.key_signature, box_id, device_id),
            KEYS,
        )

    async def set_hawk_key(self, box_id: uuid.UUID, device_id: uuid.UUID, hawk_key: bytes) -> None:
        # Device rows are never deleted, so the read cannot race a delete
        # into an UPDATE that would create a partial row.
        if await self._device_row(box_id, device_id) is None:
            raise NotFound("no such device")
        await self._run(self._cql.device_hawk_key, (hawk_key, box_id, device_id), KEYS)

    async def _devices_rest(self, box_id: uuid.UUID, device_id: uuid.UUID) -> list[Device]:
        """The devices of one box after ``device_id`` (a box has few)."""
        rows = await self._run(self._cql.devices_rest, (box_id, device_id), KEYS)
        return [_device(box_id, r) for r in rows if r["device_id"] is not None]

    async def device_page(
        self, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
    ) -> list[Device]:
        """Token order of the box partitions, device order within one. A
        range read's LIMIT may cut a partition, so the rest of the last one
        read is fetched on its own before the scan moves past its token; a
        box partition without devices (static columns only) reads as one
        row without a device id and is skipped."""
        out: list[Device] = []
        box: uuid.UUID | None = None
        if after is not None:
            box = after[0]
            out += await self._devices_rest(after[0], after[1])
        while len(out) < limit:
            if box is None:
                rows = await self._run(self._cql.devices_first, (limit,), KEYS)
            else:
                rows = await self._run(self._cql.devices_scan, (box, limit), KEYS)
            out += [_device(r["box_id"], r) for r in rows if r["device_id"] is not None]
            if not rows:
                break
            box, last_device = rows[-1]["box_id"], rows[-1]["device_id"]
            if last_device is not None:
                out += await self._devices_rest(box, last_device)
            if len(rows) < limit:
                break
        return out[:limit]

    async def revoke_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        row = await self._device_row(box_id, device_id)
        if row is None:
            raise NotFound("no such device")
        if row["state"] != DeviceState.REVOKED:
            await self._run(
                self._cql.device_state, (DeviceState.REVOKED.value, box_id, device_id), KEYS
            )
        # After the state (a revoked device is refused before any push
        # target matters), and again on a retry: the delete is idempotent.
        await self.delete_push_target(box_id, device_id)

    async def record_device_seen(self, box_id: uuid.UUID, device_id: uuid.UUID, at: float) -> None:
        # No read first: the caller just authenticated as this device, so
        # its row exists (rows are never deleted), and the write timestamp
        # keeps the latest time whatever order records land in.
        await self._run(self._cql.device_seen, (_seen_timestamp(at), at, box_id, device_id), KEYS)

    async def get_profile(self, box_id: uuid.UUID) -> Profile | None:
        rows = await self._run(self._cql.profile_get, (box_id,), KEYS)
        if not rows or rows[0]["home_region"] is None:
            return None
        row = rows[0]
        name, description, avatar = row["display_name"], row["description"], row["avatar_ref"]
        discoverable, accept_from = row["discoverable"], row["accept_from"]
        defaults = Profile(box_id=box_id)
        return Profile(
            box_id=box_id,
            display_name=name if name is not None else defaults.display_name,
            description=description if description is not None else defaults.description,
            avatar_ref=avatar if avatar is not None else defaults.avatar_ref,
            discoverable=discoverable if discoverable is not None else defaults.discoverable,
            accept_from=accept_from if accept_from is not None else defaults.accept_from,
        )

    async def put_profile(self, profile: Profile) -> None:
        if not await self._box_exists(profile.box_id):
            raise NotFound("no such box")
        await self._run(
            self._cql.profile_put,
            (
                profile.display_name,
                profile.description,
                profile.avatar_ref,
                profile.discoverable,
                profile.accept_from,
                profile.box_id,
            ),
            KEYS,
        )


__all__ = ["CassandraDevices"]
