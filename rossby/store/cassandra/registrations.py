"""Contacts (contact hash -> box) and pending registrations on Cassandra:
a mixin of ``CassandraStore``. Both tables are written only by lightweight
transactions at SERIAL, so exactly one of racing claims wins across
datacenters; within a process, LWTs on one key queue on ``KeyedLocks``.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Sequence
from typing import Any

from rossby.errors import NotFound, StoreUnavailable
from rossby.store.cassandra.attempts import APPLIED, insert_or_replace, reserve_counter
from rossby.store.cassandra.config import CONTACTS, REGISTRATIONS
from rossby.store.cassandra.plumbing import Plumbing
from rossby.store.model import DeviceKeys, Registration

CAS_ROUNDS = 64  # compare-and-set retries before reporting contention
CLAIM_TRIES = 6  # contact claims timing out in cross-DC Paxos contention


class CassandraRegistrations(Plumbing):
    """``lookup_contact`` ... ``complete_registration``."""

    async def lookup_contact(self, contact_hash: bytes) -> uuid.UUID | None:
        rows = await self._run(self._cql.contact_get, (contact_hash,), CONTACTS)
        return rows[0]["box_id"] if rows else None

    async def claim_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> uuid.UUID:
        async with self._locks.hold(("contact", contact_hash)):
            for attempt in range(CLAIM_TRIES):
                try:
                    rows = await self._run(
                        self._cql.contact_claim, (contact_hash, box_id), CONTACTS
                    )
                    break
                except StoreUnavailable as exc:
                    # Racing claims from other regions contend in one Paxos
                    # round across DCs and can time out with the outcome
                    # unknown; the claim is idempotent for our own box, so
                    # ask again (after a jittered pause) to learn the winner.
                    if exc.applied is False or attempt == CLAIM_TRIES - 1:
                        raise
                    await asyncio.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
        row = rows[0]
        owner: uuid.UUID = box_id if row[APPLIED] else row["box_id"]
        return owner

    async def release_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> None:
        async with self._locks.hold(("contact", contact_hash)):
            await self._run(self._cql.contact_release, (contact_hash, box_id), CONTACTS)

    # -- registrations -------------------------------------------------------

    async def _lwt(self, cql: str, params: Sequence[Any]) -> list[Any]:
        return await self._run(cql, params, REGISTRATIONS)

    def _registration_ttl(self, expires_at: float, created_at: float | None = None) -> int:
        end = expires_at
        if created_at is not None:
            end = min(end, created_at + self.options.registration_ttl)
        return max(1, math.ceil(end - self.options.clock()))

    async def put_registration(self, registration: Registration) -> None:
        r = registration
        ttl = self._registration_ttl(r.expires_at, r.created_at)
        values = (
            r.box_id,
            list(r.contact_hashes),
            list(r.code_hashes),
            r.keys.encryption_key,
            r.keys.signing_key,
            r.keys.key_signature,
            r.device_name,
            r.created_at,
            r.expires_at,
            r.sent_at,
            r.attempts,
            r.completed,
        )
        async with self._locks.hold(("registration", r.device_id)):
            await insert_or_replace(
                self._lwt,
                (self._cql.registration_insert, (r.device_id, *values, ttl)),
                (self._cql.registration_replace, (ttl, *values, r.device_id)),
                rounds=CAS_ROUNDS,
                contended="store: registration kept changing under us",
            )

    async def get_registration(self, device_id: uuid.UUID) -> Registration | None:
        rows = await self._run(self._cql.registration_get, (device_id,), REGISTRATIONS)
        if not rows:
            return None
        row = rows[0]
        if row["box_id"] is None or row["expires_at"] is None:
            return None
        lifetime_end = row["expires_at"]
        if row["created_at"] is not None:
            lifetime_end = min(lifetime_end, row["created_at"] + self.options.registration_ttl)
        if lifetime_end <= self.options.clock():
            return None
        return Registration(
            device_id=row["device_id"],
            box_id=row["box_id"],
            contact_hashes=tuple(row["contact_hashes"] or ()),
            code_hashes=tuple(row["code_hashes"] or ()),
            keys=DeviceKeys(
                encryption_key=row["encryption_key"] or b"",
                signing_key=row["signing_key"] or b"",
                key_signature=row["key_signature"] or b"",
            ),
            device_name=row["device_name"] or "",
            created_at=row["created_at"] or 0.0,
            expires_at=row["expires_at"],
            sent_at=row["sent_at"] or 0.0,
            attempts=row["attempts"] or 0,
            completed=bool(row["completed"]),
        )

    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        async with self._locks.hold(("registration", device_id)):
            current = await self.get_registration(device_id)
            if current is None or current.expires_at != expires_at:
                raise NotFound("no such pending registration for this device")
            return await reserve_counter(
                self._lwt,
                self._cql.registration_attempt,
                (device_id,),
                attempts=current.attempts,
                version=expires_at,
                ttl=self._registration_ttl,
                limit=limit,
                version_column="expires_at",
                what="registration",
            )

    async def complete_registration(self, device_id: uuid.UUID) -> None:
        async with self._locks.hold(("registration", device_id)):
            current = await self.get_registration(device_id)
            if current is None:
                raise NotFound("no pending registration for this device")
            expires_at = current.expires_at
            for _ in range(CAS_ROUNDS):
                if expires_at <= self.options.clock():
                    raise NotFound("no pending registration for this device")
                rows = await self._run(
                    self._cql.registration_complete,
                    (self._registration_ttl(expires_at), device_id, expires_at),
                    REGISTRATIONS,
                )
                row = rows[0]
                if row[APPLIED]:
                    return
                if row.get("expires_at") is None:
                    raise NotFound("no pending registration for this device")
                expires_at = row["expires_at"]
        raise StoreUnavailable("store: registration too contended", applied=False)


__all__ = ["CassandraRegistrations"]
