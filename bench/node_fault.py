"""Node faults under load: stop (and kill) one node of a 3-node Cassandra
during a ``rossby loadtest`` run; check that nothing acknowledged is lost and
that the service keeps answering. The figures in docs/reliability.md ("Node
faults") come from this script.

    make cassandra-3                                  # 127.0.0.1-3, dc1, in var/cassandra
    .venv/bin/python bench/node_fault.py --dir var/cassandra
    make cassandra-stop

or let it start (and stop) its own cluster, e.g. beside the test suite's
2-DC cluster on 127.0.0.1-2::

    .venv/bin/python bench/node_fault.py --start --first 3 --dir var/bench-cassandra-3

One keyspace replicated ``dc1:3`` (``rossby migrate``), one ``rossby serve``
at ``LOCAL_QUORUM`` (the default) with the outbox notifier and the abuse
limits off; ``--warmup`` seconds of the load with every node up; then for
each fault (``--faults stop,kill``) one ``rossby loadtest`` run (its Python
API; default 100 users, 25 operations/s open loop, 120 s) plus a witness
client sending one message at a time (tests/reliability/nodefault.py):
``--stop-after`` seconds into the run the node (default: the second) goes
down (SIGTERM, it drains; or SIGKILL), stays down ``--outage`` seconds, is
started again, and the run goes on to its end, drain and delivery audit;
the witness keeps sending ``--after`` seconds after the node is back, then
drains. The JSON (``--out``, default in bench/out/) holds each run's
schedule, both audits, errors by code, the per-second timeline and every
witness call. Exit status 1 if anything acknowledged was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rossby.loadtest.config import LoadConfig  # noqa: E402
from tests.conftest import cassandra_url, load_launcher  # noqa: E402
from tests.reliability.nodefault import (  # noqa: E402
    LoadRun,
    OutageRun,
    keyspace_replication,
    restart_clean,
    run_with_node_outage,
)
from tests.serverproc import ServerProcess, rossby  # noqa: E402

KEYSPACE = "rossby_node_fault"
# Every load-test user registers from 127.0.0.1 and sends as fast as the server
# answers: the abuse limits are off, as in bench/run_all.py.
SERVER_ENV = {"ROSSBY_REGISTER_RATE_PER_ADDRESS": "0", "ROSSBY_SEND_RATE_PER_DEVICE": "0"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dir", default=str(ROOT / "var" / "cassandra"), help="launcher runtime dir")
    p.add_argument(
        "--start", action="store_true", help="start a fresh 3-node cluster there (and stop it)"
    )
    p.add_argument("--first", type=int, default=1, help="with --start: index of the first node")
    p.add_argument("--node", type=int, help="the node to stop (default: the second one)")
    p.add_argument("--faults", default="stop,kill", help="stop, kill or both (default stop,kill)")
    p.add_argument("--users", type=int, default=100)
    load = p.add_mutually_exclusive_group()
    load.add_argument(
        "--rate", type=float, default=25.0, help="operations per second, open loop (default 25)"
    )
    load.add_argument("--concurrency", type=int, help="closed loop instead of --rate")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load per fault")
    p.add_argument("--stop-after", type=float, default=20.0, help="seconds into the run")
    p.add_argument("--outage", type=float, default=20.0, help="seconds the node stays down")
    p.add_argument(
        "--after", type=float, default=10.0, help="seconds the witness sends once it is back"
    )
    p.add_argument("--send-retries", type=int, default=5)
    p.add_argument(
        "--warmup",
        type=float,
        default=30.0,
        help="seconds of load before the first fault, all nodes up (warms the JVMs; 0: none)",
    )
    p.add_argument("--out", help="JSON path (default bench/out/node-fault-TIME.json)")
    return p.parse_args(argv)


def summary_line(run: OutageRun) -> str:
    d = run.to_dict()
    audit, w = d["load"]["audit"], d["witness"]
    during, outside = d["load"]["timeline"]["during"], d["load"]["timeline"]["outside"]
    return (
        f"{d['fault']}: node{run.node} down at {d['schedule_s']['down']}s for {d['down_s']}s, "
        f"restart took {d['restart_took_s']}s; load: acknowledged {audit['acknowledged']}, "
        f"delivered {audit['delivered']}/{audit['expected']}, LOST {audit['lost']}, "
        f"DUPLICATES {audit['duplicates']}, errors {d['load']['errors_by_code']}, "
        f"Sends/s while down {during['sends_per_s']} vs {outside['sends_per_s']} outside; "
        f"witness before {w['before']}, during {w['during']}, after {w['after']}, "
        f"acknowledged {w['acknowledged']}, lost {w['lost']}, queued twice {w['queued_twice']}; "
        f"registration while down {d['registration_while_down']}"
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    if not faults or set(faults) - {"stop", "kill"}:
        print("--faults: stop, kill or stop,kill", file=sys.stderr)
        return 2
    launcher = load_launcher()
    directory = Path(a.dir).absolute()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(a.out or ROOT / "bench" / "out" / f"node-fault-{stamp}.json")
    workdir = out.with_suffix("")
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": sys.argv, "started_at": stamp, "runs": []}
    server: ServerProcess | None = None
    try:
        if a.start:
            launcher.start(nodes=3, dcs=1, dir=directory, first=a.first, log=log)
        nodes = launcher.status(directory)
        if len(nodes) < 3 or not all(n["cql_up"] for n in nodes):
            print(f"need 3 nodes answering CQL in {directory}: {nodes}", file=sys.stderr)
            return 2
        indexes = [int(n["node"]) for n in nodes]
        victim = a.node if a.node is not None else indexes[1]
        url = cassandra_url(
            [f"{n['ip']}:9042" for n in nodes],
            KEYSPACE,
            replication="dc1:3",
            consistency="LOCAL_QUORUM",
        )
        result["cluster"] = {"nodes": nodes, "store": url, "victim": victim}
        log(f"migrating {url}")
        done = rossby("migrate", "--store", url, "--state-dir", str(workdir / "state"), timeout=600)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        replication = keyspace_replication([n["ip"] for n in nodes], KEYSPACE)
        result["cluster"]["replication"] = replication
        log(f"keyspace {KEYSPACE}: replication {replication}")
        server = ServerProcess(workdir, url, env=SERVER_ENV).start(timeout=120)
        log(f"serving on {server.target} (log {server.log})")

        def load(duration: float) -> LoadConfig:
            """A fresh config (a new run id: new users) per run."""
            return LoadConfig(
                targets=(server.target,),
                outboxes=(str(workdir / "outbox"),),
                users=a.users,
                processes=a.processes,
                concurrency=a.concurrency or 16,
                rate=None if a.concurrency else a.rate,
                duration=duration,
                settle=6.0,
                send_retries=a.send_retries,
                drain_timeout=120.0,
            ).validate()

        if a.warmup > 0:
            log(f"warm-up: {a.warmup:g}s of the same load, every node up")
            audit = LoadRun(load(a.warmup)).start().finish(a.warmup + 600)["audit"]
            result["warmup"] = audit
            log(f"warm-up audit: {audit}")
        flushed = False
        for fault in faults:
            kill = fault == "kill"
            if kill and not flushed:
                restart_clean(launcher, directory, victim, log)
            run = asyncio.run(
                run_with_node_outage(
                    load(a.duration),
                    server,
                    launcher,
                    directory,
                    victim,
                    kill=kill,
                    stop_after=a.stop_after,
                    outage=a.outage,
                    after=a.after,
                    log=log,
                )
            )
            flushed = True  # a clean stop drains; a kill run follows a clean restart
            entry = run.to_dict()
            entry["config"] = run.report["config"]
            entry["run_seconds"] = run.report["run_seconds"]
            entry["drain_seconds"] = run.report["drain_seconds"]
            entry["timeline_rows"] = run.report["timeline"]
            entry["witness_calls"] = [
                [round(c.started - run.run_seen, 3), round(c.ended - c.started, 4), c.outcome]
                for c in run.witness
            ]
            result["runs"].append(entry)
            print(summary_line(run), flush=True)
    finally:
        if server is not None and server.proc is not None and server.proc.poll() is None:
            server.stop()
        if a.start:
            launcher.stop(directory, log=log)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {out}")
    bad = [
        r
        for r in result["runs"]
        if r["load"]["audit"]["lost"]
        or r["load"]["audit"]["duplicates"]
        or r["witness"]["lost"]
        or r["witness"]["queued_twice"]
    ]
    return 1 if bad or len(result["runs"]) < len(faults) else 0


if __name__ == "__main__":
    sys.exit(main())
