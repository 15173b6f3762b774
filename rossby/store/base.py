"""The storage contract the server depends on.

The server imports this module and ``rossby.store.open_store`` only, never
a driver. The contract lives in small modules re-exported here:
``rossby.store.model`` (records, options, errors), ``rossby.store.contract``
(``Store``), ``rossby.store.accounts`` and ``rossby.store.presence`` (its
account and presence parts), ``rossby.store.capabilities`` (what a backend
declines, and why) and ``rossby.store.codesends`` (the abuse limit's rows).

Backends (``rossby.store.sqlite``, ``rossby.store.cassandra``) store what
they are given: validation of client input happens above, in the service.
What a backend *does* own is atomicity, idempotency, ordering and the
translation of driver errors into ``rossby.errors`` (one function per
backend).

Every table is partitioned by box id, except two lookups that exist before a
box does: contact -> box (by keyed contact hash) and pending registrations
(by device id).

Positions
---------
Each queued message gets an integer *position*, unique within its box and
increasing in arrival order. Positions are opaque to clients except for
ordering; they are never reused.

Cursor edge and the settle window
---------------------------------
A device that acks through position P must never miss a message that
becomes visible later at a position <= P. A backend guarantees this in one
of two ways, advertised by ``settle_window`` and the capability
``ordered_visibility``:

* ``settle_window == 0`` (SQLite): positions are assigned inside the
  writing transaction, so visibility order equals position order.
* ``settle_window > 0`` (Cassandra): positions come from server clocks, so a
  slow or skewed writer can make a message visible after a later one. Every
  acknowledged write becomes visible within ``settle_window`` position units
  of its position. Fetch therefore re-reads the window below the cursor
  (``cursor - settle_window``), so a late message is still delivered; the
  repeats it brings are dropped by clients by message id. Compaction only
  removes positions at or below ``min(cursor) - settle_window``.

All methods are coroutines and may raise ``StoreUnavailable``.
"""

from __future__ import annotations

from rossby.replication.homes import HomeRecord, HomeRegions, Reconciled
from rossby.store.accounts import (
    AccountStore,
    ContactChallenge,
    KeyLogEntry,
    LinkOffer,
    LinkState,
    SenderRule,
)
from rossby.store.capabilities import Capabilities, Capability, Unsupported
from rossby.store.codesends import code_send_buckets, code_send_refusal, requester_bucket
from rossby.store.contract import Store
from rossby.store.model import (
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
    Presence,
    Profile,
    Registration,
    StoredMessage,
    StoreOptions,
)
from rossby.store.presence import PresenceStore

__all__ = [
    "AccountStore",
    "AttemptContended",
    "Box",
    "Capabilities",
    "Capability",
    "CodeSendLimitExceeded",
    "Compaction",
    "Connection",
    "ContactChallenge",
    "Device",
    "DeviceKeys",
    "DeviceState",
    "Enqueued",
    "Gap",
    "HomeRecord",
    "HomeRegions",
    "KeyLogEntry",
    "LinkOffer",
    "LinkState",
    "NewMessage",
    "Page",
    "PendingCapExceeded",
    "Position",
    "Presence",
    "PresenceStore",
    "Profile",
    "Reconciled",
    "Registration",
    "SenderRule",
    "Store",
    "StoreOptions",
    "StoredMessage",
    "Unsupported",
    "code_send_buckets",
    "code_send_refusal",
    "requester_bucket",
]
