"""Session-wide fixtures: a real Cassandra for the tests that need one.

The session's Cassandra is one cluster of two datacenters: dc1 on
127.0.0.1 and dc2 on 127.0.0.2 (one node each). Single-region tests use
keyspaces replicated to dc1 only (``replication=dc1:1``) and dc1's contact
point (``cassandra_hosts``), so they are unaffected when a fault test stops
dc2; the multi-region tests (tests/replication) take ``cassandra_cluster``.

Cassandra comes from, in this order: an existing cluster named by
``ROSSBY_CASSANDRA_CONTACT_POINTS`` (dc1; dc2's in
``ROSSBY_CASSANDRA_DC2_CONTACT_POINTS``, and ``ROSSBY_CASSANDRA_DIR`` for a
launcher-made cluster whose nodes fault tests may stop and start); the
testcontainers Cassandra module when a Docker engine answers (one DC only:
the multi-region tests then fail, saying why); otherwise the project's
launcher (``deploy/cassandra/launcher.py``, ``start(nodes=2, dcs=2)``),
which runs Cassandra from Maven Central jars. If none works the fixture
fails loudly; it never skips.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.backends import BACKENDS

ROOT = Path(__file__).resolve().parent.parent


def load_launcher() -> ModuleType:
    """Import the stdlib-only launcher script by path (it is not a package)."""
    path = ROOT / "deploy" / "cassandra" / "launcher.py"
    spec = importlib.util.spec_from_file_location("rossby_cassandra_launcher", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]  # testcontainers' untyped dependency

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@dataclass
class CassandraCluster:
    """The session's Cassandra: contact points per datacenter and, when the
    launcher made it, the means to stop and restart one DC's node."""

    dc_hosts: dict[str, list[str]]
    launcher_dir: Path | None = None
    startup_seconds: float | None = None

    def hosts(self, dc: str) -> list[str]:
        found = self.dc_hosts.get(dc)
        if not found:
            pytest.fail(
                f"no Cassandra contact point for {dc}: the multi-region tests need the "
                "launcher's 2-DC cluster or ROSSBY_CASSANDRA_DC2_CONTACT_POINTS",
                pytrace=False,
            )
        return found

    def _node(self, dc: str) -> tuple[ModuleType, Path, int]:
        if self.launcher_dir is None:
            pytest.fail(
                "stopping a datacenter needs a launcher-made cluster (ROSSBY_CASSANDRA_DIR)",
                pytrace=False,
            )
        launcher = load_launcher()
        for row in launcher.status(self.launcher_dir):
            if row["dc"] == dc:
                return launcher, self.launcher_dir, int(row["node"])
        pytest.fail(f"the launcher's cluster has no node in {dc}", pytrace=False)

    def stop_dc(self, dc: str) -> None:
        """Stop ``dc``'s node, keeping its data (SIGTERM: Cassandra drains).

        Not SIGKILL: the launcher runs nodes with
        ``flush_local_schema_changes=false`` (fast DDL), so a killed node
        forgets tables created since its last flush and its commit log
        replay then drops their rows, a test artefact, not a Rossby one."""
        launcher, rt, node = self._node(dc)
        launcher.stop_node(rt, node)

    def start_dc(self, dc: str) -> None:
        """Restart ``dc``'s node; returns once it answers CQL and gossip
        marks it UP with its peers."""
        launcher, rt, node = self._node(dc)
        launcher.start_node(rt, node)


def _split(text: str) -> list[str]:
    return [h.strip() if ":" in h else f"{h.strip()}:9042" for h in text.split(",") if h.strip()]


@pytest.fixture(scope="session")
def cassandra_cluster() -> Iterator[CassandraCluster]:
    existing = os.environ.get("ROSSBY_CASSANDRA_CONTACT_POINTS")
    if existing:
        hosts = {"dc1": _split(existing)}
        dc2 = os.environ.get("ROSSBY_CASSANDRA_DC2_CONTACT_POINTS")
        if dc2:
            hosts["dc2"] = _split(dc2)
        run = os.environ.get("ROSSBY_CASSANDRA_DIR")
        yield CassandraCluster(hosts, Path(run) if run else None)
        return
    if _docker_answers():
        from testcontainers.cassandra import CassandraContainer

        with CassandraContainer("cassandra:5.0") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(9042)
            yield CassandraCluster({"dc1": [f"{host}:{port}"]})
        return
    launcher = load_launcher()
    run_dir = ROOT / "var" / "test-cassandra"
    t0 = time.monotonic()
    try:
        nodes = launcher.start(nodes=2, dcs=2, dir=run_dir)
    except Exception as exc:  # fail loudly: CI must never skip Cassandra tests
        pytest.fail(f"could not start Cassandra with the launcher: {exc}", pytrace=False)
    try:
        by_dc: dict[str, list[str]] = {}
        for n in nodes:
            by_dc.setdefault(n.dc, []).append(f"{n.ip}:9042")
        yield CassandraCluster(by_dc, run_dir, time.monotonic() - t0)
    finally:
        launcher.stop(run_dir)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of a test that runs on each (tests/support/backends.py);
    ``@pytest.mark.parametrize("backend", ["sqlite"])`` narrows one test."""
    return str(request.param)


@pytest.fixture(scope="session")
def cassandra_hosts(cassandra_cluster: CassandraCluster) -> list[str]:
    """Contact points ("host:port") of dc1 of the session's Cassandra."""
    return cassandra_cluster.hosts("dc1")


def cassandra_url(hosts: list[str], keyspace: str, local_dc: str = "dc1", **params: str) -> str:
    hostnames = ",".join(h.rsplit(":", 1)[0] for h in hosts)
    port = hosts[0].rsplit(":", 1)[1] if ":" in hosts[0] else "9042"
    query = "&".join(f"{k}={v}" for k, v in {"local_dc": local_dc, **params}.items())
    return f"cassandra://{hostnames}:{port}/{keyspace}?{query}"
