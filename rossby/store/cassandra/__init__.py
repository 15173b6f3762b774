"""Apache Cassandra 5.0 backend of the store contract.

URL: ``cassandra://host1,host2:9042/keyspace?param=value&...``

Parameters:

``local_dc`` (default ``dc1``)
    The datacenter whose nodes coordinate this process's requests;
    ``LOCAL_*`` consistency levels are relative to it.
``replication`` (default ``<local_dc>:1``)
    ``dc1:3,dc2:3``: replicas per datacenter, used only when ``migrate``
    creates the keyspace (NetworkTopologyStrategy). An existing keyspace
    is never altered.
``settle_ms`` (default 5000)
    The settle window: how far below its cursor a device re-reads, and how
    far below the lowest cursor compaction stays. It must exceed the request
    timeout plus the worst clock skew between writers (docs/store.md,
    "Cursor edge").
``request_timeout_ms`` (default 2000)
    Client-side timeout of one request. Must be at most half of
    ``settle_ms``; the other half is the clock-skew allowance.
``consistency`` (default ``LOCAL_QUORUM``; ``QUORUM`` or ``ALL`` allowed)
    Consistency of reads and writes. Levels without read-your-writes are
    refused: the settle window and idempotent enqueue rely on it.
    Lightweight transactions use SERIAL (contacts, registrations) or
    LOCAL_SERIAL (message claims; prekey claims, each region on its own
    share of a device's pools).
``max_in_flight`` (default 64)
    Requests one store sends concurrently; further callers wait.

The driver connects on first use, in a worker thread, so ``open_store``
never blocks and a forked worker connects on its own.
"""

from rossby.store.cassandra.store import CassandraStore

__all__ = ["CassandraStore"]
