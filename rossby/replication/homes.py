"""Home regions: which datacenter coordinates a box's queue.

Every box has a home region, recorded with the box at Authorize (the
region of the server that created it). Queue writes and reads, cursor
updates and compaction of the box are coordinated in the home DC at
LOCAL_QUORUM from whichever server handles the call, so the settle-window
argument of docs/store.md holds inside one DC (docs/replication.md).

``HomeCache`` remembers homes per process. It never has to be exact: every
home-routed operation reads the box partition in the DC it routed to and
checks the home recorded there (the *fence*); a stale entry costs one
extra read and is corrected on the spot.
"""

from __future__ import annotations

import abc
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rossby.errors import StoreUnavailable

CACHE_SECONDS = 300.0
CACHE_ENTRIES = 100_000


class HomeRegionUnavailable(StoreUnavailable):
    """The box's home datacenter did not answer (down, or cut off).

    Send answers it per message (retry later with the same message id);
    Fetch and Ack fail with it. Nothing is queued outside the home, so
    nothing can be skipped when the home returns (docs/replication.md,
    "Failover").
    """

    default_reason = "HOME_REGION_UNAVAILABLE"

    def __init__(self, home: str, message: str, *, applied: bool | None = None) -> None:
        super().__init__(f"home region {home} unavailable: {message}", applied=applied)
        self.home = home
        self.metadata["home_region"] = home


class HomeCache:
    """A bounded, time-limited map box id -> home DC."""

    def __init__(
        self,
        seconds: float = CACHE_SECONDS,
        entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._entries = entries
        self._clock = clock
        self._map: OrderedDict[uuid.UUID, tuple[str, float]] = OrderedDict()

    def get(self, box_id: uuid.UUID) -> str | None:
        hit = self._map.get(box_id)
        if hit is None:
            return None
        home, until = hit
        if until < self._clock():
            del self._map[box_id]
            return None
        return home

    def put(self, box_id: uuid.UUID, home: str) -> None:
        self._map[box_id] = (home, self._clock() + self._seconds)
        self._map.move_to_end(box_id)
        while len(self._map) > self._entries:
            self._map.popitem(last=False)

    def forget(self, box_id: uuid.UUID) -> None:
        self._map.pop(box_id, None)


@dataclass(frozen=True, slots=True)
class HomeRecord:
    """The home statics of a box partition, as one DC holds them."""

    home_region: str
    epoch: int
    moved_at_us: int  # µs since the Unix epoch of the last move (0: never moved)
    recovery_floor: int  # position; 0 when no recovery is running
    purged_through: int

    @property
    def recovering(self) -> bool:
        return self.recovery_floor > 0


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What ``reconcile`` did for one box."""

    home_region: str
    copied: int  # message rows copied from other DCs into the home
    sources: tuple[str, ...]  # the DCs read
    cleared: bool  # the recovery floor was lifted


class HomeRegions(abc.ABC):
    """Operator commands on boxes' home regions (``rossby admin``,
    docs/replication.md "Moving a home"): what a store with the
    ``home_regions`` capability answers from ``Store.home_regions()``."""

    @property
    @abc.abstractmethod
    def datacenters(self) -> tuple[str, ...]:
        """Every datacenter of the topology, this one first or not."""

    @abc.abstractmethod
    async def home_record(self, box_id: uuid.UUID, dc: str) -> HomeRecord | None:
        """The box's home statics as ``dc`` holds them, or None."""

    @abc.abstractmethod
    async def boxes_homed_in(self, region: str) -> list[uuid.UUID]:
        """Every box whose home is ``region`` (a full scan, for operators)."""

    @abc.abstractmethod
    async def move_home(self, box_id: uuid.UUID, region: str, *, force: bool = False) -> HomeRecord:
        """Make ``region`` the box's home; planned, or forced (failover)."""

    @abc.abstractmethod
    async def reconcile_home(self, box_id: uuid.UUID, *, wait: bool = True) -> Reconciled:
        """End a move's recovery: copy what other DCs hold, lift the floor."""


__all__ = ["HomeCache", "HomeRecord", "HomeRegionUnavailable", "HomeRegions", "Reconciled"]
