"""Server side of Hawk: the verifier of request headers and its nonce cache.

Kept apart from the header vocabulary (``rossby.hawk.protocol``) because
only the server verifies; verification sits on every request, so it is
plain ``hmac``/``hashlib`` over precompiled expressions.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from rossby.errors import Unauthenticated
from rossby.hawk.protocol import (
    _TS_RE,
    DEFAULT_SKEW_SECONDS,
    HAWK_BAD_MAC,
    HAWK_BAD_PAYLOAD_HASH,
    HAWK_MALFORMED,
    HAWK_MISSING,
    HAWK_REPLAY,
    HAWK_STALE,
    HAWK_UNKNOWN_ID,
    REQUEST_ATTRIBUTES,
    STALE_TIMESTAMP,
    HeaderSyntaxError,
    NotHawkScheme,
    VerifiedRequest,
    _mac,
    normalized_string,
    parse_header,
    payload_hash,
    timestamp_mac,
)


class NonceCache:
    """Remembers accepted ``(id, nonce, ts)`` triples for replay detection.

    A triple is accepted only while ``|ts - now| <= skew``, so keeping it for
    ``2 * skew`` after acceptance outlives every moment it could be replayed
    within the window; afterwards the timestamp check refuses it. Entries
    expire in insertion order (a set plus a deque, both O(1) per request), and
    at ``max_entries`` the oldest is dropped: memory stays bounded even under
    a flood, at the price of forgetting the oldest nonces early (counted in
    ``evicted``).

    The cache is per process: it refuses a replay to the same process
    without a round trip. A server with several processes must also claim
    each accepted request where they all see it (the Rossby server claims
    it in its store, ``rossby.server.replay``).
    """

    __slots__ = ("_order", "_retention", "_seen", "evicted", "max_entries", "skew_seconds")

    def __init__(
        self, skew_seconds: float = DEFAULT_SKEW_SECONDS, max_entries: int = 262_144
    ) -> None:
        if skew_seconds <= 0 or max_entries <= 0:
            raise ValueError("skew_seconds and max_entries must be positive")
        self.skew_seconds = skew_seconds
        self.max_entries = max_entries
        self.evicted = 0
        self._retention = 2 * skew_seconds
        self._seen: set[tuple[str, str, int]] = set()
        self._order: deque[tuple[float, tuple[str, str, int]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, id: str, nonce: str, ts: int, now: float) -> bool:
        """True (and remembered) if the triple is new; False for a replay.

        Synchronous on purpose: with no await between the test and the
        insert, two concurrent requests cannot both pass.
        """
        order, seen = self._order, self._seen
        horizon = now - self._retention
        while order and order[0][0] < horizon:
            seen.discard(order.popleft()[1])
        entry = (id, nonce, ts)
        if entry in seen:
            return False
        if len(order) >= self.max_entries:
            seen.discard(order.popleft()[1])
            self.evicted += 1
        seen.add(entry)
        order.append((now, entry))
        return True


Lookup = Callable[[str], Awaitable[bytes | None]]
Clock = Callable[[], float]


def _fail(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


class HawkVerifier:
    """Server side: authenticates one request header over the exact payload.

    Checks run in mozilla/hawk's order (parse, required attributes, key
    lookup, MAC, payload hash, timestamp) with the nonce last (see the module
    notes). Every comparison of secrets is constant-time. ``lookup`` answers
    the sha256 key for a Hawk id, or None when the id is unknown or revoked;
    its exceptions (e.g. ``StoreUnavailable``) propagate unchanged.
    """

    __slots__ = ("_clock", "_host", "_lookup", "_nonces", "_port", "_skew")

    def __init__(
        self,
        lookup: Lookup,
        *,
        host: str,
        port: int,
        nonce_cache: NonceCache,
        skew_seconds: float = DEFAULT_SKEW_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        if nonce_cache.skew_seconds < skew_seconds:
            raise ValueError("the nonce cache must remember nonces for the whole skew window")
        self._lookup = lookup
        self._host = host.lower()
        self._port = str(port)
        self._nonces = nonce_cache
        self._skew = skew_seconds
        self._clock = clock

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return int(self._port)

    async def verify(
        self, header: str | None, *, resource: str, payload: bytes, method: str = "POST"
    ) -> VerifiedRequest:
        """Accept the request or raise ``Unauthenticated`` with a stable reason.

        A stale timestamp answers ``HAWK_STALE`` with metadata ``ts`` (server
        time, whole seconds) and ``tsm`` (its MAC under the caller's key), the
        same pair Hawk puts in ``WWW-Authenticate``.
        """
        now = self._clock()  # measured before any other work, as Hawk does
        if not header:
            raise _fail(HAWK_MISSING, "missing Hawk authorization")
        try:
            attributes = parse_header(header, REQUEST_ATTRIBUTES)
        except NotHawkScheme:
            raise _fail(HAWK_MISSING, "authorization is not a Hawk header") from None
        except HeaderSyntaxError as exc:
            raise _fail(HAWK_MALFORMED, str(exc)) from None
        get = attributes.get
        id_, ts_text, nonce, their_mac = get("id"), get("ts"), get("nonce"), get("mac")
        if not (id_ and ts_text and nonce and their_mac):
            raise _fail(HAWK_MALFORMED, "Missing attributes")
        if _TS_RE.fullmatch(ts_text) is None:
            raise _fail(HAWK_MALFORMED, "Invalid timestamp")

        key = await self._lookup(id_)
        if key is None:
            raise _fail(HAWK_UNKNOWN_ID, "Unknown credentials")

        their_hash, ext, app = get("hash"), get("ext", ""), get("app")
        dlg = get("dlg") if app else None
        expected = _mac(
            key,
            normalized_string(
                "header",
                ts=ts_text,
                nonce=nonce,
                method=method,
                resource=resource,
                host=self._host,
                port=self._port,
                hash=their_hash or "",
                ext=ext,
                app=app,
                dlg=dlg,
            ),
        )
        if not hmac.compare_digest(expected, their_mac):
            raise _fail(HAWK_BAD_MAC, "Bad mac")
        if their_hash is None:
            raise _fail(HAWK_BAD_PAYLOAD_HASH, "Missing required payload hash")
        ours = payload_hash(payload)
        if not hmac.compare_digest(ours, their_hash):
            raise _fail(HAWK_BAD_PAYLOAD_HASH, "Bad payload hash")

        ts = int(ts_text)
        if abs(ts - now) > self._skew:
            server_ts = math.floor(now)
            raise Unauthenticated(
                STALE_TIMESTAMP,
                reason=HAWK_STALE,
                metadata={"ts": str(server_ts), "tsm": timestamp_mac(server_ts, key)},
            )
        if not self._nonces.check_and_add(id_, nonce, ts, now):
            raise _fail(HAWK_REPLAY, "Invalid nonce")
        return VerifiedRequest(id_, ts, nonce, ext, their_mac, ours, key, app, dlg)
