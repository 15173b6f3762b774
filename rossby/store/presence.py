"""The presence part of the ``Store`` contract (docs/realtime.md).

Presence rows are hints for real-time delivery across processes, never a
source of truth; every backend keeps them (``Capabilities.presence``).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence

from rossby.store.model import Presence


class PresenceStore(abc.ABC):
    """Which server process holds a Subscribe stream of which device."""

    @abc.abstractmethod
    async def put_presence(self, presence: Presence) -> None:
        """Create or refresh a presence row; it disappears by itself after
        ``presence.expires_at`` unless refreshed again."""

    @abc.abstractmethod
    async def list_presence(self, box_id: uuid.UUID) -> list[Presence]:
        """The box's presence rows that have not expired (a small partition)."""

    @abc.abstractmethod
    async def delete_presence(
        self, box_id: uuid.UUID, device_id: uuid.UUID, server_id: str
    ) -> None:
        """Drop one row (the process's last stream of the device ended).
        Idempotent."""

    async def purge_presence(self) -> int:
        """Remove expired rows where the backend has no native TTL; answer
        rows removed."""
        return 0

    async def put_presences(self, presences: Sequence[Presence]) -> None:
        """``put_presence`` for many rows (a process refreshing all of its
        rows); a backend may write them in one transaction."""
        for presence in presences:
            await self.put_presence(presence)


__all__ = ["PresenceStore"]
