"""Routing to a box's home datacenter (docs/replication.md, "Home region"):
every queue operation is coordinated in the box's home DC, found through
``HomeCache`` and checked against the home recorded there (the fence).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from rossby.errors import StoreUnavailable
from rossby.replication.consistency import Op, profile_name
from rossby.replication.homes import HomeRegionUnavailable
from rossby.store.cassandra.config import KEYS
from rossby.store.cassandra.plumbing import Plumbing


class CassandraRouting(Plumbing):
    """``home_of`` and the fenced read of a box partition (``_view``)."""

    @property
    def local_dc(self) -> str:
        return self._settings.local_dc

    @property
    def datacenters(self) -> tuple[str, ...]:
        return self._topology.datacenters

    def _route(self, home_region: str | None) -> str:
        """The DC that coordinates a box homed in ``home_region``: that DC,
        or this one for a home the topology does not know (a box created
        before its region was added, or by a single-region setup)."""
        if home_region and self._topology.knows(home_region):
            return home_region
        return self._settings.local_dc

    async def _run_home(
        self, cql: Any, params: Sequence[Any] | None, op: Op, home: str, **kw: Any
    ) -> list[Any]:
        """Run a home-routed operation in ``home``; a remote home that does
        not answer is reported as such (HOME_REGION_UNAVAILABLE)."""
        try:
            return await self._db.execute(cql, params, profile=profile_name(op, home), **kw)
        except StoreUnavailable as exc:
            if home == self._settings.local_dc or isinstance(exc, HomeRegionUnavailable):
                raise
            raise HomeRegionUnavailable(home, str(exc), applied=exc.applied) from exc

    async def home_of(self, box_id: uuid.UUID) -> str | None:
        """The DC coordinating the box's queue, or None for an unknown box.

        Asks this DC first; a box created moments ago in another region may
        not have replicated here yet, so the other DCs are asked next.
        """
        cached = self._homes.get(box_id)
        if cached is not None:
            return cached
        local = self._settings.local_dc
        for dc in (local, *(d for d in self._topology.datacenters if d != local)):
            try:
                rows = await self._run(self._cql.box_get, (box_id,), profile_name(Op.KEYS, dc))
            except StoreUnavailable:
                if dc == local:
                    raise
                continue
            if rows and rows[0]["home_region"] is not None:
                home = self._route(rows[0]["home_region"])
                self._homes.put(box_id, home)
                return home
        return None

    async def _view(
        self, box_id: uuid.UUID, device_id: uuid.UUID | None = None
    ) -> tuple[str, list[Any]]:
        """(home DC, the box partition read there): every device row, or the
        one asked for, each with the home and recovery statics.

        The fence: the home recorded *in the DC we routed to* must name
        that DC. A move writes the new home to every DC before anything
        else, so a stale route is corrected here, before any queue write.
        """
        home = await self.home_of(box_id) or self._settings.local_dc
        for _ in range(3):
            try:
                if device_id is None:
                    rows = await self._run_home(self._cql.view_all, (box_id,), Op.CURSOR, home)
                else:
                    rows = await self._run_home(
                        self._cql.view_device, (box_id, device_id), Op.CURSOR, home
                    )
            except HomeRegionUnavailable:
                # The home we know is down; a forced move (failover) may
                # have named a new one, written in the surviving DCs.
                self._homes.forget(box_id)
                rows = await self._run(self._cql.box_get, (box_id,), KEYS)
                moved = (
                    self._route(rows[0]["home_region"])
                    if rows and rows[0]["home_region"] is not None
                    else home
                )
                if moved == home:
                    raise
                home = moved
                self._homes.put(box_id, home)
                continue
            seen = rows[0]["home_region"] if rows else None
            if seen is None or self._route(seen) == home:
                return home, rows
            home = self._route(seen)
            self._homes.put(box_id, home)
        raise StoreUnavailable("store: the box's home region keeps moving", applied=False)


__all__ = ["CassandraRouting"]
