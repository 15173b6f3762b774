"""Three regions over a WAN on one machine: dc1, dc2, dc3 (one node each)
behind Toxiproxy (deploy/wan, docs/wan.md): the WAN itself, with plain CQL.

The cluster is the package's ``wan_cluster`` (tests/replication/conftest.py:
its addresses, ``ROSSBY_WAN_FIRST`` / ``ROSSBY_WAN_DIR`` / ``ROSSBY_WAN_KEEP``
/ ``ROSSBY_SKIP_WAN``), started once for this module and test_wan_regions.py
(Rossby servers on the same cluster). Every client talks to its own DC's
node directly (CQL never crosses a proxy); only the nodes' traffic between
DCs does.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, Session
from cassandra.query import SimpleStatement

from tests.conftest import load_launcher
from tests.replication.conftest import (
    LATENCY_MS,
    ONE_WAY_MS,
    WAN_DCS,
    WAN_DIR,
    WanCluster,
    log,
    node_session,
)

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

RUN_DIR = WAN_DIR
DCS = WAN_DCS
KEYSPACE = "rossby_wan"


@dataclass
class Regions:
    """The WAN cluster with a session per DC (its own node) in this module's keyspace."""

    launcher: ModuleType
    links: Any  # deploy/wan/links.py WanLinks
    sessions: dict[str, Session]
    ips: dict[str, str]

    def run(self, dc: str, cql: str, cl: int, *args: object) -> list[Any]:
        stmt = SimpleStatement(cql, consistency_level=cl)
        return list(self.sessions[dc].execute(stmt, args, timeout=30))


@pytest.fixture(scope="module")
def regions(wan_cluster: WanCluster) -> Iterator[Regions]:
    """The package's WAN cluster (tests/replication/conftest.py) with a
    keyspace of one replica per DC and a key-value table."""
    clusters: list[Cluster] = []
    sessions: dict[str, Session] = {}
    try:
        for dc in DCS:
            cluster, sessions[dc] = node_session(wan_cluster.ips[dc])
            clusters.append(cluster)
        sessions["dc1"].execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {{'class': "
            "'NetworkTopologyStrategy', 'dc1': 1, 'dc2': 1, 'dc3': 1}"
        )
        sessions["dc1"].execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v text)"
        )
        for s in sessions.values():
            s.set_keyspace(KEYSPACE)
        yield Regions(wan_cluster.launcher, wan_cluster.links, sessions, wan_cluster.ips)
    finally:
        for cluster in clusters:
            cluster.shutdown()


@pytest.fixture
def wan(regions: Regions) -> Iterator[Regions]:
    """The regions with the module's latency on every link and no partition,
    restored after the test."""
    regions.links.set_latency(LATENCY_MS)
    yield regions
    for dc in DCS:
        regions.links.heal(dc)
    regions.links.set_latency(LATENCY_MS)


def _read(r: Regions, dc: str, key: str) -> str | None:
    rows = r.run(dc, "SELECT v FROM kv WHERE k = %s", ConsistencyLevel.LOCAL_ONE, key)
    return str(rows[0].v) if rows else None


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` until true; seconds it took."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s", pytrace=False)
        time.sleep(0.1)
    return time.monotonic() - t0


def _established_to(ip: str, port: int) -> set[tuple[str, int]]:
    """Local (address, port) of this machine's ESTABLISHED TCP connections to ip:port."""
    want = socket.inet_aton(ip)[::-1].hex().upper() + f":{port:04X}"
    out: set[tuple[str, int]] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == want and fields[3] == "01":
            addr, lport = fields[1].split(":")
            out.add((socket.inet_ntoa(bytes.fromhex(addr)[::-1]), int(lport, 16)))
    return out


def test_toxiproxy_fetch_is_idempotent() -> None:
    """A second fetch finds the build of the same pin and touches nothing."""
    toxiproxy = load_launcher().toxiproxy
    bin_dir = toxiproxy.fetch(log=log)
    server = bin_dir / "toxiproxy-server"
    marker = toxiproxy.install_dir() / toxiproxy.MARKER_NAME
    before = (server.stat().st_mtime_ns, marker.stat().st_mtime_ns)
    said: list[str] = []
    assert toxiproxy.fetch(log=said.append) == bin_dir
    assert said == []  # no "building ..."
    assert (server.stat().st_mtime_ns, marker.stat().st_mtime_ns) == before


def test_cross_region_writes_pay_the_one_way_latency(wan: Regions) -> None:
    """EACH_QUORUM from dc1 waits for dc2 and dc3: a mutation out (one
    one-way delay into the replica) and its ack back (one into dc1). A bound
    from below only; LOCAL_QUORUM, which stays in dc1, pays neither."""
    samples = []
    for n in range(5):
        t0 = time.monotonic()
        wan.run(
            "dc1",
            "INSERT INTO kv (k, v) VALUES (%s, %s)",
            ConsistencyLevel.EACH_QUORUM,
            f"lat-{n}",
            "x",
        )
        samples.append((time.monotonic() - t0) * 1000)
    log(
        f"EACH_QUORUM from dc1 with {LATENCY_MS:.0f} ms one-way: "
        + ", ".join(f"{s:.0f}" for s in samples)
        + " ms"
    )
    assert min(samples) >= 2 * ONE_WAY_MS * 0.95, samples
    key = f"lat-{uuid.uuid4()}"
    wan.run("dc1", "INSERT INTO kv (k, v) VALUES (%s, 'y')", ConsistencyLevel.LOCAL_QUORUM, key)
    seen = _wait("dc1's write read at dc3", lambda: _read(wan, "dc3", key) == "y", 30)
    log(f"dc1 -> dc3 visible after {seen * 1000:.0f} ms")


def test_a_partitioned_region_misses_writes_until_healed(wan: Regions) -> None:
    """dc2 cut off (its links stalled, not reset): dc1 and dc3 go on at
    LOCAL_QUORUM, dc1's write reaches dc3 and not dc2; after heal it does,
    by hinted handoff: dc1 hinted the mutation that timed out, and replays
    it once dc2 answers again. (The stalled copy itself reaches dc2 at heal,
    past the 2 s write timeout, and dc2 drops it as expired: its log says
    "MUTATION_REQ messages were dropped ... cross node".)"""
    dc2_proxy = ("127.0.1." + wan.ips["dc2"].rsplit(".", 1)[1], 7000)
    dc1_log = next(n.log_file for n in wan.launcher.nodes(RUN_DIR) if n.dc == "dc1")
    dc1_log_from = dc1_log.stat().st_size
    links_before = _established_to(*dc2_proxy)
    assert links_before, "no connection into dc2's proxy before the partition"
    key = f"part-{uuid.uuid4()}"
    wan.links.partition("dc2")
    t_cut = time.monotonic()
    try:
        quorum = ConsistencyLevel.LOCAL_QUORUM
        wan.run("dc1", "INSERT INTO kv (k, v) VALUES (%s, 'from-dc1')", quorum, key)
        wan.run("dc3", "INSERT INTO kv (k, v) VALUES (%s, 'dc3-ok')", quorum, key + "-dc3")
        assert wan.run("dc3", "SELECT v FROM kv WHERE k = %s", quorum, key + "-dc3")
        _wait(
            "dc1's write at dc3 during the partition",
            lambda: _read(wan, "dc3", key) == "from-dc1",
            30,
        )
        # Past the write timeout (2 s): the stalled mutation has expired.
        time.sleep(max(0.0, 4.0 - (time.monotonic() - t_cut)))
        assert _read(wan, "dc2", key) is None, "dc2 got the write through the partition"
        stalled = _established_to(*dc2_proxy)
        assert links_before <= stalled, (
            f"connections into dc2 were reset: {sorted(links_before - stalled)}"
        )
    finally:
        wan.links.heal("dc2")
    healed = _wait(
        "dc1's write at dc2 after heal", lambda: _read(wan, "dc2", key) == "from-dc1", 120
    )
    log(
        f"partitioned {time.monotonic() - t_cut - healed:.1f}s; dc2 had the write "
        f"{healed:.1f}s after heal"
    )
    # dc1 logs the handoff once the whole hints file is through, just after dc2 has it.
    hint = "Finished hinted handoff of file"
    done = f"to endpoint /{dc2_proxy[0]}:7000"

    def handed_off() -> bool:
        with open(dc1_log, "rb") as fh:
            fh.seek(dc1_log_from)
            return any(
                hint in ln and done in ln for ln in fh.read().decode(errors="replace").splitlines()
            )

    _wait("dc1's log: the hinted handoff to dc2", handed_off, 30)
