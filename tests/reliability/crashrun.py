"""Crash-safety runs: ``kill -9`` a serving ``rossby serve`` again and again under load.

The load is the real harness (``rossby.loadtest``: registered devices, Hawk,
Send with retries under the same message id, Fetch/Ack, Subscribe) driven
from a thread; this module only owns the server: it waits for the run phase,
then kills the server with SIGKILL at random moments and starts it again on
the same port, until the run phase ends. The harness's own delivery audit
then says whether every Send that returned OK reached every device of its
box exactly once (``rossby/loadtest/audit.py`` has the vocabulary).

Used by ``tests/reliability/test_crash.py`` (a short run on each backend)
and ``bench/crash_safety.py`` (the longer run behind docs/reliability.md).
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rossby.loadtest.config import LoadConfig
from tests.reliability.loadrun import LoadRun
from tests.serverproc import ServerProcess


@dataclass
class CrashRun:
    """What one run did to the server, and the harness's report of the load."""

    kills: int = 0
    kill_times: list[float] = field(default_factory=list)
    restart_seconds: list[float] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        audit = self.report["audit"]
        restarts = sorted(self.restart_seconds)
        return {
            "kills": self.kills,
            "restart_seconds_median": round(restarts[len(restarts) // 2], 2) if restarts else None,
            "sends": self.report["totals"]["sends"],
            "acknowledged": audit["acknowledged"],
            "expected_deliveries": audit["expected"],
            "delivered": audit["delivered"],
            "lost": audit["lost"],
            "duplicates": audit["duplicates"],
            "unexpected": audit["unexpected"],
            "unacknowledged": self.report["totals"]["unacknowledged"],
            "send_duplicate_outcomes": self.report["send_outcomes"]["duplicate"],
            "errors_by_code": self.report["errors_by_code"],
        }


def run_with_kills(
    server: ServerProcess,
    config: LoadConfig,
    *,
    first_kill_after: tuple[float, float] = (0.5, 1.5),
    kill_every: tuple[float, float] = (0.3, 2.0),
    max_kills: int = 1000,
    seed: int | None = None,
    start_timeout: float = 60.0,
) -> CrashRun:
    """Run ``config``'s load against ``server`` (already SERVING) while killing it.

    Between kills the server gets a random ``kill_every`` seconds of service
    after it is SERVING again, so some kills land mid-write and some while
    clients are retrying into a server that just came back.
    """
    rng = random.Random(seed)
    load = LoadRun(config.validate()).start()
    crash = CrashRun()
    load.wait_running(config.register_timeout + 120)
    gap = rng.uniform(*first_kill_after)
    while crash.kills < max_kills:
        if load.run_over.wait(gap):
            break
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        crash.kills += 1
        crash.kill_times.append(time.time())
        started = time.monotonic()
        server.start(timeout=start_timeout)
        crash.restart_seconds.append(time.monotonic() - started)
        gap = rng.uniform(*kill_every)
    crash.report = load.finish(config.op_bound() * 2 + config.drain_timeout + config.settle + 300)
    return crash


def crash_config(
    server: ServerProcess, outbox: Path, *, users: int, duration: float, **overrides: Any
) -> LoadConfig:
    """A load for crash runs: mixed traffic, patient retries that outlast a restart."""
    values: dict[str, Any] = {
        "targets": (server.target,),
        "outboxes": (str(outbox),),
        "users": users,
        "processes": 1,
        "concurrency": 8,
        "duration": duration,
        "mix": {"send": 5.0, "group": 1.0, "fetch": 3.0, "subscribe": 1.0},
        "group_size": 3,
        "payload_bytes": 256,
        # A restart takes one to a few seconds; 8 retries backing off to 2 s
        # outlast it, so most Sends caught by a kill still end acknowledged.
        "send_retries": 8,
        "retry_backoff": 0.1,
        "rpc_timeout": 5.0,
        "drain_timeout": 60.0,
        "settle": 1.0,
    }
    values.update(overrides)
    return LoadConfig(**values)


__all__ = ["CrashRun", "crash_config", "run_with_kills"]
