"""The tests' clocks: every code path that reads time takes a ``clock``
callable, so tests choose time instead of sleeping for it."""

from __future__ import annotations

import time

#: A fixed instant (2027-01-15) for tests that compare with literal times.
T = 1_800_000_000.0


class FakeClock:
    """Stands still at ``now`` until moved; with ``step``, every read first
    moves it by ``step`` (time that passes as the code runs)."""

    def __init__(self, now: float = T, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock:
    """Real time plus an adjustable offset: for what must agree with real
    time (Hawk timestamps, Cassandra's own TTLs) yet lets a test jump ahead,
    or play a process whose clock is skewed."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class SkewedClock:
    """A fixed skew against another clock, following it as it moves."""

    def __init__(self, base: WallClock, skew: float) -> None:
        self.base, self.skew = base, skew

    def __call__(self) -> float:
        return self.base() + self.skew
