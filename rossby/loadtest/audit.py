"""The delivery audit: every acknowledged send reaches every device of its box exactly once.

Vocabulary (also in docs/benchmarks.md, "rossby loadtest"):

acknowledged
    A (recipient box, message id) whose SendResult was QUEUED or DUPLICATE.
    Sends that failed as a whole, or were REJECTED, are not audited (a
    rejected send that was retried and then acknowledged is).
expected delivery
    One (acknowledged send, device of the recipient box) pair.
delivered
    The device fetched that message id at least once. Devices dedupe by
    message id the way a client does, so only the first copy counts.
lost
    An expected delivery never fetched by the end of the drain.
duplicate
    The device fetched a message id again *after it had already acked past
    its first delivery*, and the server presented the copy as new: at a
    position above the device's cursor. A client that remembers ids only for
    the settle window would show such a message twice. Must be 0.
raw repeat
    Any other re-delivery of an id the device already has: the re-read of the
    settle window below the cursor (docs/store.md; expected on Cassandra,
    0 on SQLite), or a page fetched again before its ack. Dropped by the
    dedupe, counted for information.
repositioned
    A re-delivery at a different position than the first (informational;
    each is also a raw repeat or a duplicate).
unexpected
    A delivered id nobody acknowledged (e.g. a Send whose answer was lost
    but which did queue). Informational.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 5
"""How many example ids each problem list keeps for the report."""


@dataclass(slots=True)
class DeviceAudit:
    """A simulated device's receive side, in the terms above."""

    received: dict[str, int] = field(default_factory=dict)
    acked_through: int = 0
    raw_repeats: int = 0
    duplicates: int = 0
    repositioned: int = 0
    duplicate_examples: list[str] = field(default_factory=list)

    def observe(self, message_id: str, position: int) -> bool:
        """Record one fetched message; True when it is new to this device."""
        first = self.received.get(message_id)
        if first is None:
            self.received[message_id] = position
            return True
        if position != first:
            self.repositioned += 1
        if first <= self.acked_through < position:
            self.duplicates += 1
            if len(self.duplicate_examples) < EXAMPLES:
                self.duplicate_examples.append(f"{message_id}@{first}->{position}")
        else:
            self.raw_repeats += 1
        return False

    def acked(self, cursor: int) -> None:
        self.acked_through = max(self.acked_through, cursor)

    def missing(self, expected: Iterable[str]) -> list[str]:
        return [m for m in expected if m not in self.received]


@dataclass(slots=True)
class AuditResult:
    acknowledged: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    raw_repeats: int = 0
    repositioned: int = 0
    unexpected: int = 0
    lost_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)

    def add_device(self, device_label: str, audit: DeviceAudit, expected: set[str]) -> None:
        missing = audit.missing(expected)
        self.expected += len(expected)
        self.delivered += len(expected) - len(missing)
        self.lost += len(missing)
        for m in missing[: max(0, EXAMPLES - len(self.lost_examples))]:
            self.lost_examples.append(f"{m} -> {device_label}")
        self.unexpected += sum(1 for m in audit.received if m not in expected)
        self.duplicates += audit.duplicates
        self.raw_repeats += audit.raw_repeats
        self.repositioned += audit.repositioned
        for d in audit.duplicate_examples[: max(0, EXAMPLES - len(self.duplicate_examples))]:
            self.duplicate_examples.append(f"{d} on {device_label}")

    def merge(self, other: dict[str, Any]) -> None:
        for name in (
            "expected",
            "delivered",
            "lost",
            "duplicates",
            "raw_repeats",
            "repositioned",
            "unexpected",
        ):
            setattr(self, name, getattr(self, name) + int(other[name]))
        for name in ("lost_examples", "duplicate_examples"):
            mine: list[str] = getattr(self, name)
            mine.extend(other[name][: max(0, EXAMPLES - len(mine))])

    def to_dict(self) -> dict[str, Any]:
        return {
            "acknowledged": self.acknowledged,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "raw_repeats": self.raw_repeats,
            "repositioned": self.repositioned,
            "unexpected": self.unexpected,
            "lost_examples": list(self.lost_examples),
            "duplicate_examples": list(self.duplicate_examples),
        }


__all__ = ["AuditResult", "DeviceAudit"]
