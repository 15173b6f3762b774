"""Crash safety under load: ``kill -9`` the server many times, then audit every delivery.

    .venv/bin/python bench/crash_safety.py --store sqlite --duration 60 --json out.json
    python3 deploy/cassandra/launcher.py start --nodes 1 --dcs 1 --dir var/crash
    .venv/bin/python bench/crash_safety.py --store cassandra --hosts 127.0.0.1 --duration 60

One ``rossby serve`` (one process, so SIGKILL hits the process that holds the
writes) takes mixed load from ``rossby loadtest`` (send, group send,
fetch+ack, subscribe; Sends retried under the same message id with back-off)
while this script SIGKILLs it at random moments and restarts it on the same
port (``tests/reliability/crashrun.py``). At the end the harness drains every device and
audits: every Send that returned OK (QUEUED or DUPLICATE) must reach every
device of its box exactly once. Prints the summary (kills, messages audited,
lost, duplicated) that docs/reliability.md quotes; exits 1 unless lost and
duplicated are both 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.crashrun import crash_config, run_with_kills  # noqa: E402
from tests.reliability.test_crash import SERVER_ARGS  # noqa: E402
from tests.serverproc import ServerProcess, rossby  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "cassandra"), default="sqlite")
    p.add_argument("--hosts", default="127.0.0.1", help="Cassandra contact points (dc1)")
    p.add_argument("--keyspace", default="rossby_bench_crash")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-kills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the summary and the harness report here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="rossby-crash-") as tmp:
        work = Path(tmp)
        if args.store == "sqlite":
            url = f"sqlite:///{work / 'rossby.db'}"
        else:
            url = f"cassandra://{args.hosts}:9042/{args.keyspace}?local_dc=dc1&replication=dc1:1"
        done = rossby("migrate", "--store", url, "--state-dir", str(work / "state"))
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 2
        # One process, and the abuse limits off: the harness registers and
        # sends in bulk from one address.
        server = ServerProcess(work, url, *SERVER_ARGS).start()
        try:
            config = crash_config(
                server,
                work / "outbox",
                users=args.users,
                duration=args.duration,
                concurrency=args.concurrency,
                seed=args.seed,
            )
            run = run_with_kills(server, config, max_kills=args.max_kills, seed=args.seed)
        finally:
            server.stop()
    summary = {"store": args.store, "duration": args.duration, **run.summary()}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"summary": summary, "report": run.report}, indent=1) + "\n"
        )
    return 0 if summary["lost"] == 0 and summary["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
