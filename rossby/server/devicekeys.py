"""The active devices' Hawk keys, as the verifier and open streams need them.

One lookup serves both: Hawk verification asks for a caller's key, and an
open Subscribe stream asks when "this device is active" was last read, so
it re-checks its device as often as a call would (``auth_cache_ttl``).
Its own object, built before the real-time side and the verifier, so both
receive it at construction.
"""

from __future__ import annotations

import uuid

from rossby.logging import get_logger
from rossby.server.auth import Identity
from rossby.server.authcache import AuthCache
from rossby.server.hawkkeys import HawkKeyring, HawkKeyUnavailable
from rossby.server.logtags import box_tag
from rossby.store import DeviceState, Store

log = get_logger("rossby.rpc")


class DeviceKeys:
    """Hawk keys of active devices: read through the auth cache, opened from
    their stored (wrapped) form under the keyring."""

    def __init__(
        self, store: Store, auth_cache: AuthCache, keyring: HawkKeyring, log_key: bytes
    ) -> None:
        self.store = store
        self.auth_cache = auth_cache
        self.keyring = keyring
        self._log_key = log_key

    async def hawk_key(self, identity: Identity) -> bytes | None:
        """The caller's Hawk key, opened from its stored (wrapped) form.

        Unwrapping happens inside the cache's loader, so it costs one
        AES-GCM open per cache miss and nothing on a hit. A key that does
        not open (its master key was retired, or the row was tampered with)
        refuses the call like an unknown device, and is logged for the
        operator; refusals are not cached.
        """
        box_id, device_id = uuid.UUID(identity.box_id), uuid.UUID(identity.device_id)
        key, _ = await self.entry(box_id, device_id)
        return key

    async def entry(self, box_id: uuid.UUID, device_id: uuid.UUID) -> tuple[bytes | None, float]:
        async def load() -> bytes | None:
            device = await self.store.get_device(box_id, device_id)
            if device is None or device.state is not DeviceState.ACTIVE:
                return None
            try:
                return self.keyring.unwrap(box_id, device_id, device.hawk_key)
            except HawkKeyUnavailable as exc:
                log.error(
                    "hawk_key_unavailable",
                    key_id=exc.key_id,
                    box=box_tag(self._log_key, str(box_id)),
                    hint="the master key that wrapped it is not in hawk_keys",
                )
                return None

        return await self.auth_cache.hawk_keys.get_entry(
            (box_id, device_id), load, lambda key: key is not None
        )

    async def active_since(self, box_id: uuid.UUID, device_id: uuid.UUID) -> float | None:
        """For open streams: when "this device is active" was read (monotonic,
        as the auth cache keeps it), or None once it is not."""
        key, read_at = await self.entry(box_id, device_id)
        return None if key is None else read_at


__all__ = ["DeviceKeys"]
