"""Prekeys on Cassandra (schema version 8, ``schema/0008_prekeys.cql``).

A mixin for ``CassandraStore``. The reasoning is in docs/store.md
("Prekeys"); in short:

- The one-time pools are split per region: partition ``(box, device,
  pool, region)``. An upload places each new key id in
  ``regions[key_id % len(regions)]`` (an id already stored stays where it
  is), so a retried upload writes every key to the partition it is in.
- A region claims only from its own partitions, each key by a conditional
  delete at LOCAL_SERIAL coordinated in the region (``prekeytake``). No
  other region ever runs Paxos on those partitions, so Paxos among the
  local replicas is enough for exactly-once, without a WAN round trip.
- A region whose share is empty answers the last-resort KEM key and no
  one-time X25519 key; it never takes from another region's share (one
  partition under LOCAL_SERIAL from two DCs would be two independent Paxos
  instances). ``prekey_counts`` reports the lowest share, so the device
  refills before any region runs dry.
- Plain writes carry millisecond timestamps (``writeclock``), so a claim's
  tombstone outranks every upload of its key: a handed-out key stays spent.

Everything runs in this server's DC (the ``prekeys`` profile): uploads at
the store's consistency replicate to the other regions in the background,
so an upload works while another region is down, and that region's share
arrives when it is back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rossby.crypto.prekeys import PrekeyKind
from rossby.store.cassandra.config import PREKEYS
from rossby.store.cassandra.prekeytake import take
from rossby.store.prekeypools import (
    Pool,
    SingleKey,
    check_pool_size,
    claimable,
    claimed,
    counts,
    distinct,
    pool_keys,
    single_keys,
)
from rossby.store.prekeys import ClaimedPrekeys, Prekey, PrekeyCounts, PrekeyUpload

if TYPE_CHECKING:
    from rossby.store.cassandra.config import Settings
    from rossby.store.cassandra.driver import Bridge
    from rossby.store.cassandra.locks import KeyedLocks
    from rossby.store.cassandra.regions import KeyspaceRegions
    from rossby.store.cassandra.writeclock import MillisClock

#: Rows one share's id read answers at most: far above any pool limit, so
#: a bound, not a page.
MAX_SHARE_ROWS = 5000

APPLIED = "[applied]"


class PrekeyCql:
    """The prekey statements, qualified with the keyspace."""

    def __init__(self, ks: str) -> None:
        self.singles = (
            f"SELECT kind, key_id, public_key, signature, uploaded_at_ms FROM {ks}.prekeys"
            " WHERE box_id = ? AND device_id = ?"
        )
        self.single_put = (
            f"INSERT INTO {ks}.prekeys (box_id, device_id, kind, key_id, public_key, signature,"
            " uploaded_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self.singles_delete = (
            f"DELETE FROM {ks}.prekeys USING TIMESTAMP ? WHERE box_id = ? AND device_id = ?"
        )
        self.share_ids = (
            f"SELECT key_id FROM {ks}.prekey_pools WHERE box_id = ? AND device_id = ?"
            f" AND pool = ? AND region = ? LIMIT {MAX_SHARE_ROWS}"
        )
        self.candidates = (
            f"SELECT key_id, public_key, signature FROM {ks}.prekey_pools WHERE box_id = ?"
            " AND device_id = ? AND pool = ? AND region = ? LIMIT ?"
        )
        self.pool_put = (
            f"INSERT INTO {ks}.prekey_pools (box_id, device_id, pool, region, key_id,"
            " public_key, signature) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self.share_delete = (
            f"DELETE FROM {ks}.prekey_pools USING TIMESTAMP ? WHERE box_id = ?"
            " AND device_id = ? AND pool = ? AND region = ?"
        )
        # The claim: Paxos at the profile's serial consistency (LOCAL_SERIAL).
        self.take = (
            f"DELETE FROM {ks}.prekey_pools WHERE box_id = ? AND device_id = ? AND pool = ?"
            " AND region = ? AND key_id = ? IF public_key = ?"
        )


def _key(row: Any) -> Prekey:
    return Prekey(int(row["key_id"]), row["public_key"], row["signature"] or b"")


class CassandraPrekeys:
    """``put_prekeys``, ``prekey_counts``, ``claim_prekeys``, ``delete_prekeys``."""

    if TYPE_CHECKING:
        _db: Bridge
        _settings: Settings
        _locks: KeyedLocks
        _prekey_regions: KeyspaceRegions
        _write_clock: MillisClock
        _pk: PrekeyCql

    # -- plumbing -----------------------------------------------------------

    async def _pk_run(self, cql: str, params: Sequence[Any]) -> list[Any]:
        return await self._db.execute(cql, params, profile=PREKEYS)

    async def _singles(
        self, box_id: uuid.UUID, device_id: uuid.UUID
    ) -> dict[PrekeyKind, SingleKey]:
        rows = await self._pk_run(self._pk.singles, (box_id, device_id))
        return {
            PrekeyKind(row["kind"]): SingleKey(_key(row), int(row["uploaded_at_ms"] or 0))
            for row in rows
        }

    async def _shares(
        self, box_id: uuid.UUID, device_id: uuid.UUID, regions: Sequence[str]
    ) -> dict[tuple[Pool, str], set[int]]:
        """Every (pool, region) share's key ids, read side by side."""
        slots = [(pool, region) for pool in Pool for region in regions]
        answers = await asyncio.gather(
            *(
                self._pk_run(self._pk.share_ids, (box_id, device_id, int(pool), region))
                for pool, region in slots
            )
        )
        return {
            slot: {int(row["key_id"]) for row in rows}
            for slot, rows in zip(slots, answers, strict=True)
        }

    # -- the contract -------------------------------------------------------

    async def put_prekeys(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        upload: PrekeyUpload,
        *,
        pool_max: int,
    ) -> PrekeyCounts:
        regions = await self._prekey_regions.get()
        pools = pool_keys(upload)
        # A device's uploads queue here, so a process never races itself
        # between the size check and the writes.
        async with self._locks.hold(("prekeys", box_id, device_id)):
            placed: dict[Pool, dict[int, str]] = {pool: {} for pool in Pool}
            if not upload.replace_pools and any(pools.values()):
                shares = await self._shares(box_id, device_id, regions)
                for (pool, region), ids in shares.items():
                    placed[pool].update(dict.fromkeys(ids, region))
            writes: list[tuple[Pool, str, Prekey]] = []
            for pool, keys in pools.items():
                stored = placed[pool]
                check_pool_size(pool, len(stored.keys() | keys.keys()), pool_max)
                for key_id, key in keys.items():
                    region = stored.get(key_id) or regions[key_id % len(regions)]
                    writes.append((pool, region, key))
            if upload.replace_pools:
                at = self._write_clock.next()
                await asyncio.gather(
                    *(
                        self._pk_run(
                            self._pk.share_delete, (at, box_id, device_id, int(pool), region)
                        )
                        for pool in Pool
                        for region in regions
                    )
                )
            at = self._write_clock.next()
            statements = [
                (
                    self._pk.pool_put,
                    (box_id, device_id, int(pool), region, k.key_id, k.public_key, k.signature, at),
                )
                for pool, region, k in writes
            ] + [
                (
                    self._pk.single_put,
                    (
                        box_id,
                        device_id,
                        int(kind),
                        k.key_id,
                        k.public_key,
                        k.signature,
                        upload.uploaded_at_ms,
                        at,
                    ),
                )
                for kind, k in single_keys(upload).items()
            ]
            # Idempotent writes, side by side (the bridge bounds how many
            # are in flight). One that fails fails the call; a retry of
            # the upload rewrites the same rows.
            await asyncio.gather(*(self._pk_run(cql, params) for cql, params in statements))
        # Read back rather than computed: an id spent by a claim does not
        # come back, whatever this upload wrote.
        return await self.prekey_counts(box_id, device_id)

    async def prekey_counts(self, box_id: uuid.UUID, device_id: uuid.UUID) -> PrekeyCounts:
        regions = await self._prekey_regions.get()
        singles, shares = await asyncio.gather(
            self._singles(box_id, device_id), self._shares(box_id, device_id, regions)
        )
        return counts(
            singles,
            {pool: [len(shares[(pool, region)]) for region in regions] for pool in Pool},
        )

    async def claim_prekeys(
        self, box_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> list[ClaimedPrekeys]:
        devices = distinct(device_ids)
        if not devices:
            return []
        # This region's share only (never another's: see the module docstring).
        own = self._settings.local_dc
        found = await asyncio.gather(*(self._singles(box_id, d) for d in devices))

        async def one(device_id: uuid.UUID, singles: dict[PrekeyKind, SingleKey]) -> ClaimedPrekeys:
            one_time, kem = await asyncio.gather(
                self._take(box_id, device_id, Pool.ONE_TIME, own),
                self._take(box_id, device_id, Pool.ONE_TIME_KEM, own),
            )
            return claimed(device_id, singles, one_time, kem)

        return list(
            await asyncio.gather(
                *(
                    one(d, singles)
                    for d, singles in zip(devices, found, strict=True)
                    if claimable(singles)
                )
            )
        )

    async def _take(
        self, box_id: uuid.UUID, device_id: uuid.UUID, pool: Pool, region: str
    ) -> Prekey | None:
        share = (box_id, device_id, int(pool), region)

        async def read(limit: int) -> list[Prekey]:
            return [_key(row) for row in await self._pk_run(self._pk.candidates, (*share, limit))]

        async def cas(key: Prekey) -> bool:
            rows = await self._pk_run(self._pk.take, (*share, key.key_id, key.public_key))
            return bool(rows[0][APPLIED])

        async with self._locks.hold(("prekey-share", *share)):
            return await take(read, cas)

    async def delete_prekeys(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        regions = await self._prekey_regions.get()
        at = self._write_clock.next()
        await asyncio.gather(
            self._pk_run(self._pk.singles_delete, (at, box_id, device_id)),
            *(
                self._pk_run(self._pk.share_delete, (at, box_id, device_id, int(pool), region))
                for pool in Pool
                for region in regions
            ),
        )


__all__ = ["CassandraPrekeys", "PrekeyCql"]
