"""Every ceiling and peer side by side, one go, same machine, same concurrency; prints ratios.

Parts (each ``--seconds`` long, ``--concurrency`` in flight, 1 KiB payloads):

a. gRPC ceiling: a bare grpc.aio echo server (bench/grpc_ceiling.py);
b. storage ceiling: the queue's writes straight through the driver
   (bench/storage_ceiling.py): SQLite enqueue transaction, Cassandra plain
   insert, Cassandra LWT claim + insert;
c. Rossby: ``rossby serve`` on SQLite and on Cassandra, driven by
   ``rossby loadtest`` (1:1 sends only, then the default mix);
d. peer: Matrix Synapse on SQLite (bench/synapse_peer.py; its own venv; skipped
   with a note when ``--synapse-python`` does not exist);
e. with ``--breakdown``: bench/breakdown.py on each backend (per-stage cost of
   Send and Fetch+Ack, server CPU per call over the echo's), reusing part a.

    .venv/bin/python bench/run_all.py [--seconds 15] [--concurrency 32] [--workers 1]
        [--skip synapse,cassandra] [--synapse-python /tmp/bench-synapse-venv/bin/python]
        [--breakdown]

``make bench`` runs ``--seconds 5 --breakdown`` (docs/benchmarks.md).

Cassandra: reuses whatever answers on 127.0.0.1:9042; otherwise starts one
node with deploy/cassandra/launcher.py in /tmp/bench-cass and stops it at the
end. Results (JSON, loadtest reports and plots) go to bench/out/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _harness import CpuSampler, cpu_per_call_us, machine, run_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CASS_OPTS = "local_dc=dc1&replication=dc1:1"


def answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launcher() -> Any:
    spec = importlib.util.spec_from_file_location(
        "cassandra_launcher", ROOT / "deploy" / "cassandra" / "launcher.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Server:
    """``rossby serve`` for one backend, on a free loopback port."""

    def __init__(self, store: str, workdir: Path, workers: int) -> None:
        self.store = store
        self.workdir = workdir
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.outbox = workdir / "outbox"
        # Unknown ROSSBY_* variables are ignored, so these are safe on any version.
        # The per-device send limit is off: the loadtest sends from 100 devices
        # as fast as the server answers, and the ceilings measure the server,
        # not the abuse limit (docs/benchmarks.md).
        self.env = {
            **os.environ,
            "ROSSBY_WORKERS": str(workers),
            "ROSSBY_METRICS_LISTEN": "",
            "ROSSBY_SEND_RATE_PER_DEVICE": "0",
            # Every loadtest user registers from 127.0.0.1.
            "ROSSBY_REGISTER_RATE_PER_ADDRESS": "0",
            # --crypto real: every pair of users claims prekeys once, within seconds.
            "ROSSBY_PREKEY_CLAIM_RATE_PER_DEVICE": "0",
            "ROSSBY_PREKEY_CLAIM_RATE_PER_BOX": "0",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        common = ["--store", self.store, "--state-dir", str(self.workdir / "state")]
        subprocess.run(
            [PY, "-m", "rossby", "migrate", *common],
            check=True, capture_output=True, env=self.env, timeout=300,
        )  # fmt: skip
        log = open(self.workdir / "server.log", "wb")
        self.proc = subprocess.Popen(
            [PY, "-m", "rossby", "serve", *common, "--listen", self.target,
             "--notifier", "outbox", "--outbox-dir", str(self.outbox),
             "--log-format", "json", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def loadtest(
    server: Server,
    name: str,
    mix: str,
    args: argparse.Namespace,
    out: Path,
    settle: float,
    crypto: str = "random",
) -> dict[str, Any]:
    report = out / f"loadtest-{name}.json"
    cmd = [
        PY, "-m", "rossby", "loadtest", "--target", server.target,
        "--outbox", str(server.outbox), "--users", str(args.users),
        "--processes", str(args.lt_processes), "--concurrency", str(args.concurrency),
        "--duration", str(args.seconds), "--mix", mix, "--payload-bytes", "1024",
        "--settle", str(settle), "--report", str(report), "--no-progress", "--quiet",
        "--crypto", crypto,
    ]  # fmt: skip
    assert server.proc is not None
    with CpuSampler(server.proc.pid) as cpu:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 600)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"loadtest exited {proc.returncode}: {proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    send = data["rpcs"].get("Send", {})
    start = float(data.get("run_started_unix") or 0.0)
    server_cpu = cpu.between(start, start + float(data["run_seconds"])) if start else 0.0
    calls = int(data["totals"]["rpcs_ok"])
    return {
        "name": name,
        "calls": send.get("ok", 0),
        "per_second": data["throughput"]["sends_per_s"],
        "messages_per_second": data["throughput"]["messages_per_s"],
        "latency_ms": send.get("latency_ms", {}),
        "errors": data["errors_by_code"],
        "audit": {k: data["audit"][k] for k in ("acknowledged", "lost", "duplicates",
                                                "raw_repeats")},
        "rpcs_per_s": data["throughput"]["rpcs_per_s"],
        # The server's own CPU during the run phase, per RPC answered OK then.
        "server_cpu_seconds": round(server_cpu, 3),
        "server_cpu_us_per_call": cpu_per_call_us(server_cpu, calls),
        # --crypto real: the load generator's CPU ms per seal/open (mean, p50, p99).
        "client_crypto": data.get("crypto", {}),
        "report": str(report),
        "command": " ".join(cmd[1:]),
    }  # fmt: skip


def breakdown(
    backend: str, out: Path, echo: dict[str, Any] | None, keyspace: str
) -> dict[str, Any]:
    """bench/breakdown.py on one backend; its table goes to a text file."""
    report, text = out / f"breakdown-{backend}.json", out / f"breakdown-{backend}.txt"
    cmd = [PY, str(HERE / "breakdown.py"), "--store", backend, "--json", str(report)]
    if backend == "cassandra":
        cmd += ["--store-url", f"cassandra://127.0.0.1:9042/{keyspace}_breakdown?" + CASS_OPTS]
    if echo and "error" not in echo:
        echo_path = out / "grpc-echo.json"
        echo_path.write_text(json.dumps(echo) + "\n")
        cmd += ["--echo-json", str(echo_path)]
    else:
        cmd += ["--echo-seconds", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    text.write_text(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"breakdown.py exited {proc.returncode}: {proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    clean = data["passes"]["clean"]
    return {
        "name": f"breakdown {backend}",
        "send_server_cpu_us_per_call": clean["send"]["server_cpu_us_per_call"],
        "fetch_ack_server_cpu_us_per_pair": clean["fetch"]["server_cpu_us_per_call"],
        "send_cpu_vs_echo": data.get("send_cpu_vs_echo"),
        "report": str(report),
        "table": str(text),
        "command": " ".join(cmd[1:]),
    }


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not b.get("per_second"):
        return "-"
    return f"{a['per_second'] / b['per_second']:.2f}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--lt-processes", type=int, default=1, help="rossby loadtest --processes")
    p.add_argument("--workers", type=int, default=1, help="rossby serve --workers (env)")
    p.add_argument(
        "--skip", default="", help="comma list: grpc,storage,sqlite,realcrypto,cassandra,synapse"
    )
    p.add_argument("--synapse-python", default="/tmp/bench-synapse-venv/bin/python")
    p.add_argument(
        "--keyspace",
        default="rossby_loadbench",
        help="Rossby's Cassandra keyspace (the breakdown uses it + '_breakdown'); pick "
        "another when a newer schema holds the default",
    )
    p.add_argument(
        "--breakdown", action="store_true", help="also run bench/breakdown.py on each backend"
    )
    p.add_argument("--out", default=str(HERE / "out"))
    args = p.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    notes: list[str] = []
    if "synapse" not in skip and not Path(args.synapse_python).exists():
        skip.add("synapse")
        notes.append(
            f"Synapse skipped: no interpreter at {args.synapse_python} (see docs/benchmarks.md "
            "for the venv; or pass --synapse-python)"
        )
        print(f"== note: {notes[-1]}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "args": vars(args),
        "parts": {},
        "notes": notes,
    }
    parts: dict[str, Any] = results["parts"]
    common = ["--concurrency", str(args.concurrency), "--seconds", str(args.seconds)]

    def part(key: str, fn: Any) -> None:
        print(f"== {key}", file=sys.stderr, flush=True)
        load = [round(x, 2) for x in os.getloadavg()]
        try:
            parts[key] = fn()
        except Exception as exc:
            parts[key] = {"name": key, "error": f"{type(exc).__name__}: {exc}"[-4000:]}
        parts[key]["loadavg_before"] = load
        print(json.dumps(parts[key])[:400], file=sys.stderr, flush=True)

    if "grpc" not in skip:
        part("grpc_echo", lambda: run_json([PY, str(HERE / "grpc_ceiling.py"), *common], 600))
    if "storage" not in skip:
        part(
            "sqlite_enqueue",
            lambda: run_json(
                [PY, str(HERE / "storage_ceiling.py"), "--backend", "sqlite", *common], 600
            ),
        )
    started_cassandra = False
    cass_dir = Path("/tmp/bench-cass")
    try:
        if "cassandra" not in skip and not answers("127.0.0.1", 9042):
            print("== starting Cassandra (1 node) in /tmp/bench-cass", file=sys.stderr)
            launcher().start(nodes=1, dcs=1, dir=cass_dir)
            started_cassandra = True
        elif "cassandra" not in skip:
            results["notes"].append("reused the Cassandra already answering on 127.0.0.1:9042")
        if "cassandra" not in skip and "storage" not in skip:
            for mode in ("insert", "lwt"):
                part(
                    f"cassandra_{mode}",
                    lambda mode=mode: run_json(
                        [
                            PY,
                            str(HERE / "storage_ceiling.py"),
                            "--backend",
                            "cassandra",
                            "--mode",
                            mode,
                            *common,
                        ],
                        600,
                    ),
                )
        if "sqlite" not in skip:
            url = f"sqlite:///{out / 'rossby-sqlite' / 'rossby.db'}"
            with Server(url, out / "rossby-sqlite", args.workers) as server:
                part("rossby_sqlite_send", lambda: loadtest(
                    server, "sqlite-send", "send=1", args, out, 0.0))  # fmt: skip
                part("rossby_sqlite_mix", lambda: loadtest(
                    server, "sqlite-mix", "send=6,group=1,fetch=3", args, out, 0.0))  # fmt: skip
                if "realcrypto" not in skip:
                    part("rossby_sqlite_mix_realcrypto", lambda: loadtest(
                        server, "sqlite-mix-realcrypto", "send=6,group=1,fetch=3", args, out,
                        0.0, crypto="real"))  # fmt: skip
        if "cassandra" not in skip:
            url = f"cassandra://127.0.0.1:9042/{args.keyspace}?{CASS_OPTS}"
            with Server(url, out / "rossby-cassandra", args.workers) as server:
                part("rossby_cassandra_send", lambda: loadtest(
                    server, "cassandra-send", "send=1", args, out, 5.5))  # fmt: skip
                part("rossby_cassandra_mix", lambda: loadtest(
                    server, "cassandra-mix", "send=6,group=1,fetch=3", args, out, 5.5))  # fmt: skip
        if args.breakdown:  # while Cassandra is up
            for backend in ("sqlite", "cassandra"):
                if backend not in skip:
                    part(
                        f"breakdown_{backend}",
                        lambda backend=backend: breakdown(
                            backend, out, parts.get("grpc_echo"), args.keyspace
                        ),
                    )
    finally:
        if started_cassandra:
            launcher().stop(cass_dir)
    if "synapse" not in skip:
        part(
            "synapse_send",
            lambda: run_json(
                [
                    PY,
                    str(HERE / "synapse_peer.py"),
                    "--synapse-python",
                    args.synapse_python,
                    "--dir",
                    str(out / "synapse"),
                    *common,
                ],
                900,
            ),
        )

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"run-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")

    g = parts.get
    echo = g("grpc_echo")
    rows = [
        ("a. gRPC echo (bare grpc.aio)", echo, None),
        ("b. SQLite enqueue tx (direct)", g("sqlite_enqueue"), None),
        ("b. Cassandra INSERT (driver)", g("cassandra_insert"), None),
        ("b. Cassandra LWT+INSERT (driver)", g("cassandra_lwt"), None),
        ("c. Rossby SQLite, 1:1 Send", g("rossby_sqlite_send"), g("sqlite_enqueue")),
        ("c. Rossby SQLite, mix (Send)", g("rossby_sqlite_mix"), g("sqlite_enqueue")),
        ("c. Rossby Cassandra, 1:1 Send", g("rossby_cassandra_send"), g("cassandra_lwt")),
        ("c. Rossby Cassandra, mix (Send)", g("rossby_cassandra_mix"), g("cassandra_lwt")),
        ("d. Synapse SQLite, send", g("synapse_send"), None),
    ]
    print(f"\nconcurrency {args.concurrency}, {args.seconds:g} s per part, 1 KiB; {path}")
    header = (
        f"{'part':36} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/echo':>6} {'/store':>7}"
        f" {'all RPC/s':>10} {'cpu µs/call':>11} {'load1':>6}"
    )
    print(header)
    print("-" * len(header))
    for label, r, store in rows:
        if r is None:
            continue
        if "error" in r:
            print(f"{label:36} ERROR {r['error'][:200]}")
            continue
        lat = r.get("latency_ms", {})
        total = sum(r["rpcs_per_s"].values()) if "rpcs_per_s" in r else r["per_second"]
        print(
            f"{label:36} {r['per_second']:>9.1f} {lat.get('p50', 0):>8.2f} "
            f"{lat.get('p99', 0):>8.2f} {ratio(r, echo):>6} {ratio(r, store):>7}"
            f" {total:>10.1f} {r.get('server_cpu_us_per_call') or '-':>11}"
            f" {r['loadavg_before'][0]:>6.2f}"
        )
    rs, syn = g("rossby_sqlite_send"), g("synapse_send")
    if rs and syn and "error" not in rs and "error" not in syn:
        print(f"Rossby SQLite 1:1 Send / Synapse SQLite send: {ratio(rs, syn)}x")
        if syn.get("send_to_sync_ms"):
            print(f"Synapse send->sync latency (ms): {syn['send_to_sync_ms']}")
    for key in ("rossby_sqlite_send", "rossby_sqlite_mix", "rossby_cassandra_send",
                "rossby_cassandra_mix"):  # fmt: skip
        r = g(key)
        if r and "audit" in r:
            print(f"{key} audit: {r['audit']}")
    for note in results["notes"]:
        print(f"note: {note}")
    for backend in ("sqlite", "cassandra"):
        r = g(f"breakdown_{backend}")
        if not r:
            continue
        print(f"\n== cost breakdown, {backend} (bench/breakdown.py; {r.get('report', '')})")
        if "error" in r:
            print(f"ERROR {r['error'][:2000]}")
            continue
        print(Path(r["table"]).read_text().rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
