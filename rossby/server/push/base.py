"""The pusher contract: how one wake-up reaches one device.

A wake-up says only "fetch": it carries the box's pending count and the
device's own opaque hint, never a sender, a message id or content, so a
push service (Google, Apple, Mozilla, an operator's gateway) learns that a
device got mail and nothing else.

A pusher answers with an outcome instead of raising, so the dispatcher
(``rossby.server.push.dispatch``) alone decides about retries and removal;
the push service's own answer (status, body) is logged by the pusher,
never passed on: it can name the endpoint or the token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from rossby.store.pushtargets import PushKind, PushTarget


@dataclass(frozen=True, slots=True)
class WakeUp:
    """What a device is told: how many messages wait, and its own hint."""

    pending: int
    hint: str = ""


class PushOutcome(enum.Enum):
    DELIVERED = "delivered"  # the push service accepted it (2xx)
    GONE = "gone"  # the target no longer exists (404/410, a rejected pushkey): remove it
    RETRY = "retry"  # try again later (429, 5xx, timeout, connection error)
    FAILED = "failed"  # refused for good (other 4xx): do not retry this wake-up


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: PushOutcome
    #: The push service's Retry-After, when it gave one (seconds).
    retry_after: float | None = None


class Pusher(Protocol):
    """Delivers wake-ups for the targets of one ``PushKind``."""

    kind: PushKind

    async def push(self, target: PushTarget, wake: WakeUp) -> PushResult:
        """Hand one wake-up to the push service; never raises for the push
        service's answers or for network errors (those are outcomes)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


__all__ = ["PushOutcome", "PushResult", "Pusher", "WakeUp"]
