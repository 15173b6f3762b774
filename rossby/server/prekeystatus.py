"""A device's prekey status, and the cheap ``prekeys_low`` hint for Fetch and Subscribe.

``low`` tells a device to upload before senders fall back to its
last-resort key: a pool (the smallest region's share, ``PrekeyCounts``)
below ``prekey_low_water``, or no signed or no last-resort prekey at all
(nobody can start a session with it then).

Fetch is the hot path, so the hint comes from a per-device cache of the
answer, kept ``LOW_TTL`` seconds. The process that changes a device's
prekeys (an upload, a claim, a rotation or revocation) updates or drops the
entry at once; claims served by other processes show within ``LOW_TTL``.
A stale hint costs little either way: a device told "low" late still has
``prekey_low_water`` keys per share to go, one told it early uploads keys
the pool has room for.

A failed read answers "not low" and is logged: the hint is advisory, and a
store that cannot count prekeys must not fail the Fetch or stream that
carries the messages (the next read, at most ``LOW_TTL`` later on a hit,
asks again).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from rossby import errors
from rossby.logging import get_logger
from rossby.server.authcache import ExpiringCache
from rossby.store.prekeys import PrekeyCounts, PrekeyStore
from rossby.v1 import rossby_pb2 as pb

log = get_logger("rossby.rpc")

#: Seconds a device's ``low`` answer is reused on the Fetch and stream paths:
#: one counts read per active device per this period, and how late a claim
#: on another process may show.
LOW_TTL = 30.0


def is_low(counts: PrekeyCounts, low_water: int) -> bool:
    return (
        counts.signed_prekey_id is None
        or counts.last_resort_kem_prekey_id is None
        or counts.lowest_one_time_prekeys < low_water
        or counts.lowest_one_time_kem_prekeys < low_water
    )


class PrekeyStatus:
    """Counts to ``PrekeyStatus`` messages, and the cached ``low`` per device."""

    def __init__(
        self,
        store: PrekeyStore,
        *,
        low_water: int,
        pool_max: int,
        ttl: float = LOW_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.low_water = low_water
        self.pool_max = pool_max
        self._low: ExpiringCache[tuple[uuid.UUID, uuid.UUID], bool] = ExpiringCache(
            ttl, clock=clock
        )

    def to_pb(self, counts: PrekeyCounts) -> pb.PrekeyStatus:
        return pb.PrekeyStatus(
            one_time_prekeys=counts.one_time_prekeys,
            one_time_kem_prekeys=counts.one_time_kem_prekeys,
            signed_prekey_id=counts.signed_prekey_id or 0,
            signed_prekey_uploaded_at_ms=counts.signed_prekey_uploaded_at_ms,
            last_resort_kem_prekey_id=counts.last_resort_kem_prekey_id or 0,
            low=is_low(counts, self.low_water),
            low_water=self.low_water,
            pool_max=self.pool_max,
        )

    def counted(self, box_id: uuid.UUID, device_id: uuid.UUID, counts: PrekeyCounts) -> None:
        """Fresh counts of the device (an upload, a status read): the hint follows them."""
        self._low.put((box_id, device_id), is_low(counts, self.low_water))

    def changed(self, box_id: uuid.UUID, device_ids: Iterable[uuid.UUID]) -> None:
        """These devices' prekeys changed without new counts (claimed, deleted)."""
        for device_id in device_ids:
            self._low.forget((box_id, device_id))

    async def void(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Delete the device's prekeys (revoked, or rotated: every signature
        was made with a key that is no longer its own), and the hint."""
        await self.store.delete_prekeys(box_id, device_id)
        self.changed(box_id, [device_id])

    async def read(self, box_id: uuid.UUID, device_id: uuid.UUID) -> pb.PrekeyStatus:
        """GetPrekeyStatus: always read, and refresh the hint with it."""
        counts = await self.store.prekey_counts(box_id, device_id)
        self.counted(box_id, device_id, counts)
        return self.to_pb(counts)

    def cached_low(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bool | None:
        """The hint when this process has it fresh, else None (then ``low``)."""
        return self._low.peek((box_id, device_id))

    async def low(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bool:
        """The hint for Fetch and Subscribe; from the cache when it has it."""

        async def load() -> bool:
            counts = await self.store.prekey_counts(box_id, device_id)
            return is_low(counts, self.low_water)

        try:
            return await self._low.get((box_id, device_id), load, _always)
        except errors.Unavailable as exc:
            log.warning("prekeys_low_unavailable", reason=exc.reason)
            return False


def _always(value: bool) -> bool:
    return True


__all__ = ["LOW_TTL", "PrekeyStatus", "is_low"]
