"""Node faults under load: run ``rossby loadtest`` (its Python API, in a
thread) while a Cassandra node is stopped and restarted, plus a *witness*:
one sender sending to one receiver, one Send at a time, every call timed
and classified by when it ran relative to the fault.

Shared by ``tests/reliability/test_node_fault.py`` (small, inside ``make
test``) and ``bench/node_fault.py`` (the longer run whose figures are in
docs/reliability.md, "Node faults").

What each part shows:

* the load test's delivery audit: every Send it saw acknowledged reaches
  every device of its recipient exactly once (its drain may overlap the
  node's restart when the restart is slow);
* the witness: which Sends succeeded or failed (and with which code) while
  the node was surely down, their latency before, during and after the
  fault, and, drained only once the node is back and answering, that every
  witness message acknowledged at any time is delivered exactly once;
* the load test's per-second timeline, for the throughput of the whole load
  while the node was down. It counts from the run's start ``t0``, which we
  only know to within ``T0_SLACK`` (the coordinator sets ``t0`` half a
  second after entering its "run" phase, and we hear of that within a
  poll); a second counts as *during* only if it lies inside the outage
  whatever ``t0`` was, and as *outside* only if it cannot overlap the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from cassandra.cluster import Cluster
from grpc_health.v1 import health_pb2

from rossby.loadtest.config import LoadConfig
from rossby.status import error_info
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email
from tests.ops.helpers import ProcessApi
from tests.reliability.loadrun import LoadRun
from tests.serverproc import ServerProcess, health_status

Log = Callable[[str], None]
T0_SLACK = 0.5
"""``t0`` lies in [moment we saw the run phase, that moment + T0_SLACK]."""
QUEUED = (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE)
WITNESS_PAUSE = 0.05
"""Seconds between two witness Sends."""
CODES = {code.value[0]: code for code in grpc.StatusCode}


# --------------------------------------------------------------------------- the load


@dataclass
class Window:
    """The load test's per-second timeline over some seconds of the run."""

    seconds: int = 0
    sends_ok: int = 0
    send_errors: int = 0
    messages: int = 0
    lat_sum_ms: float = 0.0

    def add(self, row: dict[str, Any]) -> None:
        self.seconds += 1
        count = int(row["counts"].get("Send", 0))
        self.sends_ok += count
        self.send_errors += int(row["errors"].get("Send", 0))
        self.messages += int(row["counts"].get("messages", 0))
        self.lat_sum_ms += float(row["mean_ms"].get("Send", 0.0)) * count

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "sends_ok": self.sends_ok,
            "send_errors": self.send_errors,
            "messages_acknowledged": self.messages,
            "sends_per_s": round(self.sends_ok / self.seconds, 1) if self.seconds else None,
            "send_mean_ms": round(self.lat_sum_ms / self.sends_ok, 1) if self.sends_ok else None,
        }


def split_timeline(
    report: dict[str, Any], run_seen: float, during: tuple[float, float], fault: tuple[float, float]
) -> dict[str, Window]:
    """The timeline's seconds surely inside ``during`` and surely outside ``fault``
    (wall-clock bounds)."""
    out = {"during": Window(), "outside": Window()}
    lo, hi = run_seen, run_seen + T0_SLACK
    for row in report["timeline"]:
        t = int(row["t"])
        if lo + t >= during[0] and hi + t + 1 <= during[1]:
            out["during"].add(row)
        elif hi + t + 1 <= fault[0] or lo + t >= fault[1]:
            out["outside"].add(row)
    return out


# --------------------------------------------------------------------------- the witness


@dataclass(frozen=True, slots=True)
class Call:
    started: float  # time.time()
    ended: float
    message_id: str
    outcome: str  # "OK", or "<code>/<reason>", or "REJECTED <code>/<reason>"

    @property
    def ok(self) -> bool:
        return self.outcome == "OK"


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def describe(calls: list[Call]) -> dict[str, Any]:
    """Count, outcomes and latency (ms) of the OK ones."""
    outcomes: dict[str, int] = {}
    for c in calls:
        outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
    ok = sorted((c.ended - c.started) * 1000.0 for c in calls if c.ok)
    out: dict[str, Any] = {"sends": len(calls), "ok": len(ok), "outcomes": outcomes}
    if ok:
        out["latency_ms"] = {
            "p50": round(_percentile(ok, 50), 1),
            "p99": round(_percentile(ok, 99), 1),
            "max": round(ok[-1], 1),
        }
    return out


class Witness:
    """One sender, one receiver, one Send at a time, each call kept."""

    def __init__(self, server: ServerProcess) -> None:
        self.api = ProcessApi(server)
        self.sender = Device(self.api, email("witness-sender"))
        self.receiver = Device(self.api, email("witness-receiver"))
        self.calls: list[Call] = []
        self.stop = asyncio.Event()

    async def join(self) -> None:
        await self.sender.join()
        await self.receiver.join()

    async def close(self) -> None:
        await self.api.close()

    async def send_one(self) -> Call:
        assert self.receiver.box_id is not None
        mid = uuid.uuid4()
        started = time.time()
        try:
            reply = await self.sender.send((self.receiver.box_id, b"witness", mid))
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            outcome = f"{exc.code().name}/{info.reason if info else '-'}"
        else:
            result = reply.results[0]
            if result.outcome in QUEUED:
                outcome = "OK"
            else:
                code = CODES.get(result.code)
                outcome = f"REJECTED {code.name if code else result.code}/{result.reason}"
        call = Call(started, time.time(), str(mid), outcome)
        self.calls.append(call)
        return call

    async def register_one(self) -> str:
        """Register and authorize one new device (contact claim: an LWT at
        SERIAL); answers "OK" or how it failed."""
        try:
            await Device(self.api, email("witness-joiner")).join()
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            return f"{exc.code().name}/{info.reason if info else '-'}"
        return "OK"

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.send_one()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), WITNESS_PAUSE)

    async def drain(self) -> dict[str, set[int]]:
        """Every message the receiver holds: message id -> positions (one
        pass through the queue, paging), then ack the top."""
        return await self.receiver.fetch_positions()


def _code(outcome: str) -> grpc.StatusCode:
    name = outcome.removeprefix("REJECTED ").split("/", 1)[0]
    return getattr(grpc.StatusCode, name)


# --------------------------------------------------------------------------- the fault


@dataclass
class OutageRun:
    """One load run with one node stopped (or killed) and restarted during it."""

    node: int
    kill: bool
    report: dict[str, Any]
    run_seen: float
    marks: dict[str, float]  # time.time() of: stopping, down, restarting, up, end
    health_during: list[str]
    #: Register + Authorize of a new device while the node was down.
    registration_during: str
    timeline: dict[str, Window]
    witness: list[Call]
    #: What the witness receiver held once the node was back: id -> positions.
    witness_received: dict[str, set[int]] = field(default_factory=dict)

    def at(self, name: str) -> float:
        """Seconds into the load's run (from when its run phase was seen)."""
        return round(self.marks[name] - self.run_seen, 1)

    def witness_window(self, name: str) -> list[Call]:
        """Witness calls that ran entirely ``before`` the stop command, ``during``
        the outage (node process gone, restart not yet begun), while
        ``restarting``, or ``after`` the node was back."""
        m = self.marks
        bounds = {
            "before": (0.0, m["stopping"]),
            "during": (m["down"], m["restarting"]),
            "restarting": (m["restarting"], m["up"]),
            "after": (m["up"], float("inf")),
        }
        lo, hi = bounds[name]
        return [c for c in self.witness if c.started >= lo and c.ended <= hi]

    @property
    def witness_acked(self) -> set[str]:
        return {c.message_id for c in self.witness if c.ok}

    @property
    def witness_lost(self) -> set[str]:
        return self.witness_acked - set(self.witness_received)

    @property
    def witness_doubled(self) -> dict[str, set[int]]:
        return {m: p for m, p in self.witness_received.items() if len(p) > 1}

    def error_codes(self) -> set[grpc.StatusCode]:
        """Every status a call failed with: the load's and the witness's."""
        codes = {
            getattr(grpc.StatusCode, code)
            for errors in self.report["errors_by_code"].values()
            for code in errors
            if hasattr(grpc.StatusCode, code)
        }
        codes |= {_code(c.outcome) for c in self.witness if not c.ok}
        return codes

    def to_dict(self) -> dict[str, Any]:
        m = self.marks
        return {
            "node": self.node,
            "fault": "kill (SIGKILL)" if self.kill else "stop (SIGTERM, drains)",
            "schedule_s": {name: self.at(name) for name in m},
            "stop_took_s": round(m["down"] - m["stopping"], 1),
            "down_s": round(m["restarting"] - m["down"], 1),
            "restart_took_s": round(m["up"] - m["restarting"], 1),
            "run_seconds": self.report["run_seconds"],
            # Whether the load's drain and audit ran with the node back.
            "back_before_drain": self.at("up") <= self.report["run_seconds"],
            "health_while_down": self.health_during,
            "registration_while_down": self.registration_during,
            "load": {
                "audit": self.report["audit"],
                "totals": self.report["totals"],
                "errors_by_code": self.report["errors_by_code"],
                "rejected": self.report["send_outcomes"]["rejected"],
                "send_latency_ms": self.report["rpcs"].get("Send", {}).get("latency_ms", {}),
                "timeline": {k: w.to_dict() for k, w in self.timeline.items()},
            },
            "witness": {
                **{w: describe(self.witness_window(w)) for w in ("before", "during", "after")},
                "restarting": describe(self.witness_window("restarting")),
                "all": describe(self.witness),
                "acknowledged": len(self.witness_acked),
                "delivered": len(self.witness_acked & set(self.witness_received)),
                "lost": len(self.witness_lost),
                "queued_twice": len(self.witness_doubled),
            },
        }


def keyspace_replication(hosts: list[str], keyspace: str) -> dict[str, str]:
    """The keyspace's replication map as Cassandra holds it (e.g. ``{"class":
    "...NetworkTopologyStrategy", "dc1": "3"}``)."""
    cluster = Cluster(contact_points=hosts, protocol_version=PROTOCOL_VERSION, connect_timeout=10)
    try:
        session = cluster.connect()
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (keyspace,),
        ).one()
        return dict(row.replication) if row is not None else {}
    finally:
        cluster.shutdown()


def _health(target: str) -> str:
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(health_status(target)))
    except grpc.RpcError as exc:
        return f"error {exc.code().name}"


def restart_clean(launcher: ModuleType, directory: Path, node: int, log: Log) -> None:
    """Stop ``node`` with SIGTERM (it drains: every table flushed) and start it again.

    Before a SIGKILL test: the launcher runs nodes with
    ``flush_local_schema_changes=false`` (fast DDL), so a node killed before
    its schema tables were ever flushed restarts without the keyspace's
    tables and its commit-log replay drops their rows (a test-rig artefact;
    see tests/conftest.py ``stop_dc``). One clean restart after the migration
    puts the schema on disk."""
    log(f"clean restart of node{node} (flushes the schema before a kill)")
    launcher.stop_node(directory, node, log=log)
    launcher.start_node(directory, node, log=log)


async def run_with_node_outage(
    config: LoadConfig,
    server: ServerProcess,
    launcher: ModuleType,
    directory: Path,
    node: int,
    *,
    kill: bool,
    stop_after: float,
    outage: float,
    after: float,
    log: Log,
) -> OutageRun:
    """Start the load and the witness; ``stop_after`` seconds into the load's
    run stop ``node`` (``kill``: SIGKILL); keep it down ``outage`` seconds
    (registering one new device, and probing the server's health once a
    second); start it again (always,
    also when something above failed); keep the witness sending ``after``
    seconds more; wait for the load's drain and audit; then drain the
    witness receiver, with every node back."""
    witness = Witness(server)
    marks: dict[str, float] = {}
    health: list[str] = []
    registration = "not tried"
    sending: asyncio.Task[None] | None = None
    try:
        await witness.join()
        run = LoadRun(config).start()
        await asyncio.to_thread(run.wait_running, config.register_timeout + 120)
        assert run.run_seen is not None
        sending = asyncio.create_task(witness.run())
        try:
            await asyncio.sleep(stop_after)
            marks["stopping"] = time.time()
            verb = "killing" if kill else "stopping"
            log(f"{marks['stopping'] - run.run_seen:.1f}s into the run: {verb} node{node}")
            await asyncio.to_thread(launcher.stop_node, directory, node, kill=kill, log=log)
            marks["down"] = time.time()
            registration = await witness.register_one()
            while time.time() < marks["down"] + outage:
                health.append(await asyncio.to_thread(_health, server.target))
                await asyncio.sleep(1.0)
            marks["restarting"] = time.time()
            log(f"{marks['restarting'] - run.run_seen:.1f}s into the run: starting node{node}")
        finally:
            await asyncio.to_thread(launcher.start_node, directory, node, log=log)
        marks["up"] = time.time()
        log(f"{marks['up'] - run.run_seen:.1f}s into the run: node{node} is back")
        await asyncio.sleep(after)
        witness.stop.set()
        await sending
        marks["end"] = time.time()
        report = await asyncio.to_thread(
            run.finish, config.max_seconds + config.drain_timeout + 600
        )
        received = await witness.drain()
    finally:
        if sending is not None and not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        await witness.close()
    timeline = split_timeline(
        report,
        run.run_seen,
        during=(marks["down"], marks["restarting"]),
        fault=(marks["stopping"], marks["up"]),
    )
    return OutageRun(
        node,
        kill,
        report,
        run.run_seen,
        marks,
        health,
        registration,
        timeline,
        witness.calls,
        received,
    )


__all__ = [
    "Call",
    "LoadRun",
    "OutageRun",
    "Window",
    "Witness",
    "describe",
    "keyspace_replication",
    "restart_clean",
    "run_with_node_outage",
    "split_timeline",
]
