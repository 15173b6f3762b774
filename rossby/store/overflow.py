"""Per-device overflow: the rule both backends apply when one device of a box
falls more than ``pending_cap`` behind (docs/store.md, "Overflow").

A box's cap used to count from its *lowest* cursor, so one device that never
came back (a tablet in a drawer) made every Send to the box fail until
someone revoked it. Now the cap counts from the *most advanced* device's
cursor (``send_floor``): senders are refused only when even the device that
reads most is ``pending_cap`` behind. A device further behind than that
overflows: its oldest pending messages are dropped *for it* (its cursor moves
past them; other devices keep them) and it is told how many, from where
(``Gap``), so its client can warn the user and resync.

The trim is lazy and the same on both backends. Nothing is done on the Send
path; a backend trims a device when that device fetches from its floor and,
for every device of the box, when it compacts (so a laggard no longer holds
compaction back for the message TTL). Both ask the same question: of the
box's live messages above the lowest cursor, which are the ``pending_cap + 1``
newest (``newest_first``)? A device whose cursor lies below the oldest of
those has more than ``pending_cap`` messages pending, and its cursor moves
to that position (``plan``): exactly the ``pending_cap`` newest stay owed to
it, and never fewer than the most advanced device is still owed. A device
with at most ``pending_cap`` pending is never touched.

The dropped range is recorded with the cursor move, durably and in the same
write, and reported by every Fetch that starts at or below it (``reported``)
until the device acks at or above ``gap.through`` (``cleared``): a crash
between the fetch that dropped messages and the client's ack cannot lose the
report, and a device that fetches twice sees the same gap. A second trim
before that ack widens the recorded gap (``widened``) instead of replacing it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from rossby.store.model import Gap, Position


def send_floor(cursors: Iterable[Position], purged: Position) -> Position:
    """Where the cap counts from: the most advanced active cursor (never
    below what compaction removed). A box without active devices counts
    from its purge mark, as before: nobody reads it, compaction empties it."""
    return max([purged, *cursors])


def from_floor(after: Position, cursor: Position) -> bool:
    """Whether a fetch starts at the device's floor (``after`` 0, or any
    ``after`` not past its cursor): the fetch that trims a device over the
    cap. A page further on is the same read continued, and trims nothing."""
    return after <= cursor


def bound(newest_first: Sequence[Position], cap: int) -> Position | None:
    """The cursor a device over the cap moves to, given the box's live
    positions newest first (at least the ``cap + 1`` newest, or all there
    are): the ``cap + 1``-th newest, so the ``cap`` newer ones stay owed.
    None when the box holds at most ``cap`` live messages (nobody is over)."""
    if len(newest_first) <= cap:
        return None
    return newest_first[cap]


def plan(
    cursors: Mapping[uuid.UUID, Position],
    newest_first: Sequence[Position],
    cap: int,
    front: Position,
) -> dict[uuid.UUID, Position]:
    """Which devices are over the cap and the cursor each moves to.

    ``front`` is the lowest position the box's most advanced device may
    still be handed: its cursor (``send_floor``) less the settle window it
    re-reads. No cursor moves past it, so what even the most advanced device
    may still be given is never dropped for anyone. That device is never trimmed, which
    matters where the cap can be overshot (Cassandra's racing senders) and
    when the device that kept up is revoked: the laggard is then the front,
    keeps everything, and the box refuses mail until it reads."""
    to = bound(newest_first, cap)
    if to is None:
        return {}
    to = min(to, front)
    return {device: to for device, cursor in cursors.items() if cursor < to}


def widened(recorded: Gap | None, cursor: Position, through: Position, missed: int) -> Gap:
    """The gap to record when the cursor moves from ``cursor`` to ``through``,
    dropping ``missed`` live messages: added to a gap not yet acknowledged,
    so the device learns of both drops at once."""
    if recorded is None or recorded.through < cursor:
        # A gap passed by the cursor was acknowledged (or is about to be).
        return Gap(missed=missed, after=cursor, through=through)
    return Gap(missed=recorded.missed + missed, after=recorded.after, through=through)


def reported(recorded: Gap | None, after: Position) -> Gap | None:
    """The gap a page starting after ``after`` carries: the recorded one
    while the page starts at or below it (``after`` 0 is "from the cursor")."""
    if recorded is None or after > recorded.through:
        return None
    return recorded


def cleared(recorded: Gap | None, acked: Position) -> bool:
    """Whether an ack through ``acked`` ends the gap's report."""
    return recorded is not None and acked >= recorded.through


__all__ = ["bound", "cleared", "from_floor", "plan", "reported", "send_floor", "widened"]
