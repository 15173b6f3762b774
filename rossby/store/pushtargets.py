"""The push-target part of the ``Store`` contract (docs/store.md "Push targets").

A device with no open stream is woken through the target it registered
(``SetPushTarget``): a Web Push subscription or a token behind an operator's
push gateway. At most one target per (box, device); registering again
replaces it. The rows are small and per box, so a Send can list a box's
targets in one partition read.

A target is an address to wake, not a secret to keep, but it still
identifies a device to a push service: it is removed with the device
(revocation, idle unlink) and when the push service answers that it is gone.
"""

from __future__ import annotations

import abc
import enum
import uuid
from dataclasses import dataclass, field


class PushKind(enum.Enum):
    """How a target is reached; the value is what the stores keep."""

    WEB_PUSH = "web_push"  # RFC 8030 + 8291 + 8292, the endpoint is the push service's URL
    GATEWAY = "gateway"  # Matrix Push Gateway API, the operator's gateway for ``app_id``


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One device's registration, as validated by the server.

    For ``WEB_PUSH``: ``endpoint``, ``p256dh`` (65-byte uncompressed P-256
    point) and ``auth`` (16 bytes) are set, ``app_id`` and ``pushkey`` empty.
    For ``GATEWAY``: ``app_id`` and ``pushkey`` are set, the others empty.
    ``hint`` is the device's opaque string echoed in wake-ups.
    ``registered_at`` is the server clock at registration (seconds), which
    also tells two registrations of one device apart.
    """

    box_id: uuid.UUID
    device_id: uuid.UUID
    kind: PushKind
    registered_at: float
    endpoint: str = ""
    p256dh: bytes = field(default=b"", repr=False)
    auth: bytes = field(default=b"", repr=False)
    app_id: str = ""
    pushkey: str = field(default="", repr=False)
    hint: str = ""

    def stored(self) -> tuple[str, float, str, bytes, bytes, str, str, str]:
        """The columns after (box_id, device_id), in the order both
        backends' ``push_targets`` tables declare them."""
        return (
            self.kind.value,
            self.registered_at,
            self.endpoint,
            self.p256dh,
            self.auth,
            self.app_id,
            self.pushkey,
            self.hint,
        )


class PushTargetStore(abc.ABC):
    """Where each device is woken."""

    @abc.abstractmethod
    async def put_push_target(self, target: PushTarget) -> None:
        """Create or replace the device's target. The caller checked that
        the device is active."""

    @abc.abstractmethod
    async def list_push_targets(self, box_id: uuid.UUID) -> list[PushTarget]:
        """The box's targets (one partition; at most one per device)."""

    @abc.abstractmethod
    async def delete_push_target(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        registered_at: float | None = None,
    ) -> None:
        """Remove the device's target. With ``registered_at``, only if the
        stored target is still that registration: a push service's "gone"
        for an old subscription must not remove the one the device has just
        registered. Idempotent."""


__all__ = ["PushKind", "PushTarget", "PushTargetStore"]
