"""This device's prekeys: generate, publish, refill and rotate them.

Other devices start a forward-secret session with this one while it is
offline by claiming a bundle from the server (PQXDH, docs/envelope.md): the
signed X25519 prekey, one one-time X25519 prekey, and one one-time
ML-KEM-768 prekey or, when that pool is empty, the last-resort one. The
private halves stay in ``state.bin`` (``PrekeyVault``); the server only
ever holds public keys, each signed by this device's Ed25519 key.

Lifecycle:

* after Authorize and CompleteLink, and after every identity rotation (the
  server deleted the prekeys signed by the old key): a full set, the pools
  at ``POOL_TARGET`` each;
* when a Fetch or a Subscribe stream says ``prekeys_low``: top the pools
  back up to ``POOL_TARGET``, and replace a missing signed or last-resort key;
* every ``ROTATE_AFTER_MS`` (7 days): a new signed and last-resort prekey;
  the old privates stay for ``GRACE_MS`` (30 days), for first messages
  already on their way, then are deleted;
* a one-time private is deleted as soon as a session used it
  (``rossby.client.sessions``); the privates of keys someone claimed but
  never used are bounded (``KEEP_CLAIMED``).

Private halves are saved BEFORE the upload, marked retired until the server
takes them: a crash after the server accepted cannot lose a key the server
hands out, and a key the server never took is deleted after the grace
period like any retired one.
"""

from __future__ import annotations

from collections.abc import Callable

from rossby.client.models import PrekeyStatusInfo
from rossby.client.session import Session, now_ms
from rossby.client.vault import PrekeyVault
from rossby.crypto.prekeys import (
    PrekeySecret,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from rossby.v1 import rossby_pb2 as pb

POOL_TARGET = 100
"""One-time keys of each kind this device keeps published (the server's
``prekey_pool_max`` defaults to 200, its ``prekey_low_water`` to 20)."""

KEEP_CLAIMED = POOL_TARGET
"""One-time privates kept, per pool, beyond the ones still published: keys
someone claimed but has not used yet. The device cannot tell which keys were
claimed, only how many the server still holds; the server hands the oldest
(lowest id) out first, so past ``POOL_TARGET + KEEP_CLAIMED`` privates the
oldest retire (and are deleted after ``GRACE_MS``). Without the bound,
anyone who claims and never writes would make the state grow forever."""

DAY_MS = 86_400_000
ROTATE_AFTER_MS = 7 * DAY_MS
GRACE_MS = 30 * DAY_MS


def status_info(status: pb.PrekeyStatus) -> PrekeyStatusInfo:
    return PrekeyStatusInfo(
        one_time=status.one_time_prekeys,
        one_time_kem=status.one_time_kem_prekeys,
        signed_prekey_id=status.signed_prekey_id,
        signed_uploaded_at_ms=status.signed_prekey_uploaded_at_ms,
        last_resort_id=status.last_resort_kem_prekey_id,
        low=status.low,
        low_water=status.low_water,
        pool_max=status.pool_max,
    )


def one_time_to_add(count: int, status: PrekeyStatusInfo) -> int:
    """How many one-time keys to add to a pool holding ``count``.

    Up to ``POOL_TARGET``; and when the server says ``low`` although the
    total is there (on Cassandra each region hands out its own share, and
    one share can run dry while another is full), twice the low water more,
    spread over the shares like every upload. Never past ``pool_max``.
    """
    pool_max = status.pool_max or 2 * POOL_TARGET
    wanted = max(0, POOL_TARGET - count)
    if status.low and not wanted:
        wanted = 2 * status.low_water
    return max(0, min(wanted, pool_max - count))


def _signed(secret: PrekeySecret) -> pb.SignedPrekey:
    return pb.SignedPrekey(
        key_id=secret.key_id, public_key=secret.public, signature=secret.signature
    )


class Prekeys:
    """Publishes and maintains this device's prekeys through the session."""

    def __init__(self, session: Session, *, clock: Callable[[], int] = now_ms) -> None:
        self._session = session
        self._clock = clock

    @property
    def _vault(self) -> PrekeyVault:
        return self._session.state.prekeys

    async def status(self) -> PrekeyStatusInfo:
        reply = await self._session.call(
            "GetPrekeyStatus", pb.GetPrekeyStatusRequest(), pb.GetPrekeyStatusResponse
        )
        return status_info(reply.status)

    async def publish(self, *, replace: bool = True) -> PrekeyStatusInfo:
        """A full set: new signed and last-resort prekeys, and both pools filled.

        ``replace`` drops what the server still holds of the pools (their
        privates are kept for the grace period): right after Authorize,
        CompleteLink or an identity rotation the server's pools are empty or
        signed by a key that is no longer this device's.
        """
        vault = self._vault
        if replace:
            now = self._clock()
            for key_id in (*vault.one_time, *vault.kem):
                vault.retire(key_id, now)
        return await self._upload(
            one_time=POOL_TARGET, kem=POOL_TARGET, rotate=True, replace_pools=replace
        )

    async def refill(self) -> PrekeyStatusInfo:
        """Top both pools up to ``POOL_TARGET``; replace a missing signed or
        last-resort prekey (a full set if the server holds none of ours)."""
        status = await self.status()
        vault = self._vault
        if status.signed_prekey_id != vault.signed_id or status.last_resort_id == 0:
            # The server dropped our prekeys (an identity rotation elsewhere,
            # a restored state): start over.
            return await self.publish(replace=True)
        one_time = one_time_to_add(status.one_time, status)
        kem = one_time_to_add(status.one_time_kem, status)
        if not one_time and not kem:
            return status
        return await self._upload(one_time=one_time, kem=kem, rotate=False, replace_pools=False)

    async def rotate(self) -> PrekeyStatusInfo:
        """A new signed and last-resort prekey; the old ones retire."""
        return await self._upload(one_time=0, kem=0, rotate=True, replace_pools=False)

    async def maintain(self, *, low: bool) -> None:
        """What a fetch or a stream does afterwards: purge expired privates,
        rotate when due, refill when the server says the pools run low."""
        vault = self._vault
        now = self._clock()
        vault.purge(now - GRACE_MS)
        if vault.signed_id == 0:
            await self.publish(replace=True)
        elif now - vault.rotated_at_ms >= ROTATE_AFTER_MS:
            await self.rotate()
        if low:
            await self.refill()

    async def _upload(
        self, *, one_time: int, kem: int, rotate: bool, replace_pools: bool
    ) -> PrekeyStatusInfo:
        s = self._session
        s.require_authorized()
        vault = self._vault
        signing = s.keyfile.keys.signing_private
        device = s.device_id
        now = self._clock()
        request = pb.UploadPrekeysRequest(replace_pools=replace_pools)
        new_ids: list[int] = []
        signed: PrekeySecret | None = None
        last_resort: PrekeySecret | None = None
        if rotate:
            signed = generate_signed_prekey(signing, device, vault.take_ids(1))
            (last_resort,) = generate_kem_prekeys(
                signing, device, vault.take_ids(1), 1, last_resort=True
            )
            vault.signed[signed.key_id] = signed.private
            vault.last_resort[last_resort.key_id] = last_resort.private
            request.signed_prekey.CopyFrom(_signed(signed))
            request.last_resort_kem_prekey.CopyFrom(_signed(last_resort))
            new_ids += [signed.key_id, last_resort.key_id]
        if one_time:
            for secret in generate_one_time_prekeys(vault.take_ids(one_time), one_time):
                vault.one_time[secret.key_id] = secret.private
                request.one_time_prekeys.append(
                    pb.OneTimePrekey(key_id=secret.key_id, public_key=secret.public)
                )
                new_ids.append(secret.key_id)
        if kem:
            for secret in generate_kem_prekeys(signing, device, vault.take_ids(kem), kem):
                vault.kem[secret.key_id] = secret.private
                request.one_time_kem_prekeys.append(_signed(secret))
                new_ids.append(secret.key_id)
        for key_id in new_ids:
            vault.retire(key_id, now)  # until the server took them
        s.save()
        try:
            reply = await s.call("UploadPrekeys", request, pb.UploadPrekeysResponse)
        except BaseException:
            vault.forget(new_ids)
            s.save()
            raise
        for key_id in new_ids:
            vault.retired.pop(key_id, None)
        for pool in (vault.one_time, vault.kem):
            live = sorted(k for k in pool if k not in vault.retired)
            for key_id in live[: max(0, len(live) - POOL_TARGET - KEEP_CLAIMED)]:
                vault.retire(key_id, now)
        if signed is not None and last_resort is not None:
            vault.retire(vault.signed_id, now)
            vault.retire(vault.last_resort_id, now)
            vault.signed_id, vault.last_resort_id = signed.key_id, last_resort.key_id
            vault.rotated_at_ms = now
        s.save()
        return status_info(reply.status)


__all__ = [
    "GRACE_MS",
    "KEEP_CLAIMED",
    "POOL_TARGET",
    "ROTATE_AFTER_MS",
    "Prekeys",
    "one_time_to_add",
    "status_info",
]
