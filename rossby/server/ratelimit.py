"""In-process rate limits for abuse control: a leaky bucket per key.

These guard cheap-to-send, costly-to-serve calls (a Register sends an SMS or
an e-mail; a Send writes to the store) against one client hammering one
server process. They live in the process's memory on purpose: they must cost
nothing on the hot path and keep working when the store is the thing under
strain. The price is that each serving process (``workers``) and each region
counts on its own, so the effective ceiling is the limit times the number of
processes a client reaches. Limits that must hold across processes (codes
sent to one contact) are kept in the store instead (docs/security.md).

A limit is written the way ``limits`` parses it, e.g. ``"20/hour"`` or
``"100 per minute"``; an empty string or ``"0"`` turns it off.

Why a leaky bucket (``aiolimiter``) in a TTL cache (``cachetools``) rather
than ``limits``' moving window: a key's state is two numbers updated in O(1)
on each hit, and idle keys leave the cache lazily as it is used. ``limits``'
in-memory storage instead starts a pass over every key after hits, with a
thread hop per key (``asyncio.to_thread``): measured at up to 1.5 ms of CPU
per Send (docs/benchmarks.md). The bucket holds ``amount`` calls and drains
at ``amount`` per period, so a client gets a burst of ``amount`` and then
the rate, never twice the rate across a window edge.
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Final
from urllib.parse import unquote

from aiolimiter import AsyncLimiter
from cachetools import TTLCache
from limits import RateLimitItem

from rossby import errors
from rossby.ratespec import parse_limit

#: Keys one limit tracks at once. Past it the least recently used key is
#: dropped, which forgets that key's count: a bound on memory (about 70 MB)
#: that only a client rotating through more keys than this within one
#: period can exploit, and only for the keys it pushes out.
MAX_KEYS: Final = 200_000


class RateLimit:
    """One named limit over keys (``device_key``, an address); refuses with a stable reason.

    A refused call counts nothing, so a client that backs off as told by
    ``retry_after_seconds`` gets through.
    """

    def __init__(self, name: str, spec: str, *, reason: str, max_keys: int = MAX_KEYS) -> None:
        self.name = name
        self.reason = reason
        self.item = parse_limit(name, spec)
        self._period = float(self.item.get_expiry()) if self.item is not None else 1.0
        # A key idle for a whole period has drained to empty, so dropping
        # it then forgets nothing; every hit re-inserts it, restarting that.
        self._buckets: TTLCache[str, AsyncLimiter] = TTLCache(
            maxsize=max_keys, ttl=self._period, timer=time.monotonic
        )

    @property
    def enabled(self) -> bool:
        return self.item is not None

    @property
    def keys_tracked(self) -> int:
        return len(self._buckets)

    def _bucket(self, item: RateLimitItem, key: str) -> AsyncLimiter:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = AsyncLimiter(item.amount, self._period)
        self._buckets[key] = bucket
        return bucket

    async def hit(self, key: str, cost: int = 1) -> None:
        """Count ``cost`` against ``key`` or raise RESOURCE_EXHAUSTED (nothing counted)."""
        item = self.item
        if item is None:
            return
        if cost > item.amount:
            raise errors.ResourceExhausted(
                f"{self.name}: one call may cost at most {item.amount}",
                reason=self.reason,
                metadata={"limit": str(item)},
            )
        bucket = self._bucket(item, key)
        if not bucket.has_capacity(cost):
            raise self._exhausted(item, cost)
        await bucket.acquire(cost)  # returns at once: the capacity is there

    async def check(self, key: str) -> None:
        """Raise as ``hit`` would, counting nothing.

        For calls that count only when they fail (a wrong code): checked
        before the work, so a caller out of budget cannot even try, and
        ``hit`` once the attempt turned out to count.
        """
        item = self.item
        if item is None:
            return
        bucket = self._buckets.get(key)
        if bucket is not None and not bucket.has_capacity(1):
            raise self._exhausted(item, 1)

    def _exhausted(self, item: RateLimitItem, cost: int) -> errors.ResourceExhausted:
        # The bucket drains ``amount`` per period; ``cost`` units leave it
        # within cost/amount of a period, after which the call fits.
        wait = max(1, math.ceil(self._period * cost / item.amount))
        return errors.ResourceExhausted(
            f"{self.name}: too many calls, retry later",
            reason=self.reason,
            metadata={"limit": str(item), "retry_after_seconds": str(wait)},
        )


def device_key(box_id: object, device_id: object) -> str:
    """The key a device is limited under: ``<box id>.<device id>``, its Hawk id.

    Device ids are unique only within a box: anyone may link a device with
    another box's device id (RequestKey shows them) into a box of their own,
    so a limit keyed by the device id alone would let that clone spend the
    victim's budget (docs/security.md, "Device ids are per box").
    """
    return f"{box_id}.{device_id}"


def client_address(peer: str) -> str:
    """The key a gRPC peer (``context.peer()``) is limited under: its IP
    without the port, an IPv6 one as its /64.

    One host usually owns a whole /64 (SLAAC, privacy addresses), so keying
    IPv6 by the full address would let one client rotate through 2^64 keys.
    An IPv4-mapped IPv6 peer (a dual-stack listener) counts as its IPv4
    address. gRPC percent-encodes IPv6 peers (``ipv6:%5B::1%5D:5000``); any
    other form (a Unix socket) is its own key, whole.
    """
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    host = unquote(rest).rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


__all__ = ["RateLimit", "client_address", "device_key", "parse_limit"]
