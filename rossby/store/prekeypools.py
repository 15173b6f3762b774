"""What both backends share about prekeys (``PrekeyStore``): the pool and
key codes their tables store, the checks an upload must pass, and the
answer records built from rows. Kept out of the backends so SQLite and
Cassandra cannot drift.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rossby.crypto.prekeys import PrekeyKind
from rossby.store.prekeys import ClaimedPrekeys, PoolFull, Prekey, PrekeyCounts, PrekeyUpload


class Pool(enum.IntEnum):
    """A one-time pool as its rows name it. The KEM pool keeps its signed
    kind's number; the X25519 one-time keys have no signed kind, so 0."""

    ONE_TIME = 0
    ONE_TIME_KEM = int(PrekeyKind.ONE_TIME_KEM)

    @property
    def kind(self) -> PrekeyKind | None:
        """What ``PoolFull`` names (None: the unsigned one-time X25519 keys)."""
        return PrekeyKind.ONE_TIME_KEM if self is Pool.ONE_TIME_KEM else None


#: Seconds a handed-out key id stays *spent* in its pool: an upload naming it
#: again (a client's retry of the upload that first carried it) does not put
#: it back, so a retry racing a claim cannot hand one key out twice. Three
#: hours, Cassandra's ``gc_grace_seconds`` of ``prekey_pools`` (the claim's
#: tombstone is the marker there) and far beyond any client's retry. Ids are
#: a per-device counter in the client, so no legitimate upload reuses one.
SPENT_HOLD = 3 * 3600.0

#: The two replaceable keys, stored under their signed kind.
SINGLE_KINDS = (PrekeyKind.SIGNED, PrekeyKind.LAST_RESORT_KEM)


def pool_keys(upload: PrekeyUpload) -> dict[Pool, dict[int, Prekey]]:
    """The upload's one-time keys by pool and id; a repeated id within the
    upload keeps the last one (the server refuses such requests anyway)."""
    return {
        Pool.ONE_TIME: {k.key_id: k for k in upload.one_time_prekeys},
        Pool.ONE_TIME_KEM: {k.key_id: k for k in upload.one_time_kem_prekeys},
    }


def single_keys(upload: PrekeyUpload) -> dict[PrekeyKind, Prekey]:
    """The replaceable keys the upload carries."""
    out: dict[PrekeyKind, Prekey] = {}
    if upload.signed_prekey is not None:
        out[PrekeyKind.SIGNED] = upload.signed_prekey
    if upload.last_resort_kem_prekey is not None:
        out[PrekeyKind.LAST_RESORT_KEM] = upload.last_resort_kem_prekey
    return out


def check_pool_size(pool: Pool, have: int, pool_max: int) -> None:
    """Raise ``PoolFull`` when ``pool`` would hold more than ``pool_max``."""
    if have > pool_max:
        raise PoolFull(pool.kind, have, pool_max)


@dataclass(frozen=True, slots=True)
class SingleKey:
    """A stored replaceable key and when it was uploaded."""

    key: Prekey
    uploaded_at_ms: int


def counts(
    singles: Mapping[PrekeyKind, SingleKey],
    shares: Mapping[Pool, Sequence[int]],
) -> PrekeyCounts:
    """``PrekeyCounts`` from the stored replaceable keys and each pool's
    per-region share sizes (one entry per region; one on SQLite)."""
    signed = singles.get(PrekeyKind.SIGNED)
    last = singles.get(PrekeyKind.LAST_RESORT_KEM)
    one, kem = list(shares.get(Pool.ONE_TIME, ())), list(shares.get(Pool.ONE_TIME_KEM, ()))
    return PrekeyCounts(
        one_time_prekeys=sum(one),
        one_time_kem_prekeys=sum(kem),
        lowest_one_time_prekeys=min(one, default=0),
        lowest_one_time_kem_prekeys=min(kem, default=0),
        signed_prekey_id=signed.key.key_id if signed else None,
        signed_prekey_uploaded_at_ms=signed.uploaded_at_ms if signed else 0,
        last_resort_kem_prekey_id=last.key.key_id if last else None,
    )


def claimed(
    device_id: uuid.UUID,
    singles: Mapping[PrekeyKind, SingleKey],
    one_time: Prekey | None,
    kem: Prekey | None,
) -> ClaimedPrekeys:
    """One device's bundle: the one-time KEM key if one was taken, else the
    last-resort key (``kem_last_resort``)."""
    last = singles[PrekeyKind.LAST_RESORT_KEM].key
    return ClaimedPrekeys(
        device_id=device_id,
        signed_prekey=singles[PrekeyKind.SIGNED].key,
        one_time_prekey=one_time,
        kem_prekey=kem if kem is not None else last,
        kem_last_resort=kem is None,
    )


def claimable(singles: Mapping[PrekeyKind, SingleKey]) -> bool:
    """A device is handed out only with both replaceable keys: without the
    signed prekey no session can start, without the last-resort key an
    empty pool would leave it unreachable."""
    return all(kind in singles for kind in SINGLE_KINDS)


def distinct(device_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Each device once, in the order asked (a repeat must not spend a
    second key of the same device)."""
    return list(dict.fromkeys(device_ids))


__all__ = [
    "SINGLE_KINDS",
    "SPENT_HOLD",
    "Pool",
    "SingleKey",
    "check_pool_size",
    "claimable",
    "claimed",
    "counts",
    "distinct",
    "pool_keys",
    "single_keys",
]
