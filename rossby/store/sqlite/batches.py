"""Deleting expired rows in short transactions, for the tables SQLite has no TTL on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


async def delete_until_short(delete: Callable[[], Awaitable[int]], batch: int) -> int:
    """Run ``delete`` (one transaction removing at most ``batch`` rows) until
    it removes fewer than ``batch``; answer the total removed.

    One short transaction per batch, so other calls queue in between
    instead of behind one long purge.
    """
    total = 0
    while True:
        removed = await delete()
        total += removed
        if removed < batch:
            return total


__all__ = ["delete_until_short"]
