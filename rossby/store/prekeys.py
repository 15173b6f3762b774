"""The prekey part of the ``Store`` contract (docs/store.md "Prekeys").

A device's prekeys let others start a forward-secret session with it while
it is offline. The store keeps, per (box, device): the signed X25519 prekey
and the last-resort ML-KEM-768 prekey (one each, replaced by upload), and two
pools of one-time keys (X25519 and ML-KEM-768) that ``claim_prekeys`` hands
out **at most once each**, concurrent claims in every process and every
region included. That promise is the point of the pools: a one-time key that
two senders both use gives neither the forward secrecy it was for.

The server has verified every signature before calling ``put_prekeys``; the
store keeps bytes and never looks inside them.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from rossby.crypto.prekeys import PrekeyKind
from rossby.errors import StoreUnavailable


@dataclass(frozen=True, slots=True)
class Prekey:
    """One public prekey as uploaded. ``signature`` is empty for one-time X25519 keys."""

    key_id: int
    public_key: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class PrekeyUpload:
    """One ``UploadPrekeys`` call, already validated by the server."""

    signed_prekey: Prekey | None = None
    one_time_prekeys: Sequence[Prekey] = ()
    one_time_kem_prekeys: Sequence[Prekey] = ()
    last_resort_kem_prekey: Prekey | None = None
    #: Drop both one-time pools before adding.
    replace_pools: bool = False
    #: Server time of the upload, milliseconds since the Unix epoch.
    uploaded_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class PrekeyCounts:
    """What a device has published; ``lowest_*`` is the smallest share of
    any region (equal to the total on a single-region backend), so the
    server can warn before any region runs dry."""

    one_time_prekeys: int
    one_time_kem_prekeys: int
    lowest_one_time_prekeys: int
    lowest_one_time_kem_prekeys: int
    signed_prekey_id: int | None
    signed_prekey_uploaded_at_ms: int
    last_resort_kem_prekey_id: int | None


@dataclass(frozen=True, slots=True)
class ClaimedPrekeys:
    """One device's bundle from ``claim_prekeys``.

    ``kem_prekey`` is a one-time KEM key when ``kem_last_resort`` is False,
    else the last-resort one. ``one_time_prekey`` is None when that pool was
    empty (in this region).
    """

    device_id: uuid.UUID
    signed_prekey: Prekey
    one_time_prekey: Prekey | None
    kem_prekey: Prekey
    kem_last_resort: bool


class PoolFull(Exception):
    """Raised by ``put_prekeys`` when a pool would exceed its limit; nothing was written.

    Not a ``RossbyError``: the server maps it to PREKEY_POOL_FULL with the
    numbers it knows.
    """

    def __init__(self, kind: PrekeyKind | None, have: int, limit: int) -> None:
        # ``kind`` None: the one-time X25519 pool (those keys carry no signed kind).
        name = kind.name if kind is not None else "ONE_TIME"
        super().__init__(f"{name} pool would hold {have} keys, limit {limit}")
        self.kind = kind
        self.have = have
        self.limit = limit


class PrekeyClaimContended(StoreUnavailable):
    """A claim lost every compare-and-set round to concurrent claims of the
    same pool (Cassandra, other processes of the region). Keys this call
    may already have taken for other pools are spent, never handed out
    twice; retry after a moment."""

    default_reason = "PREKEY_CLAIM_CONTENDED"


class PrekeyStore(abc.ABC):
    """Per-device prekeys: two replaceable keys and two claim-once pools."""

    @abc.abstractmethod
    async def put_prekeys(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        upload: PrekeyUpload,
        *,
        pool_max: int,
    ) -> PrekeyCounts:
        """Apply one upload and answer the counts after it.

        A one-time key whose id is already in its pool replaces it (a retried
        upload stores nothing twice). An id already handed out stays spent
        for at least ``SPENT_HOLD`` (``rossby.store.prekeypools``): naming
        it again adds nothing, so a retry racing a claim cannot hand one key
        out twice. Raises ``PoolFull`` (writing nothing) when a pool would
        hold more than ``pool_max`` keys.
        """

    @abc.abstractmethod
    async def prekey_counts(self, box_id: uuid.UUID, device_id: uuid.UUID) -> PrekeyCounts:
        """The device's counts (zeros and None when it never uploaded)."""

    @abc.abstractmethod
    async def claim_prekeys(
        self, box_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> list[ClaimedPrekeys]:
        """Take one bundle per device that has a signed and a last-resort prekey.

        Each one-time key is removed as it is handed out and is handed out
        at most once, whatever the concurrency and however many regions
        serve the store. A device without a signed prekey or a last-resort
        key is left out of the answer.
        """

    @abc.abstractmethod
    async def delete_prekeys(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Forget every prekey of the device (it was revoked, or rotated its
        identity keys and so invalidated every signature). Idempotent. Spent
        ids stay spent (see ``put_prekeys``)."""


__all__ = [
    "ClaimedPrekeys",
    "PoolFull",
    "Prekey",
    "PrekeyClaimContended",
    "PrekeyCounts",
    "PrekeyStore",
    "PrekeyUpload",
]
