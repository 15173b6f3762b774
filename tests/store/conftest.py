"""Wiring for the store conformance suite.

Every test in this folder that takes the ``store`` fixture runs once per
backend: SQLite on a temp file, and a real Cassandra. Tests isolate
themselves with fresh random box and device ids, so one Cassandra keyspace
serves the whole session (schema changes are slow on Cassandra).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rossby.store import Store, StoreOptions, open_store
from tests.conftest import cassandra_url
from tests.support.clocks import FakeClock

#: The name the store tests know the fake clock by.
Clock = FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock so expiry tests do not sleep; it starts at real time
    (Cassandra's TTLs count from the write's real time)."""
    return FakeClock(time.time())


@pytest.fixture(scope="session")
def cassandra_keyspace_url(request: pytest.FixtureRequest) -> str:
    hosts = request.getfixturevalue("cassandra_hosts")
    return cassandra_url(hosts, "rossby_conformance", replication="dc1:1")


StoreFactory = Callable[..., "AsyncIterator[Store]"]


@pytest.fixture
async def make_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Callable[..., Store]]:
    """Build stores of the parametrized backend with chosen options.

    Several stores built in one test share one database, like several
    server processes do.
    """
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'rossby.db'}"
    else:
        url = request.getfixturevalue("cassandra_keyspace_url")
    opened: list[Store] = []

    def factory(**overrides: Any) -> Store:
        opts = StoreOptions(**{"clock": clock, **overrides})
        store = open_store(url, opts)
        opened.append(store)
        return store

    first = factory()
    await first.migrate()
    try:
        yield factory
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store(make_store: Callable[..., Store]) -> Store:
    """A migrated store of the parametrized backend with default options."""
    return make_store()


def new_id() -> uuid.UUID:
    return uuid.uuid4()
