"""One outbound HTTP session per sender, opened on first use.

An ``aiohttp.ClientSession`` binds to the running event loop, and the
senders (notifier, pushers) are built before the serving loop starts, so the
session cannot be made at construction. It is re-made if something closed it,
and ``close`` is safe to call when it was never opened.
"""

from __future__ import annotations

import aiohttp


class LazySession:
    def __init__(self, *, timeout: float, user_agent: str) -> None:
        self.timeout = timeout
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


__all__ = ["LazySession"]
