"""Queue positions drawn from the writer's clock.

A position is ``(microseconds since 2020-01-01) << 12 | node``: time first,
so positions from every process interleave in arrival-time order and a
range of positions is a range of time (expiry horizon, buckets, settle
window); a random 12-bit node id in the low bits keeps two processes that
read the same microsecond from issuing the same position. The 2020 epoch
keeps the value well inside a signed 64-bit ``bigint`` (good until 2090).

Positions are strictly monotonic per allocator (``max(now, last + 1µs)``),
so a burst inside one clock tick, or a clock stepping backwards, never
reorders one process's own messages.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

from rossby.store.base import Position

EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z, Unix seconds
NODE_BITS = 12
NODE_MASK = (1 << NODE_BITS) - 1
MICROS = 1_000_000
BUCKET_SECONDS = 86_400
"""Width of one queue partition. Part of the schema: changing it moves rows
between partitions, so it can only change with a schema version."""


def micros_of(position: Position) -> int:
    """Microseconds since EPOCH encoded in ``position``."""
    return position >> NODE_BITS


def time_of(position: Position) -> float:
    """Unix seconds at which ``position`` was issued (by its writer's clock)."""
    return EPOCH + micros_of(position) / MICROS


def position_at(unix_seconds: float, node: int = 0) -> Position:
    """The position a writer reading ``unix_seconds`` would issue."""
    micros = int((unix_seconds - EPOCH) * MICROS)
    if micros < 0:
        raise ValueError(f"clock reads {unix_seconds}, before the position epoch (2020)")
    return (micros << NODE_BITS) | (node & NODE_MASK)


def span(seconds: float) -> Position:
    """``seconds`` expressed in position units (for windows, not points)."""
    return int(seconds * MICROS) << NODE_BITS


def bucket_of(position: Position) -> int:
    """The queue partition (day since EPOCH) holding ``position``."""
    return (max(position, 0) >> NODE_BITS) // (BUCKET_SECONDS * MICROS)


def write_timestamp(position: Position) -> int:
    """A Cassandra write timestamp (µs since the Unix epoch) ordered like
    positions.

    Used with ``USING TIMESTAMP`` on cells that may only grow (cursors,
    ``purged_through``): the write with the larger position then wins
    whatever the arrival order. Two positions of the same microsecond get
    the same timestamp, and Cassandra then keeps the larger value, which is
    again the larger position.
    """
    return EPOCH * MICROS + micros_of(position)


class Allocator:
    """Issues this process's positions and remembers the head it has seen.

    The node id is re-drawn after ``fork``: a worker that inherited a parent's
    allocator must not issue the parent's positions.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pid = -1
        self._node = 0
        self._last = 0
        self._check_fork()

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._node = secrets.randbits(NODE_BITS)

    @property
    def node(self) -> int:
        return self._node

    def now(self) -> Position:
        """The highest position below this clock's current microsecond:
        every position issued from now on (by a writer whose clock agrees)
        lies above it, whatever its node id."""
        return position_at(self._clock()) - 1

    def issue(self) -> Position:
        """A fresh position, strictly above every one issued here before."""
        self._check_fork()
        micros = max(micros_of(position_at(self._clock())), micros_of(self._last) + 1)
        self._last = (micros << NODE_BITS) | self._node
        return self._last

    def head(self) -> Position:
        """Now, or the last position issued here when a burst outran the
        clock's ticks. New devices start here; acks are clamped here."""
        return max(self.now(), self._last)
