"""Prekeys on SQLite (schema version 7, ``migrations/0007_prekeys.sql``).

A mixin for ``SqliteStore``, like ``SqliteNonces``. Every write is one body
in the writer's transaction (group commit, one savepoint each):

- an upload inserts, then counts, then raises ``PoolFull`` if a pool is
  over its limit, and the savepoint undoes all of it: nothing is written;
- a claim takes each key with one ``UPDATE ... SET claimed_at ...
  RETURNING`` (the statement that reads the key marks it spent); SQLite's
  write lock serialises it against every other process on the file, so no
  two claims ever get one row;
- a spent row stays ``SPENT_HOLD``: an upload naming its id leaves it spent
  (``ON CONFLICT ... WHERE claimed_at IS NULL``), and ``purge_expired``
  deletes it after that.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

from rossby.crypto.prekeys import PrekeyKind
from rossby.store.prekeypools import (
    SPENT_HOLD,
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
from rossby.store.sqlite.batches import delete_until_short
from rossby.store.sqlite.rows import WorkerCalls, _rows, _value

#: Spent rows one ``purge_spent_prekeys`` transaction deletes at most.
PURGE_BATCH = 2000


def _singles(conn: sqlite3.Connection, box: bytes, device: bytes) -> dict[PrekeyKind, SingleKey]:
    rows = _rows(
        conn,
        "SELECT kind, key_id, public_key, signature, uploaded_at_ms FROM prekeys"
        " WHERE box_id = ? AND device_id = ?",
        (box, device),
    )
    return {
        PrekeyKind(row["kind"]): SingleKey(
            Prekey(row["key_id"], row["public_key"], row["signature"]), row["uploaded_at_ms"]
        )
        for row in rows
    }


def _pool_size(conn: sqlite3.Connection, box: bytes, device: bytes, pool: Pool) -> int:
    return int(
        _value(
            conn,
            "SELECT count(*) FROM prekey_pools WHERE box_id = ? AND device_id = ? AND pool = ?"
            " AND claimed_at IS NULL",
            (box, device, int(pool)),
        )
    )


def _counts(conn: sqlite3.Connection, box: bytes, device: bytes) -> PrekeyCounts:
    # One file, one region: the lowest share is the whole pool.
    shares = {pool: [_pool_size(conn, box, device, pool)] for pool in Pool}
    return counts(_singles(conn, box, device), shares)


def _take(
    conn: sqlite3.Connection, box: bytes, device: bytes, pool: Pool, now: float
) -> Prekey | None:
    """The pool's lowest unspent id, marked spent by the statement that reads it."""
    row: Any = _rows(
        conn,
        "UPDATE prekey_pools SET claimed_at = ?"
        " WHERE box_id = ? AND device_id = ? AND pool = ? AND claimed_at IS NULL"
        " AND key_id = (SELECT min(key_id) FROM prekey_pools"
        " WHERE box_id = ? AND device_id = ? AND pool = ? AND claimed_at IS NULL)"
        " RETURNING key_id, public_key, signature",
        (now, box, device, int(pool), box, device, int(pool)),
    )
    if not row:
        return None
    return Prekey(row[0]["key_id"], row[0]["public_key"], row[0]["signature"])


def _drop_unspent(conn: sqlite3.Connection, box: bytes, device: bytes) -> None:
    """Both pools emptied; the spent rows stay (they guard against a retry)."""
    conn.execute(
        "DELETE FROM prekey_pools WHERE box_id = ? AND device_id = ? AND claimed_at IS NULL",
        (box, device),
    )


class SqlitePrekeys(WorkerCalls):
    """``put_prekeys``, ``prekey_counts``, ``claim_prekeys``, ``delete_prekeys``."""

    async def put_prekeys(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        upload: PrekeyUpload,
        *,
        pool_max: int,
    ) -> PrekeyCounts:
        box, device = box_id.bytes, device_id.bytes
        pools = pool_keys(upload)
        singles = single_keys(upload)

        def body(conn: sqlite3.Connection) -> PrekeyCounts:
            if upload.replace_pools:
                _drop_unspent(conn, box, device)
            for pool, keys in pools.items():
                if not keys:
                    continue
                conn.executemany(
                    "INSERT INTO prekey_pools (box_id, device_id, pool, key_id, public_key,"
                    " signature) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (box_id, device_id, pool, key_id) DO UPDATE SET"
                    " public_key = excluded.public_key, signature = excluded.signature"
                    " WHERE prekey_pools.claimed_at IS NULL",
                    [
                        (box, device, int(pool), k.key_id, k.public_key, k.signature)
                        for k in keys.values()
                    ],
                )
                # Raising here rolls the savepoint back: the deletes and
                # inserts above never happened.
                check_pool_size(pool, _pool_size(conn, box, device, pool), pool_max)
            conn.executemany(
                "INSERT INTO prekeys (box_id, device_id, kind, key_id, public_key, signature,"
                " uploaded_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (box_id, device_id, kind) DO UPDATE SET key_id = excluded.key_id,"
                " public_key = excluded.public_key, signature = excluded.signature,"
                " uploaded_at_ms = excluded.uploaded_at_ms",
                [
                    (
                        box,
                        device,
                        int(kind),
                        k.key_id,
                        k.public_key,
                        k.signature,
                        upload.uploaded_at_ms,
                    )
                    for kind, k in singles.items()
                ],
            )
            return _counts(conn, box, device)

        return await self._write(body)

    async def prekey_counts(self, box_id: uuid.UUID, device_id: uuid.UUID) -> PrekeyCounts:
        return await self._read(lambda conn: _counts(conn, box_id.bytes, device_id.bytes))

    async def claim_prekeys(
        self, box_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> list[ClaimedPrekeys]:
        box = box_id.bytes
        devices = distinct(device_ids)
        now = self._now()

        def body(conn: sqlite3.Connection) -> list[ClaimedPrekeys]:
            out: list[ClaimedPrekeys] = []
            for device_id in devices:
                device = device_id.bytes
                singles = _singles(conn, box, device)
                if not claimable(singles):
                    continue  # its pools stay untouched
                one_time = _take(conn, box, device, Pool.ONE_TIME, now)
                kem = _take(conn, box, device, Pool.ONE_TIME_KEM, now)
                out.append(claimed(device_id, singles, one_time, kem))
            return out

        if not devices:
            return []
        return await self._write(body)

    async def delete_prekeys(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        box, device = box_id.bytes, device_id.bytes

        def body(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM prekeys WHERE box_id = ? AND device_id = ?", (box, device))
            _drop_unspent(conn, box, device)

        await self._write(body)

    async def purge_spent_prekeys(self) -> int:
        """Delete spent pool rows older than ``SPENT_HOLD``; answer how many."""

        def batch(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM prekey_pools WHERE (box_id, device_id, pool, key_id) IN"
                " (SELECT box_id, device_id, pool, key_id FROM prekey_pools"
                " WHERE claimed_at IS NOT NULL AND claimed_at <= ? LIMIT ?)",
                (self._now() - SPENT_HOLD, PURGE_BATCH),
            ).rowcount

        return await delete_until_short(lambda: self._write(batch), PURGE_BATCH)


__all__ = ["SqlitePrekeys"]
