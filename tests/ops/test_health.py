"""Health follows the store: NOT_SERVING while it is unreachable, SERVING after.

Both tests run ``rossby serve`` as a process and break its store from the
outside, as an outage would: SQLite by another process wedging the
database's locks, Cassandra by cutting the network path to a real node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rossby.store.cassandra.driver import PROTOCOL_VERSION
from tests.ops.helpers import (
    NOT_SERVING,
    SERVING,
    health_is,
    log_events,
    metric,
    migrated_sqlite,
    scrape,
    wait_for,
    wedged_sqlite,
)
from tests.ops.tcpproxy import TcpProxy
from tests.serverproc import ServerProcess

FAST_HEALTH = ("--health-interval", "0.2", "--health-timeout", "1")


def test_health_follows_an_unreadable_sqlite_file(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with ServerProcess(tmp_path, url, *FAST_HEALTH) as server:
        assert metric(scrape(server.metrics_port), "rossby_store_up") == 1
        with wedged_sqlite(tmp_path / "rossby.db"):
            wait_for(health_is(server.target, NOT_SERVING), 20, "NOT_SERVING")
            assert metric(scrape(server.metrics_port), "rossby_store_up") == 0
        wait_for(health_is(server.target, SERVING), 30, "SERVING again")
        assert metric(scrape(server.metrics_port), "rossby_store_up") == 1
        assert server.stop() == 0
    events = [e["event"] for e in log_events(server.log)]
    assert events.index("store_unreachable") < events.index("store_reachable")


@pytest.mark.cassandra
def test_health_follows_a_cassandra_node_going_away(
    tmp_path: Path, cassandra_hosts: list[str]
) -> None:
    """The server reaches one real Cassandra node through a TCP proxy it
    cannot tell from the node; stopping the proxy refuses and resets every
    connection, which is what the server sees when the node stops."""
    from tests.api.conftest import migrate_in_thread
    from tests.conftest import cassandra_url

    host, port = cassandra_hosts[0].rsplit(":", 1)
    _assert_alone_in_dc1(host, int(port))
    with TcpProxy(host, int(port)) as proxy:
        url = cassandra_url([f"127.0.0.1:{proxy.port}"], "rossby_health", replication="dc1:1")
        migrate_in_thread(url)
        with ServerProcess(tmp_path, url, *FAST_HEALTH) as server:
            proxy.stop()
            wait_for(health_is(server.target, NOT_SERVING), 30, "NOT_SERVING")
            assert metric(scrape(server.metrics_port), "rossby_store_up") == 0
            proxy.resume()
            # The driver reconnects on its own schedule (1 s, 2 s, 4 s, ...).
            wait_for(health_is(server.target, SERVING), 90, "SERVING again")
            assert metric(scrape(server.metrics_port), "rossby_store_up") == 1
            assert server.stop() == 0
    events = [e["event"] for e in log_events(server.log)]
    assert events.index("store_unreachable") < events.index("store_reachable")


def _assert_alone_in_dc1(host: str, port: int) -> None:
    """The driver finds a node's peers by itself and would reach another dc1
    node directly, around the proxy; the suite's fixture starts one node."""
    from cassandra.cluster import Cluster

    cluster = Cluster([host], port=port, protocol_version=PROTOCOL_VERSION)
    try:
        session = cluster.connect()
        local = session.execute("SELECT data_center FROM system.local").one()[0]
        peers = [r[0] for r in session.execute("SELECT data_center FROM system.peers")]
    finally:
        cluster.shutdown()
    assert local == "dc1" and "dc1" not in peers, (
        "this test needs a cluster with a single node in dc1 (other DCs are fine)"
    )
