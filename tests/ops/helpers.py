"""Helpers for tests that drive ``rossby serve`` as a real process."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from rossby.server.metrics import start_exporter
from tests.serverproc import ServerProcess, health_status, rossby

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    return url


@dataclass
class _Port:
    port: int


class ProcessApi:
    """What ``tests.api.device.Device`` needs, for a server in a subprocess."""

    def __init__(self, server: ServerProcess, channel: grpc.aio.Channel | None = None) -> None:
        self.target = server.target
        self.outbox = server.workdir / "outbox"
        self.server = _Port(server.port)
        self.clock: Callable[[], float] = time.time
        self.channel = channel or grpc.aio.insecure_channel(server.target)

    async def close(self) -> None:
        await self.channel.close()


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a server log (other lines, e.g. tracebacks, skipped)."""
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def async_wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def health_is(target: str, wanted: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return health_status(target, timeout=1.0) == wanted
        except grpc.RpcError:
            return False

    return check


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics; answer {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape_registry(
    registry: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape an in-process server's registry over real HTTP (its own exporter)."""
    exporter = start_exporter("127.0.0.1:0", registry)
    try:
        return scrape(exporter.port)
    finally:
        exporter.close()


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (n, have), value in samples.items()
        if n == name and set(labels.items()) <= set(have)
    )


@contextmanager
def wedged_sqlite(db_path: Path) -> Iterator[None]:
    """Make a SQLite database unreadable for other processes while inside.

    A database in WAL mode is read under a shared lock on one of five
    "read mark" bytes of its ``-shm`` file (offsets 123..127). Holding all
    five exclusively, as a crashed-but-alive process or a stuck backup tool
    could, leaves every other process unable to start a read: SQLite retries
    for about ten seconds, then fails with SQLITE_PROTOCOL. fcntl locks are
    per process, so this works against a server in another process only.
    """
    fd = os.open(f"{db_path}-shm", os.O_RDWR)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 123, os.SEEK_SET)
                break
            except OSError:  # a reader holds a mark this instant
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the locks
