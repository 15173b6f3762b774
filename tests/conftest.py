"""Session-wide fixtures: a real Cassandra for the tests that need one.

Cassandra comes from, in this order: an existing cluster named by
``ROSSBY_CASSANDRA_CONTACT_POINTS``; the testcontainers Cassandra module
when a Docker engine answers; otherwise the project's launcher
(``deploy/cassandra/launcher.py``), which runs Cassandra from Maven Central
jars. If none works the fixture fails loudly; it never skips.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

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
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def cassandra_hosts() -> Iterator[list[str]]:
    """Contact points ("host:port") of a running single-DC (dc1) Cassandra."""
    existing = os.environ.get("ROSSBY_CASSANDRA_CONTACT_POINTS")
    if existing:
        yield [h.strip() for h in existing.split(",") if h.strip()]
        return
    if _docker_answers():
        from testcontainers.cassandra import CassandraContainer  # type: ignore[import-untyped]

        with CassandraContainer("cassandra:5.0") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(9042)
            yield [f"{host}:{port}"]
        return
    launcher = load_launcher()
    run_dir = ROOT / "var" / "test-cassandra"
    try:
        nodes = launcher.start(nodes=1, dcs=1, dir=run_dir)
    except Exception as exc:  # fail loudly: CI must never skip Cassandra tests
        pytest.fail(f"could not start Cassandra with the launcher: {exc}", pytrace=False)
    try:
        yield [f"{n.ip}:9042" for n in nodes]
    finally:
        launcher.stop(run_dir)


def cassandra_url(hosts: list[str], keyspace: str, local_dc: str = "dc1", **params: str) -> str:
    hostnames = ",".join(h.rsplit(":", 1)[0] for h in hosts)
    port = hosts[0].rsplit(":", 1)[1] if ":" in hosts[0] else "9042"
    query = "&".join(f"{k}={v}" for k, v in {"local_dc": local_dc, **params}.items())
    return f"cassandra://{hostnames}:{port}/{keyspace}?{query}"
