"""Storage: the ``Store`` contract and the one place a backend is chosen."""

from __future__ import annotations

from rossby.store.base import (
    AttemptContended,
    Box,
    CodeSendLimitExceeded,
    Compaction,
    Connection,
    Device,
    DeviceKeys,
    DeviceState,
    Enqueued,
    Gap,
    NewMessage,
    Page,
    PendingCapExceeded,
    Position,
    Profile,
    Registration,
    Store,
    StoredMessage,
    StoreOptions,
)
from rossby.store.opening import open_store
from rossby.store.url import StoreURL, parse_store_url

__all__ = [
    "AttemptContended",
    "Box",
    "CodeSendLimitExceeded",
    "Compaction",
    "Connection",
    "Device",
    "DeviceKeys",
    "DeviceState",
    "Enqueued",
    "Gap",
    "NewMessage",
    "Page",
    "PendingCapExceeded",
    "Position",
    "Profile",
    "Registration",
    "Store",
    "StoreOptions",
    "StoreURL",
    "StoredMessage",
    "open_store",
    "parse_store_url",
]
