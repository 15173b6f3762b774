"""Spawns the load-generating processes, keeps them in step, merges what they measured.

Phases (each a barrier, each bounded in time):

1. register: every process registers its slice of users and reports their boxes;
2. run: the coordinator broadcasts the directory of every user's boxes and a
   common start time; the processes run the mix until the duration ends or
   the message quota is spent, then report what was acknowledged;
3. drain: the coordinator hands each process the (box, message id) pairs its
   devices must hold; the processes fetch until they do (or the drain times
   out), settle, look once more, and report the audit and their histograms.

Processes are started with the ``spawn`` method: gRPC must not be forked
with live channels, and spawn creates none before the child's own.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from rossby.loadtest.audit import AuditResult
from rossby.loadtest.config import LoadConfig
from rossby.loadtest.stats import Merged
from rossby.loadtest.worker import child_main

POLL: Final = 0.2
SPAWN_SLACK: Final = 120.0
"""Seconds added to every barrier for spawning, imports and stragglers."""


class HarnessError(RuntimeError):
    """The load generator itself failed (not the server under test)."""


@dataclass
class Outcome:
    config: LoadConfig
    started_at: str
    registered_users: int = 0
    registered_devices: int = 0
    registration_failed: int = 0
    registration_errors: list[str] = field(default_factory=list)
    register_seconds: float = 0.0
    run_seconds: float = 0.0
    #: Wall-clock (Unix) start of the run phase, so a benchmark can line its
    #: own samples (server CPU) up with the timed window.
    run_started_unix: float = 0.0
    drain_seconds: float = 0.0
    stats: Merged = field(default_factory=Merged)
    setup: Merged = field(default_factory=Merged)
    drain: Merged = field(default_factory=Merged)
    audit: AuditResult = field(default_factory=AuditResult)
    skipped: int = 0
    sends_started: int = 0


Snapshots = dict[int, dict[str, Any]]
ProgressFn = Callable[[str, float, Snapshots], None]


class Coordinator:
    def __init__(self, config: LoadConfig, progress: ProgressFn | None = None) -> None:
        self.config = config
        self.progress = progress
        self.snapshots: Snapshots = {}
        self.phase = "spawn"
        self.t_start = time.monotonic()
        self.ctx = multiprocessing.get_context("spawn")
        self.out_q: Any = self.ctx.Queue()
        self.cmd_qs: list[Any] = []
        self.procs: list[Any] = []

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.phase, time.monotonic() - self.t_start, self.snapshots)

    def gather(self, kind: str, timeout: float) -> dict[int, Any]:
        """Wait until every process sent ``kind``; relay progress meanwhile."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        dead_since: dict[int, float] = {}
        while len(got) < len(self.procs):
            if time.monotonic() > deadline:
                missing = sorted(set(range(len(self.procs))) - set(got))
                raise HarnessError(f"processes {missing} sent no {kind!r} within {timeout:.0f}s")
            try:
                message = self.out_q.get(timeout=POLL)
            except queue.Empty:
                message = None
            if message is not None:
                what, index = message[0], int(message[1])
                if what == "progress":
                    self.snapshots[index] = message[2]
                elif what == kind:
                    got[index] = message[2]
                elif what in ("crashed", "aborted"):
                    raise HarnessError(f"load process {index} {what}:\n{message[2]}")
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if i not in got and not proc.is_alive():
                    # Its last messages may still be in the pipe: allow a grace.
                    if now - dead_since.setdefault(i, now) > 3.0:
                        raise HarnessError(f"load process {i} exited ({proc.exitcode})")
            self._tick()
        return got

    def run(self) -> Outcome:
        c = self.config
        outcome = Outcome(config=c, started_at=datetime.now(UTC).isoformat(timespec="seconds"))
        for i in range(c.processes):
            cmd_q = self.ctx.Queue()
            self.cmd_qs.append(cmd_q)
            self.procs.append(
                self.ctx.Process(
                    target=child_main,
                    args=(i, c.to_dict(), cmd_q, self.out_q),
                    name=f"rossby-loadtest-{i}",
                    daemon=True,
                )
            )
        try:
            for proc in self.procs:
                proc.start()
            self.phase = "register"
            t = time.monotonic()
            registered = self.gather("registered", c.register_timeout + SPAWN_SLACK)
            outcome.register_seconds = time.monotonic() - t
            directory: dict[int, list[str]] = {}
            owner: dict[str, int] = {}
            for index, part in registered.items():
                outcome.registration_failed += int(part["failed"])
                outcome.registration_errors.extend(part["errors"])
                for user, boxes in part["users"].items():
                    directory[int(user)] = list(boxes)
                    for box in boxes:
                        owner[box] = index
            outcome.registered_users = len(directory)
            outcome.registered_devices = sum(len(b) for b in directory.values())
            if len(directory) < 2:
                raise HarnessError(
                    "fewer than 2 users registered; first errors:\n"
                    + "\n".join(outcome.registration_errors[:5])
                )

            self.phase = "run"
            t0 = time.time() + 0.5
            outcome.run_started_unix = t0
            for cmd_q in self.cmd_qs:
                cmd_q.put(("start", directory, t0))
            limit = c.duration if c.duration is not None else c.max_seconds
            bound = c.op_bound()
            sent = self.gather("sent", limit + bound + SPAWN_SLACK)

            self.phase = "drain"
            t = time.monotonic()
            expected: list[dict[str, set[str]]] = [{} for _ in self.procs]
            for part in sent.values():
                for box, mids in part["acked"].items():
                    outcome.audit.acknowledged += len(mids)
                    expected[owner[box]].setdefault(box, set()).update(mids)
            for i, cmd_q in enumerate(self.cmd_qs):
                cmd_q.put(("drain", {box: sorted(m) for box, m in expected[i].items()}))
            results = self.gather("result", c.drain_timeout + c.settle + bound * 2 + SPAWN_SLACK)
            outcome.drain_seconds = time.monotonic() - t
        except BaseException:
            for cmd_q in self.cmd_qs:
                cmd_q.put(("abort",))
            raise
        finally:
            self.phase = "done"
            self._tick()
            self._reap()

        for part in results.values():
            outcome.stats.add(part["recorder"])
            outcome.setup.add(part["setup"])
            outcome.drain.add(part["drain"])
            outcome.audit.merge(part["audit"])
            outcome.run_seconds = max(outcome.run_seconds, float(part["run_seconds"]))
            outcome.skipped += int(part["skipped"])
            outcome.sends_started += int(part["sends_started"])
        return outcome

    def _reap(self) -> None:
        """Wait for the processes to exit, reading the queue meanwhile (a child
        only exits once what it put is flushed); terminate stragglers."""
        started = [p for p in self.procs if p.pid is not None]
        deadline = time.monotonic() + 15.0
        while any(p.is_alive() for p in started) and time.monotonic() < deadline:
            try:
                self.out_q.get(timeout=0.1)
            except (queue.Empty, OSError, ValueError):
                pass
        for proc in started:
            if proc.is_alive():
                proc.terminate()
            proc.join(5.0)


__all__ = ["Coordinator", "HarnessError", "Outcome"]
