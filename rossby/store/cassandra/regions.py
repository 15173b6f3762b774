"""The datacenters the keyspace replicates to, as the cluster says.

Prekey pools are split per region over exactly these; every server must
agree on them, so they come from the keyspace's own replication
(``system_schema.keyspaces``), not from a server's URL, which may name
only its own DC. Read once per store: a DC added to the keyspace later is
picked up by a restart (uploads then spread over it; shares already in
other regions stay there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rossby.errors import FailedPrecondition

#: Answers the keyspace's ``replication`` map (or None when it has none).
ReadReplication = Callable[[], Awaitable[Mapping[str, Any] | None]]


def replicated_dcs(replication: Mapping[str, Any]) -> tuple[str, ...]:
    """The DC names with a replication factor above 0, sorted."""
    out = []
    for dc, rf in replication.items():
        if dc == "class":
            continue
        if str(rf).isdigit() and int(str(rf)) > 0:
            out.append(dc)
    return tuple(sorted(out))


class KeyspaceRegions:
    """A cached answer of ``replicated_dcs`` for one keyspace."""

    def __init__(self, read: ReadReplication) -> None:
        self._read = read
        self._lock = asyncio.Lock()
        self._dcs: tuple[str, ...] | None = None

    async def get(self) -> tuple[str, ...]:
        if self._dcs is not None:
            return self._dcs
        async with self._lock:
            if self._dcs is None:
                replication = await self._read()
                dcs = replicated_dcs(replication or {})
                if not dcs:
                    raise FailedPrecondition(
                        "store keyspace missing or replicated nowhere; run `rossby migrate`",
                        reason="SCHEMA_MISSING",
                    )
                self._dcs = dcs
        return self._dcs


__all__ = ["KeyspaceRegions", "replicated_dcs"]
