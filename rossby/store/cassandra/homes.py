"""Home-region operations on Cassandra (docs/replication.md, "Moving a
home", "Failover"): the ``HomeRegions`` capability of the contract
(``rossby.replication.homes``), which ``rossby admin`` reaches through
``Store.home_regions()``. A mixin of ``CassandraStore``: a move rewrites the
statics that the queue's fence (``CassandraRouting._view``) reads, and a
reconcile copies rows with the queue's own reads.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence

from cassandra.query import SimpleStatement

from rossby.errors import FailedPrecondition, NotFound, StoreUnavailable
from rossby.replication.consistency import Op, profile_name
from rossby.replication.homes import HomeRecord, HomeRegions, Reconciled
from rossby.store.cassandra.config import KEYS
from rossby.store.cassandra.errors import translate
from rossby.store.cassandra.plumbing import ttl_covering
from rossby.store.cassandra.positions import bucket_of
from rossby.store.cassandra.queue import CassandraQueue
from rossby.store.model import DeviceState, Position


class CassandraHomes(CassandraQueue, HomeRegions):
    """``home_record``, ``move_home``, ``boxes_homed_in``, ``reconcile_home``."""

    async def home_record(self, box_id: uuid.UUID, dc: str) -> HomeRecord | None:
        """The box's home statics as ``dc`` holds them (LOCAL_QUORUM there)."""
        rows = await self._run_home(self._cql.home_get, (box_id,), Op.CURSOR, dc)
        if not rows or rows[0]["home_region"] is None:
            return None
        row = rows[0]
        return HomeRecord(
            row["home_region"],
            int(row["home_epoch"] or 0),
            int(row["home_moved_at"] or 0),
            int(row["recovery_floor"] or 0),
            int(row["purged_through"] or 0),
        )

    async def _lowest_cursor(self, box_id: uuid.UUID, dcs: Sequence[str], force: bool) -> Position:
        """The lowest active cursor any reachable DC of ``dcs`` holds (with
        ``force``, unreachable ones are skipped; the new home must answer)."""
        cursors: list[int] = []
        for i, dc in enumerate(dcs):
            try:
                rows = await self._run_home(self._cql.view_all, (box_id,), Op.CURSOR, dc)
            except StoreUnavailable:
                if not force or i == 0:
                    raise
                continue
            cursors += [
                int(r["cursor"] or 0)
                for r in rows
                if r["device_id"] is not None and r["state"] == DeviceState.ACTIVE
            ]
        return min(cursors) if cursors else self._positions.head()

    async def move_home(self, box_id: uuid.UUID, region: str, *, force: bool = False) -> HomeRecord:
        """Make ``region`` the box's home (docs/replication.md, "Moving a home").

        Planned (``force=False``, every DC up): the new home, a bumped epoch
        and a recovery floor are written in every DC at once (EACH_QUORUM),
        so every server's next queue operation for the box is fenced onto
        the new home; then call ``reconcile_home``. Forced (the old home is
        unreachable): written in the new home only; the box re-reads from
        its recovery floor until ``reconcile_home`` succeeds, which needs
        the old home back.
        """
        if not self._topology.knows(region) or self._topology.rf(region) < 1:
            raise FailedPrecondition(
                f"region {region!r} holds no replicas of this keyspace", reason="UNKNOWN_REGION"
            )
        self._homes.forget(box_id)
        old = await self.home_of(box_id)
        if old is None:
            raise NotFound("no such box")
        current = await self.home_record(box_id, region)
        if current is None:
            raise NotFound(f"the box has not reached {region} yet; retry shortly")
        dcs = [region] + ([old] if old != region else [])
        lowest = await self._lowest_cursor(box_id, dcs, force)
        # Everything at or below a cursor less the settle window was
        # delivered to that device (the settle argument, in the old home);
        # the second window is margin for cursors written by a server that
        # had not seen the move yet.
        floor = max(1, lowest - 2 * self.settle_window)
        if current.recovering:
            floor = min(floor, current.recovery_floor)
        moved_at = max(int(time.time() * 1_000_000), current.moved_at_us + 2)
        epoch = current.epoch + 1
        params = (moved_at, region, epoch, moved_at, floor, box_id)
        if force:
            await self._run_home(self._cql.home_move, params, Op.CURSOR, region)
        else:
            await self._run(self._cql.home_move, params, profile_name(Op.EVERYWHERE))
        self._homes.put(box_id, region)
        return HomeRecord(region, epoch, moved_at, floor, current.purged_through)

    async def boxes_homed_in(self, region: str) -> list[uuid.UUID]:
        """Every box whose home is ``region``, as this DC holds them: a full
        scan of the box partitions (paged), for operators (failover)."""
        session = await self._db.session()
        statement = SimpleStatement(
            f"SELECT DISTINCT box_id, home_region FROM {self._settings.keyspace}.boxes",
            fetch_size=1000,
        )

        def scan() -> list[uuid.UUID]:
            rows = session.execute(statement, execution_profile=KEYS, timeout=60)
            return [row["box_id"] for row in rows if row["home_region"] == region]

        try:
            return await asyncio.to_thread(scan)
        except Exception as exc:
            raise translate(exc) from exc

    async def reconcile_home(self, box_id: uuid.UUID, *, wait: bool = True) -> Reconciled:
        """End a move's recovery: copy every message above the recovery
        floor from the other DCs into the home, then lift the floor.

        With ``wait`` it first lets two settle windows pass since the move,
        so operations that routed to the old home before the move's write
        have finished. Needs every other DC holding replicas to answer;
        otherwise it raises and the box stays in recovery (safe to re-run).
        """
        self._homes.forget(box_id)
        home = await self.home_of(box_id)
        if home is None:
            raise NotFound("no such box")
        record = await self.home_record(box_id, home)
        if record is None:
            raise NotFound("no such box")
        if not record.recovering:
            return Reconciled(home, 0, (), False)
        if wait:
            ready = record.moved_at_us / 1_000_000 + 2 * self._settings.settle_seconds
            await asyncio.sleep(max(0.0, ready - time.time()))
        sources = tuple(dc for dc, rf in self._topology.replication if rf > 0 and dc != home)
        lower = max(record.recovery_floor, record.purged_through, self._horizon())
        upper = self._upper()
        copied = 0
        for dc in sources:
            after = lower
            while True:
                try:
                    page = await self._read(box_id, dc, after, upper, 500)
                except StoreUnavailable as exc:
                    raise StoreUnavailable(
                        f"store: cannot reconcile from {dc} yet: {exc}", applied=False
                    ) from exc
                for m in page:
                    # A copy keeps the original's expiry (disappearing
                    # messages included), plus the second TTL rounding loses.
                    left = m.expires_at - time.time()
                    if left <= 0:
                        continue
                    ttl = min(ttl_covering(left), self._message_ttl())
                    await self._run_home(
                        self._cql.message_insert,
                        (
                            box_id,
                            bucket_of(m.position),
                            m.position,
                            m.message_id,
                            m.sender_box,
                            m.sender_device,
                            m.ciphertext,
                            math.floor(m.expires_at * 1000),
                            ttl,
                        ),
                        Op.QUEUE,
                        home,
                    )
                    copied += 1
                if len(page) < 500:
                    break
                after = page[-1].position
        await self._run_home(
            self._cql.recovery_clear, (record.moved_at_us + 1, box_id), Op.CURSOR, home
        )
        return Reconciled(home, copied, sources, True)


__all__ = ["CassandraHomes"]
