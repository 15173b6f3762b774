"""The one place a backend is chosen: a store URL to a ``Store``."""

from __future__ import annotations

from rossby.store.base import Store, StoreOptions
from rossby.store.cassandra import CassandraStore
from rossby.store.sqlite import SqliteStore
from rossby.store.url import StoreURL, parse_store_url


def open_store(url: str | StoreURL, options: StoreOptions | None = None) -> Store:
    """Build the backend named by ``url``. The only place a backend is chosen.

    The store connects lazily on first use, so this never blocks.
    """
    parsed = parse_store_url(url) if isinstance(url, str) else url
    opts = options or StoreOptions()
    if parsed.scheme == "sqlite":
        return SqliteStore(parsed.path, opts)
    return CassandraStore(parsed, opts)


__all__ = ["open_store"]
