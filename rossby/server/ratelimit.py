"""In-process rate limits for abuse control, on the ``limits`` library.

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
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Final
from urllib.parse import unquote

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from rossby import errors

OFF: Final = frozenset({"", "0", "off", "none"})


def parse_limit(name: str, spec: str) -> RateLimitItem | None:
    """The parsed limit, None when off; ConfigError names the setting otherwise."""
    if spec.strip().lower() in OFF:
        return None
    try:
        items = parse_many(spec)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise errors.ConfigError(
            f"invalid setting {name}: {spec!r} is not a rate like '20/hour' or '0' (off)"
        )
    return items[0]


class RateLimit:
    """One named limit over keys (a device id, an address); refuses with a stable reason.

    A moving window, so a client cannot get twice the rate by straddling a
    window edge. A refused call counts nothing, so a client that backs off
    as told by ``retry_after_seconds`` gets through.
    """

    def __init__(self, name: str, spec: str, *, reason: str) -> None:
        self.name = name
        self.reason = reason
        self.item = parse_limit(name, spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @property
    def enabled(self) -> bool:
        return self.item is not None

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
        if await self._limiter.hit(item, self.name, key, cost=cost):
            return
        raise await self._exhausted(item, key)

    async def check(self, key: str) -> None:
        """Raise as ``hit`` would, counting nothing.

        For calls that count only when they fail (a wrong code): checked
        before the work, so a caller out of budget cannot even try, and
        ``hit`` once the attempt turned out to count.
        """
        item = self.item
        if item is None or await self._limiter.test(item, self.name, key):
            return
        raise await self._exhausted(item, key)

    async def _exhausted(self, item: RateLimitItem, key: str) -> errors.ResourceExhausted:
        stats = await self._limiter.get_window_stats(item, self.name, key)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        return errors.ResourceExhausted(
            f"{self.name}: too many calls, retry later",
            reason=self.reason,
            metadata={"limit": str(item), "retry_after_seconds": str(wait)},
        )


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


__all__ = ["RateLimit", "client_address", "parse_limit"]
