"""The Cassandra backend: the store's state and what it declares; each
concern lives in its own module, mixed in here. The reasoning is in
docs/store.md ("Cassandra backend", "Cursor edge").

=====================  ==================================================
``cql``                every statement of the queue, devices, contacts
``plumbing``           the shared state and helpers (horizon, read bound)
``routing``            the box's home DC and the fence (``_view``)
``queue``              enqueue, fetch, ack, compact, pending count
``devices``            boxes, devices and keys, profiles
``registrations``      contacts and pending registrations (LWT)
``homes``              moving a box's home region (``HomeRegions``)
``lifecycle``          migrate, check_schema, ping, close
``attempts``           the LWT counter and insert-or-replace loops
``prekeys``            prekeys: per-region one-time pools (``prekeytake``,
                       ``regions``, ``writeclock``)
``pushtargets``        push targets (write-stamped conditional delete)
=====================  ==================================================
"""

from __future__ import annotations

from rossby.replication.homes import HomeCache, HomeRegions
from rossby.store.capabilities import Capabilities, no, yes
from rossby.store.cassandra.accounts import CassandraAccounts
from rossby.store.cassandra.codesends import CassandraCodeSends
from rossby.store.cassandra.config import KEYS, parse_settings
from rossby.store.cassandra.cql import Cql
from rossby.store.cassandra.devices import CassandraDevices
from rossby.store.cassandra.driver import Bridge
from rossby.store.cassandra.homes import CassandraHomes
from rossby.store.cassandra.lifecycle import CassandraLifecycle
from rossby.store.cassandra.locks import KeyedLocks
from rossby.store.cassandra.nonces import CassandraNonces
from rossby.store.cassandra.pending import PendingEstimates
from rossby.store.cassandra.positions import Allocator, span
from rossby.store.cassandra.prekeys import CassandraPrekeys, PrekeyCql
from rossby.store.cassandra.presence import CassandraPresence
from rossby.store.cassandra.pushtargets import CassandraPushTargets
from rossby.store.cassandra.regions import KeyspaceRegions
from rossby.store.cassandra.registrations import CassandraRegistrations
from rossby.store.cassandra.writeclock import MillisClock
from rossby.store.contract import Store
from rossby.store.model import StoreOptions
from rossby.store.url import StoreURL

#: Replicas in several datacenters and no Paxos on the hot paths: what that
#: costs, and what it buys (home regions).
CAPABILITIES = Capabilities(
    ordered_visibility=no(
        "positions come from server clocks, so a slow or skewed writer can make a message"
        " visible below a later one; fetch re-reads settle_window below the cursor"
    ),
    exact_enqueue=no(
        "no Paxos on the Send path: overlapping attempts of one id in different processes"
        " may each queue a copy (fetch hands out the first), and the pending cap may be"
        " estimated below half the cap"
    ),
    exact_code_sends=no(
        "sends are read, then written as plain TTL'd rows (no lightweight transaction on"
        " Register): P racing processes may send up to limit + P - 1 codes"
    ),
    counts_compacted_rows=no("range deletes write a tombstone and report no row count"),
    native_expiry=yes("every row is written USING TTL"),
    presence=yes("presence rows are written USING TTL in this server's datacenter"),
    home_regions=yes("each box's queue is coordinated in its home datacenter, which can move"),
    global_prekey_pools=no(
        "each region hands out only its own share of a device's one-time prekeys (exactly once"
        " without a WAN round trip): a region whose share is empty answers the last-resort key"
        " while another still has keys; counts report the lowest share"
    ),
)


class CassandraStore(
    CassandraHomes,
    CassandraDevices,
    CassandraRegistrations,
    CassandraLifecycle,
    CassandraPresence,
    CassandraNonces,
    CassandraAccounts,
    CassandraCodeSends,
    CassandraPrekeys,
    CassandraPushTargets,
    Store,
):
    """Apache Cassandra 5.0 backend (see the package docstring for the URL)."""

    capabilities = CAPABILITIES

    def __init__(self, url: StoreURL, options: StoreOptions) -> None:
        self.options = options
        self._settings = parse_settings(url)
        self.settle_window = span(self._settings.settle_seconds)
        self._positions = Allocator(options.clock)
        self._db = Bridge(self._settings, options.connection)
        self._cql = Cql(self._settings.keyspace)
        self._locks = KeyedLocks()
        self._topology = self._settings.topology
        self._homes = HomeCache()
        self._pending = PendingEstimates()
        self._prekey_regions = KeyspaceRegions(self._keyspace_replication)
        self._write_clock = MillisClock(options.clock)
        self._pk = PrekeyCql(self._settings.keyspace)

    async def _keyspace_replication(self) -> dict[str, str] | None:
        rows = await self._db.execute(
            self._cql.keyspace_replication, (self._settings.keyspace,), profile=KEYS
        )
        return dict(rows[0]["replication"]) if rows and rows[0]["replication"] else None

    def home_regions(self) -> HomeRegions:
        return self


__all__ = ["CAPABILITIES", "CassandraStore"]
