"""Regions for the multi-region tests, on two clusters.

The session's two-datacenter Cassandra (``regions``: one keyspace
``dc1:1,dc2:1``) and the three-region WAN cluster (``wan_cluster``: dc1, dc2,
dc3 behind Toxiproxy, docs/wan.md), started once for the modules that take it
(test_wan.py, test_wan_regions.py) and stopped after the package's last test,
so it does not stay up for the rest of the suite. Either can carry real
``rossby serve`` processes, one per region (``serve_regions``), reached over
real gRPC channels.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import WhiteListRoundRobinPolicy

from rossby.client.hawk import HawkSigner
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import migrate_in_thread
from tests.api.device import Device, email
from tests.conftest import ROOT, CassandraCluster, cassandra_url, load_launcher
from tests.ops.helpers import ProcessApi
from tests.serverproc import ServerProcess

KEYSPACE = "rossby_geo"
REPLICATION = "dc1:1,dc2:1"


class Regions:
    """Store URLs of the regions (one per DC of ``replication``) over one keyspace."""

    def __init__(
        self,
        cluster: CassandraCluster,
        keyspace: str = KEYSPACE,
        replication: str = REPLICATION,
        **params: str,
    ) -> None:
        self.cluster = cluster
        self.keyspace = keyspace
        self.replication = replication
        self.params = params  # for every URL, e.g. a short request timeout
        self.dcs = tuple(part.split(":", 1)[0] for part in replication.split(","))

    def url(self, dc: str, **params: str) -> str:
        return cassandra_url(
            self.cluster.hosts(dc),
            self.keyspace,
            local_dc=dc,
            replication=self.replication,
            **{**self.params, **params},
        )


@pytest.fixture(scope="session")
def regions(cassandra_cluster: CassandraCluster) -> Regions:
    out = Regions(cassandra_cluster)
    migrate_in_thread(out.url("dc1"))
    return out


# -- Rossby servers, one per region ---------------------------------------------------


class Region:
    """One region's ``rossby serve`` and a gRPC channel to it."""

    def __init__(self, name: str, server: ServerProcess) -> None:
        self.name = name
        self.server = server
        self.api = ProcessApi(server)


@asynccontextmanager
async def serve_regions(
    workdir: Path, regions: Regions, dcs: tuple[str, ...] | None = None
) -> AsyncIterator[dict[str, Region]]:
    """A server per region (``--region dc``, its own DC's contact point),
    sharing one state dir (the secrets every region must share) and one
    outbox; all stopped on the way out, whatever happened. They start at
    once (each waits on its imports and its store, not on the others)."""
    names = dcs or regions.dcs
    started = [ServerProcess(workdir, regions.url(dc), "--region", dc) for dc in names]
    out: dict[str, Region] = {}
    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(server.start, 90) for server in started), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        out = {dc: Region(dc, server) for dc, server in zip(names, started, strict=True)}
        yield out
    finally:
        for region in out.values():
            await region.api.close()
        for server in started:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


def via(device: Device, region: Region) -> Device:
    """The same device, talking to another region's server."""
    assert device.box_id is not None
    other = copy.copy(device)
    other.api = region.api
    other.signer = HawkSigner(
        f"{device.box_id}.{device.device_id}", device.hawk_key, "127.0.0.1", region.server.port
    )
    return other


async def joined(region: Region, name: str) -> tuple[Device, pb.AuthorizeResponse]:
    """A new contact registered and authorized in ``region`` (its box homed there)."""
    device = Device(region.api, email(name))
    await device.register()
    reply = await device.authorize()
    return device, reply


# -- the three-region WAN cluster -----------------------------------------------------

WAN_FIRST = int(os.environ.get("ROSSBY_WAN_FIRST", "7"))
WAN_DIR = Path(os.environ.get("ROSSBY_WAN_DIR") or ROOT / "var" / "test-cassandra-wan")
#: The one-way latency between DCs the tests expect.
ONE_WAY_MS = 40.0
#: The one the links get: ONE_WAY_MS, unless ``ROSSBY_WAN_TEST_LATENCY_MS``
#: says otherwise (0 turns the delay off, and the latency test must then fail).
LATENCY_MS = float(os.environ.get("ROSSBY_WAN_TEST_LATENCY_MS", str(ONE_WAY_MS)))
WAN_DCS = ("dc1", "dc2", "dc3")


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class WanCluster:
    """The running three-region cluster: its node per DC, the WAN links, and
    the cluster as the Rossby helpers take it (contact points per DC,
    stop/start of a DC's node). CQL sessions are each module's own
    (``node_session``), so no module's keyspace or state leaks into another."""

    launcher: ModuleType
    links: Any  # deploy/wan/links.py WanLinks (loaded by path, like the launcher)
    ips: dict[str, str]
    startup_seconds: float

    @property
    def cassandra(self) -> CassandraCluster:
        return CassandraCluster(
            {dc: [f"{ip}:9042"] for dc, ip in self.ips.items()}, WAN_DIR, self.startup_seconds
        )


def node_session(ip: str) -> tuple[Cluster, Session]:
    """A CQL session that talks to the node at ``ip`` only (its own DC's)."""
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([ip]))
    cluster = Cluster(
        [ip], execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=PROTOCOL_VERSION
    )
    return cluster, cluster.connect()


@pytest.fixture(scope="package")
def wan_cluster() -> Iterator[WanCluster]:
    """The launcher's ``start(nodes=3, dcs=3, wan=...)`` on
    127.0.0.FIRST..FIRST+2 with its proxies on 127.0.1.*; FIRST is 7 (beside
    the session's 127.0.0.1-2, the node-fault cluster's 3-5 and the secure
    one's 6), or ``ROSSBY_WAN_FIRST``; its dir ``var/test-cassandra-wan`` or
    ``ROSSBY_WAN_DIR``. ``ROSSBY_WAN_KEEP=1`` uses the WAN cluster already
    running there (e.g. ``launcher.py --dir D start --nodes 3 --dcs 3 --first
    F --wan-latency-ms 40``) and leaves it running. ``ROSSBY_SKIP_WAN=1``
    skips its tests, the only way they skip. Package scope: one start for
    every module that takes it, stopped when tests/replication is done."""
    if os.environ.get("ROSSBY_SKIP_WAN") == "1":
        pytest.skip("ROSSBY_SKIP_WAN=1")
    launcher = load_launcher()
    t0 = time.monotonic()
    keep = os.environ.get("ROSSBY_WAN_KEEP") == "1"
    try:
        try:
            nodes = [n for n in launcher.nodes(WAN_DIR) if n.cql_up()] if keep else []
            if keep and len(nodes) != 3:
                pytest.fail(f"ROSSBY_WAN_KEEP=1: no running 3-node cluster in {WAN_DIR}")
            nodes = nodes or launcher.start(
                nodes=3,
                dcs=3,
                dir=WAN_DIR,
                first=WAN_FIRST,
                heap_max="512M",
                cluster_name="rossby-wan",
                wan=launcher.links.WanSettings(latency_ms=LATENCY_MS),
                log=log,
            )
        except (OSError, RuntimeError, ValueError) as exc:  # fail loudly, like the session fixture
            pytest.fail(f"could not start the three-region Cassandra: {exc}", pytrace=False)
        startup = time.monotonic() - t0
        log(f"three-region WAN cluster up in {startup:.1f}s")
        ips = {n.dc: n.ip for n in nodes}
        yield WanCluster(launcher, launcher.wan_links(WAN_DIR), ips, startup)
    finally:
        if not keep:
            launcher.stop(WAN_DIR, log=log)
