"""The server's own removal of an idle device: one unsigned key-log entry,
then everything a revocation does.

Apart from ``rossby.server.idle`` (which decides *when*) because this is
the key-log write, and apart from ``Accounts`` (which owns revocation) so
each stays one job; it receives the accounts' key log and ``retire`` step
at construction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

from rossby.crypto.keylog import NO_ACTOR, ChangeKind
from rossby.logging import get_logger
from rossby.server.idle import IdleRule
from rossby.server.keylog import KeyLog, active_keys
from rossby.store import Device, Store
from rossby.store.accounts import KeyLogEntry

log = get_logger(__name__)


class _NotUnlinked(Exception):
    """The log no longer allows an idle unlink (the device left, changed
    keys, or is the last one): nothing to do, and nothing to report."""


class IdleUnlinker:
    def __init__(
        self,
        store: Store,
        key_log: KeyLog,
        retire: Callable[[uuid.UUID, uuid.UUID], Awaitable[None]],
        *,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.key_log = key_log
        #: ``Accounts.retire``: the device row, caches, streams, prekeys.
        self.retire = retire
        self.clock = clock

    async def unlink(self, box_id: uuid.UUID, device: Device, rule: IdleRule) -> bool:
        """Unlink ``device`` for idleness; true when it is unlinked (by this
        call or a concurrent one).

        The rule is checked again on a fresh read of the box, and against
        the log the entry extends (a concurrent revocation, rotation or
        unlink wins). Two processes unlinking one device at once append one
        entry: ``KeyLog.append`` answers a retry of a recorded change with
        its entry (and a loser of the append race re-reads and finds it),
        and both then complete the removal, which is idempotent.
        """
        devices = await self.store.list_devices(box_id)
        if device.device_id not in {d.device_id for d in rule.due(devices, self.clock())}:
            return False
        target = next(d for d in devices if d.device_id == device.device_id)
        keys = (target.keys.encryption_key, target.keys.signing_key)

        def still_listed(entries: Sequence[KeyLogEntry]) -> None:
            # Also refuses a box from before key logs (no entries): a first
            # entry that removes a device no reader could check.
            active = active_keys(entries)
            if active.get(target.device_id) != keys or len(active) <= 1:
                raise _NotUnlinked

        try:
            await self.key_log.append(
                box_id,
                ChangeKind.IDLE_UNLINK,
                target.device_id,
                NO_ACTOR,
                keys[0],
                keys[1],
                b"",
                check=still_listed,
            )
        except _NotUnlinked:
            return False
        await self.retire(box_id, target.device_id)
        log.info("device_idle_unlinked")
        return True


__all__ = ["IdleUnlinker"]
