"""What only the Cassandra backend has: versioned CQL schema, a queue read
path that must never touch tombstones, and driver-error translation."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout, WriteType
from cassandra.cluster import Cluster, NoHostAvailable

from rossby.errors import ConfigError, FailedPrecondition, StoreUnavailable
from rossby.store import (
    Box,
    Device,
    DeviceKeys,
    DeviceState,
    NewMessage,
    Store,
    StoreOptions,
    open_store,
)
from rossby.store.cassandra import CassandraStore
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from rossby.store.cassandra.errors import translate
from rossby.store.cassandra.migrations import latest_version
from rossby.store.cassandra.positions import bucket_of, span
from tests.conftest import cassandra_url
from tests.support.clocks import WallClock

pytestmark = pytest.mark.cassandra

TOMBSTONE_TRACE = re.compile(r"Read (\d+) live rows and (\d+) tombstone cells")


@pytest.fixture(scope="module")
def session(cassandra_hosts: list[str]) -> Iterator[Any]:
    """A plain driver session, to look behind the store's back."""
    host, _, port = cassandra_hosts[0].partition(":")
    cluster = Cluster([host], port=int(port or 9042), protocol_version=PROTOCOL_VERSION)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture
async def fresh_keyspace(cassandra_hosts: list[str], session: Any) -> AsyncIterator[str]:
    """A keyspace name nobody used; dropped afterwards."""
    name = f"rossby_t{uuid.uuid4().hex[:12]}"
    yield name
    await asyncio.to_thread(session.execute, f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


@pytest.fixture
async def open_fresh(
    cassandra_hosts: list[str], fresh_keyspace: str
) -> AsyncIterator[Callable[..., Store]]:
    opened: list[Store] = []

    def factory(**options: Any) -> Store:
        store = open_store(
            cassandra_url(cassandra_hosts, fresh_keyspace, replication="dc1:1"),
            StoreOptions(**options),
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


async def cql(session: Any, query: str, *params: Any) -> list[Any]:
    return list(await asyncio.to_thread(session.execute, query, params or None, timeout=60))


# -- schema ---------------------------------------------------------------------------


async def test_migrate_creates_versions_and_refuses_newer(
    open_fresh: Callable[..., Store], fresh_keyspace: str, session: Any
) -> None:
    store, other = open_fresh(), open_fresh()
    latest = latest_version()
    with pytest.raises(FailedPrecondition) as missing:
        await store.check_schema()
    assert missing.value.reason == "SCHEMA_MISSING"

    assert await store.migrate() == latest
    assert await store.migrate() == latest  # idempotent
    assert await other.migrate() == latest  # from another process too
    assert await other.check_schema() == latest
    (ks,) = await cql(
        session,
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        fresh_keyspace,
    )
    assert ks.replication["class"].endswith("NetworkTopologyStrategy")
    assert ks.replication["dc1"] == "1"
    tables = {
        r.table_name
        for r in await cql(
            session,
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            fresh_keyspace,
        )
    }
    assert {"boxes", "messages", "message_claims", "contacts", "registrations"} <= tables
    versions = await cql(
        session, f"SELECT version FROM {fresh_keyspace}.schema_version WHERE component = 'store'"
    )
    assert sorted(r.version for r in versions) == list(range(1, latest + 1))

    # A database left at an older version (here: bookkeeping only) is
    # reported as outdated, and migrate brings it forward.
    await cql(session, f"DELETE FROM {fresh_keyspace}.schema_version WHERE component = 'store'")
    await cql(
        session,
        f"INSERT INTO {fresh_keyspace}.schema_version (component, version) VALUES ('store', 0)",
    )
    with pytest.raises(FailedPrecondition) as outdated:
        await store.check_schema()
    assert outdated.value.reason == "SCHEMA_OUTDATED"
    assert await store.migrate() == latest
    assert await store.check_schema() == latest

    # A newer schema (written by newer code) is refused by both calls.
    await cql(
        session,
        f"INSERT INTO {fresh_keyspace}.schema_version (component, version) VALUES ('store', %s)",
        latest + 1,
    )
    for call in (store.check_schema, store.migrate):
        with pytest.raises(FailedPrecondition) as too_new:
            await call()
        assert too_new.value.reason == "SCHEMA_TOO_NEW"


# -- the read path never meets a tombstone ---------------------------------------------


def _keys() -> DeviceKeys:
    return DeviceKeys(os.urandom(32), os.urandom(32), os.urandom(64))


async def _send(store: Store, box_id: uuid.UUID, count: int) -> list[int]:
    positions = []
    for _ in range(count):
        message = NewMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), os.urandom(64))
        positions.append((await store.enqueue(box_id, message)).position)
    return positions


async def _tombstones_seen(store: CassandraStore, call: Any) -> list[tuple[int, int]]:
    """Run ``call`` with every request traced; (live rows, tombstones) per
    read that touched a table."""
    store._db.traces = []
    try:
        await call
    finally:
        futures, store._db.traces = store._db.traces, None
    counts: list[tuple[int, int]] = []
    for future in futures:
        trace = await asyncio.to_thread(future.get_query_trace, 10.0)
        for event in trace.events:
            match = TOMBSTONE_TRACE.search(event.description)
            if match:
                counts.append((int(match.group(1)), int(match.group(2))))
    return counts


async def test_queue_reads_never_scan_tombstones(
    open_fresh: Callable[..., Store], fresh_keyspace: str, session: Any
) -> None:
    clock = WallClock()
    store = open_fresh(clock=clock)
    short_lived = open_fresh(clock=clock, message_ttl=2.0)
    assert isinstance(store, CassandraStore)
    await store.migrate()
    box = Box(uuid.uuid4(), "dc1", clock())
    device = Device(
        box.box_id, uuid.uuid4(), "phone", _keys(), os.urandom(32), DeviceState.ACTIVE, clock()
    )
    await store.create_box(box, device)
    settle = store.settle_window / span(1.0)

    # Rounds of send, ack, compact, a day apart, so compaction leaves both
    # whole-bucket partition deletes and range deletes behind.
    counts: list[tuple[int, int]] = []
    for _ in range(3):
        sent = await _send(store, box.box_id, 400)
        clock.offset += settle + 1
        marker = await _send(store, box.box_id, 1)
        await store.ack(box.box_id, device.device_id, marker[0])
        result = await store.compact(box.box_id)
        assert result.purged_through >= sent[-1]
        # Read right above the range delete, in the same partition.
        counts += await _tombstones_seen(store, store.fetch(box.box_id, device.device_id))
        clock.offset += 86_400
    # Messages whose TTL ran out (physically: Cassandra TTL runs in real
    # time); the store reading them must use the same TTL, as every server
    # process does.
    await _send(short_lived, box.box_id, 300)
    await asyncio.sleep(3.5)
    clock.offset += settle + 1
    live = await _send(short_lived, box.box_id, 5)
    assert isinstance(short_lived, CassandraStore)

    counts += await _tombstones_seen(short_lived, short_lived.fetch(box.box_id, device.device_id))
    counts += await _tombstones_seen(short_lived, short_lived.pending_count(box.box_id))
    extra = NewMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), b"x")
    counts += await _tombstones_seen(short_lived, short_lived.enqueue(box.box_id, extra))
    assert counts, "tracing reported no reads"
    print("traced reads (live rows, tombstones):", counts)
    assert all(tombstones == 0 for _, tombstones in counts), counts
    page = await short_lived.fetch(box.box_id, device.device_id)
    assert [m.position for m in page.messages][: len(live)] == live

    # Control: the same partition read without the lower bound does meet
    # the tombstones, so the zero above is a measurement, not a blind spot.
    future = await asyncio.to_thread(
        session.execute_async,
        f"SELECT position FROM {fresh_keyspace}.messages WHERE box_id = %s AND bucket = %s",
        (box.box_id, bucket_of(live[0])),
        trace=True,
    )
    await asyncio.to_thread(future.result)
    trace = await asyncio.to_thread(future.get_query_trace, 10.0)
    control = [
        int(m.group(2))
        for e in trace.events
        if (m := TOMBSTONE_TRACE.search(e.description)) is not None
    ]
    print("control read tombstones:", control)
    assert control and max(control) > 0, control


# -- driver errors -------------------------------------------------------------------


async def test_unreachable_cluster_is_unavailable_and_not_applied() -> None:
    started = time.monotonic()
    store = open_store("cassandra://127.0.0.9:9/rossby?local_dc=dc1")
    assert time.monotonic() - started < 0.5  # opening never connects
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await store.ping()
        assert refused.value.applied is False
        with pytest.raises(StoreUnavailable) as write:
            await store.enqueue(
                uuid.uuid4(), NewMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), b"")
            )
        assert write.value.applied is False
    finally:
        await store.close()


def test_translation_separates_refused_from_unknown() -> None:
    refused = [Unavailable("down"), NoHostAvailable("none", {}), ReadTimeout("slow read")]
    unknown = [
        WriteTimeout("slow write", write_type=WriteType.name_to_value["SIMPLE"]),
        WriteTimeout("slow LWT", write_type=WriteType.name_to_value["CAS"]),
        OperationTimedOut("client gave up"),
    ]
    for exc in refused:
        out = translate(exc)
        assert isinstance(out, StoreUnavailable) and out.applied is False, exc
    for exc in unknown:
        out = translate(exc)
        assert isinstance(out, StoreUnavailable) and out.applied is None, exc
    bug = ValueError("not a driver error")
    assert translate(bug) is bug


@pytest.mark.parametrize(
    "query",
    [
        "request_timeout_ms=3000",  # more than half of the default 5000 ms window
        "settle_ms=1000&request_timeout_ms=600",
        "consistency=ONE",  # no read-your-writes
        "replication=dc1",
        "replication=dc1:0",
        "settle_window=5000",  # unknown (a typo must not fall back to a default)
    ],
)
def test_bad_url_parameters_are_refused_before_connecting(query: str) -> None:
    with pytest.raises(ConfigError):
        open_store(f"cassandra://127.0.0.1:9042/rossby?{query}")


def test_url_parameters_shape_the_store() -> None:
    store = open_store(
        "cassandra://127.0.0.1:9042/rossby?local_dc=eu&replication=eu:3,us:3"
        "&settle_ms=8000&request_timeout_ms=1000"
    )
    assert isinstance(store, CassandraStore)
    assert store.settle_window == span(8.0)
    assert store._settings.replication == (("eu", 3), ("us", 3))
