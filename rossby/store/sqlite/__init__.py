"""SQLite backend: a single file, dense positions, ``settle_window == 0``."""

from rossby.store.sqlite.store import LATEST_VERSION, SqliteStore

__all__ = ["LATEST_VERSION", "SqliteStore"]
