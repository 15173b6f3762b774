"""Appending to a box's key log (the hash chain of device key changes).

The server builds each entry (seq, previous hash, timestamp, hash) from the
head it reads, and the store's compare-and-set append (``IF NOT EXISTS`` on
(box, seq)) decides races: a loser re-reads and builds on the new head. So
the chain stays linear however many processes change one box at once, and
a precondition checked against the log inside the loop (a revocation must
leave one device) is linearized with it.

Order of writes: the entry first, then the device change. A crash in
between leaves an entry whose change is not applied yet; the client's
retry of the same RPC finds its entry (``append`` is idempotent: the
latest entry about the device equals the change) and applies the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from rossby.crypto.keylog import NO_ACTOR, ZERO_HASH, ChangeKind, entry_hash
from rossby.errors import StoreUnavailable
from rossby.store.accounts import AccountStore, KeyLogEntry
from rossby.v1 import rossby_pb2

#: Appends that may lose to concurrent ones before the call gives up.
APPEND_ROUNDS = 32
#: Entries read in one go when the whole log is needed.
FULL_LOG = 100_000
#: Kinds that take a device out of the box.
REMOVALS = frozenset({ChangeKind.REVOKE.label, ChangeKind.IDLE_UNLINK.label})

Check = Callable[[Sequence[KeyLogEntry]], None]


def active_keys(log: Sequence[KeyLogEntry]) -> dict[uuid.UUID, tuple[bytes, bytes]]:
    """The active devices a log describes (no signature checks: the server
    wrote and checked every entry)."""
    active: dict[uuid.UUID, tuple[bytes, bytes]] = {}
    for e in log:
        if e.kind in REMOVALS:
            active.pop(e.device_id, None)
        else:
            active[e.device_id] = (e.encryption_key, e.signing_key)
    return active


def ever_listed(log: Sequence[KeyLogEntry]) -> set[uuid.UUID]:
    return {e.device_id for e in log}


def to_pb(e: KeyLogEntry) -> rossby_pb2.KeyLogEntry:
    return rossby_pb2.KeyLogEntry(
        seq=e.seq,
        prev_hash=e.prev_hash,
        timestamp_ms=e.timestamp_ms,
        kind=int(ChangeKind[e.kind.upper()]),  # type: ignore[arg-type]
        device_id=str(e.device_id),
        encryption_key=e.encryption_key,
        signing_key=e.signing_key,
        # An entry nobody made (IDLE_UNLINK) names no actor.
        actor_device_id="" if e.actor_device_id == NO_ACTOR else str(e.actor_device_id),
        signature=e.signature,
        hash=e.hash,
    )


def head_pb(head: KeyLogEntry | None) -> rossby_pb2.KeyLogHead:
    if head is None:
        return rossby_pb2.KeyLogHead(seq=0)
    return rossby_pb2.KeyLogHead(seq=head.seq, hash=head.hash)


class KeyLog:
    def __init__(self, store: AccountStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    async def full(self, box_id: uuid.UUID) -> list[KeyLogEntry]:
        return await self.store.key_log(box_id, limit=FULL_LOG)

    async def append(
        self,
        box_id: uuid.UUID,
        kind: ChangeKind,
        device_id: uuid.UUID,
        actor_device_id: uuid.UUID,
        encryption_key: bytes,
        signing_key: bytes,
        signature: bytes,
        *,
        check: Check | None = None,
    ) -> KeyLogEntry:
        """Record a change; answer its entry (the existing one on a retry).

        ``check(log)`` runs against the log the entry will extend and may
        raise to refuse the change; it is re-run whenever a concurrent
        append moved the head.
        """
        for _ in range(APPEND_ROUNDS):
            log = await self.full(box_id)
            about = [e for e in log if e.device_id == device_id]
            if about:
                last = about[-1]
                if (last.kind, last.encryption_key, last.signing_key, last.actor_device_id) == (
                    kind.label,
                    encryption_key,
                    signing_key,
                    actor_device_id,
                ):
                    return last  # a retry of a change already recorded
            if check is not None:
                check(log)
            head = log[-1] if log else None
            seq = head.seq + 1 if head else 1
            prev = head.hash if head else ZERO_HASH
            # Never earlier than the previous entry, whatever the clocks.
            timestamp_ms = max(int(self.clock() * 1000), head.timestamp_ms if head else 0)
            digest = entry_hash(
                box_id,
                seq,
                prev,
                timestamp_ms,
                kind,
                device_id,
                actor_device_id,
                encryption_key,
                signing_key,
                signature,
            )
            entry = KeyLogEntry(
                box_id=box_id,
                seq=seq,
                prev_hash=prev,
                hash=digest,
                timestamp_ms=timestamp_ms,
                kind=kind.label,
                device_id=device_id,
                actor_device_id=actor_device_id,
                encryption_key=encryption_key,
                signing_key=signing_key,
                signature=signature,
            )
            if await self.store.append_key_log(entry):
                return entry
        raise StoreUnavailable("key log: too many concurrent changes", applied=False)


__all__ = ["REMOVALS", "KeyLog", "active_keys", "ever_listed", "head_pb", "to_pb"]
