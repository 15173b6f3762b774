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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rossby.loadtest.config import LoadConfig
from rossby.loadtest.coordinator import Coordinator, Outcome, Snapshots
from rossby.loadtest.report import build_report
from tests.serverproc import ServerProcess

#: The harness's phase in which sends happen; kills happen only then.
RUN_PHASE = "run"


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


class _Load(threading.Thread):
    """The load harness's coordinator, on a thread so the caller can kill servers."""

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(name="crashrun-load", daemon=True)
        self.coordinator = Coordinator(config, self._progress)
        self.phase = "spawn"
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.in_run = threading.Event()
        self.run_over = threading.Event()

    def _progress(self, phase: str, elapsed: float, snapshots: Snapshots) -> None:
        self.phase = phase
        if phase == RUN_PHASE:
            self.in_run.set()
        elif self.in_run.is_set():
            self.run_over.set()

    def run(self) -> None:
        try:
            self.outcome = self.coordinator.run()
        except BaseException as exc:  # re-raised by the caller's thread
            self.error = exc
        finally:
            self.run_over.set()
            self.in_run.set()


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
    load = _Load(config.validate())
    crash = CrashRun()
    load.start()
    if not load.in_run.wait(config.register_timeout + 120):
        raise TimeoutError("the load harness never reached its run phase")
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
    load.join(config.op_bound() * 2 + config.drain_timeout + config.settle + 300)
    if load.is_alive():
        raise TimeoutError("the load harness did not finish")
    if load.error is not None:
        raise load.error
    assert load.outcome is not None
    crash.report = build_report(load.outcome)
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
