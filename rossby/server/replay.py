"""Replays across processes: each signed request is accepted once per deployment.

``HawkVerifier``'s ``NonceCache`` refuses a replay that reaches the process
which saw the original, for free. A replay sent to another worker (they
share one port; the kernel picks) or another server of the region would
pass it, so every verified request is also *claimed* in the store
(``Store.claim_nonce``), which every process shares: SQLite within one
transaction of the shared file, Cassandra by write-then-read at
``LOCAL_QUORUM`` in the local DC (``rossby.store.cassandra.nonces``). The
first claim wins; any later one, or a concurrent one that loses, is
answered ``HAWK_REPLAY`` exactly as a same-process replay is.

What it costs: one store write per signed call (SQLite: grouped into the
writer's shared commit; Cassandra: two statements, in the local DC only).
Read-only and idempotent calls run their handler while the claim is in
flight (``HawkAuth.unary``'s ``overlap``), so on those the claim adds no
latency, only the store's work; docs/benchmarks.md has the figures.

Other regions: each region signs its own public host name, which the Hawk
MAC covers, so a request captured in one region does not verify in another
(``HAWK_BAD_MAC``); on Cassandra the claim also replicates there.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

from rossby.errors import Unauthenticated
from rossby.hawk import HAWK_REPLAY, HAWK_UNKNOWN_ID, VerifiedRequest
from rossby.server.auth import parse_hawk_id
from rossby.store.base import Store

#: Bytes of the digest stored per nonce: collisions at 2^-64 per pair of a
#: device's requests within the window are far below any other failure.
NONCE_KEY_BYTES: Final = 16


def nonce_key(ts: int, nonce: str) -> bytes:
    """The stored form of a request's (ts, nonce): fixed size, whatever the
    client sent (a Hawk nonce may be as long as the header allows)."""
    return hashlib.blake2b(f"{ts}\n{nonce}".encode(), digest_size=NONCE_KEY_BYTES).digest()


class ReplayGuard:
    """Claims verified requests in the shared store for ``2 * skew`` seconds,
    as long as a request's timestamp is acceptable and one moment more."""

    __slots__ = ("_store", "_ttl")

    def __init__(self, store: Store, *, skew_seconds: float) -> None:
        self._store = store
        self._ttl = 2 * skew_seconds

    async def claim(self, verified: VerifiedRequest) -> None:
        identity = parse_hawk_id(verified.id)
        if identity is None:  # the verifier only answers keys for device ids
            raise Unauthenticated("Unknown credentials", reason=HAWK_UNKNOWN_ID)
        first = await self._store.claim_nonce(
            uuid.UUID(identity.box_id),
            uuid.UUID(identity.device_id),
            nonce_key(verified.ts, verified.nonce),
            self._ttl,
        )
        if not first:
            raise Unauthenticated("Invalid nonce", reason=HAWK_REPLAY)


__all__ = ["NONCE_KEY_BYTES", "ReplayGuard", "nonce_key"]
