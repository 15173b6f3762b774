"""``rossby loadtest``: N users x D devices against one or more Rossby servers.

Registers the users through the dev outbox (the server must run with
``--notifier outbox``; pass its ``--outbox-dir``), runs a mix of 1:1 sends,
group sends and fetch+ack at a fixed concurrency (closed loop) or a target
rate (open loop), for a duration or a number of sends, then drains every
device and audits delivery: every acknowledged send must reach every device
of its recipient box exactly once.

Writes a JSON report and a PNG plot. Exit codes: 0 all good; 1 the audit
found lost or duplicate deliveries (or nothing was acknowledged); 2 bad
usage; 3 the load generator itself failed.

Example (a server from ``make run``, 200 users, 2 processes, 20 s)::

    rossby loadtest --target 127.0.0.1:1205 --outbox var/outbox \\
        --users 200 --processes 2 --concurrency 64 --duration 20
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console

from rossby.loadtest.config import CRYPTO_MODES, DEFAULT_MIX, LoadConfig, UsageError, parse_mix
from rossby.loadtest.coordinator import Coordinator, HarnessError
from rossby.loadtest.report import Progress, build_report, print_summary, write_json, write_plot


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rossby loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="server address; repeat for several servers (users spread round-robin)",
    )
    p.add_argument(
        "--outbox",
        action="append",
        default=[],
        metavar="DIR",
        help="the server's --outbox-dir (one, or one per --target)",
    )
    p.add_argument(
        "--public-address",
        metavar="HOST:PORT",
        help="address the servers sign Hawk for (default: each --target)",
    )
    p.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        help="devices per user (default 1); until linking lands, each device "
        "is its own box and a message to a user goes to all of them",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load-generating processes, each with a slice of the users",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="operations in flight in total, closed loop (default 16)",
    )
    load.add_argument(
        "--rate",
        type=float,
        help="operations per second in total, open loop (instead of concurrency)",
    )
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds to run (default 10)")
    stop.add_argument(
        "--messages", type=int, help="stop after this many send operations (1:1 and group)"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="hard cap on the run phase, also with --messages (default 600)",
    )
    p.add_argument(
        "--mix",
        default=",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items()),
        help="operation weights (default %(default)s); ops: send (1:1), group, "
        "fetch (fetch+ack); subscribe comes with the realtime issue",
    )
    p.add_argument("--group-size", type=int, default=5, help="recipients per group send")
    p.add_argument(
        "--payload-bytes",
        type=int,
        default=1024,
        help="random ciphertext bytes per message (default 1024)",
    )
    p.add_argument(
        "--crypto",
        choices=CRYPTO_MODES,
        default="random",
        help="random: random ciphertext (measures the server); real: every device "
        "publishes prekeys and every message is a real v2 envelope, PQXDH then the "
        "Double Ratchet, as the SDK sends it (measures the client's crypto too)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=2,
        help="gRPC connections per server per process (default 2)",
    )
    p.add_argument("--register-concurrency", type=int, default=16)
    p.add_argument("--register-timeout", type=float, default=120.0)
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds the final drain may take before missing messages count as lost",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to wait before the last look for late duplicates; "
        "use at least the store's settle window (Cassandra)",
    )
    p.add_argument(
        "--send-retries",
        type=int,
        default=2,
        help="retries of a Send that failed UNAVAILABLE/DEADLINE_EXCEEDED (same ids)",
    )
    p.add_argument(
        "--retry-backoff",
        type=float,
        default=0.05,
        help="seconds before the first Send retry, doubled per retry up to 2 s, jittered "
        "(default 0.05; 0 retries at once)",
    )
    p.add_argument("--rpc-timeout", type=float, default=10.0)
    p.add_argument(
        "--max-inflight",
        type=int,
        default=1024,
        help="with --rate: ops beyond this many outstanding are skipped (counted)",
    )
    p.add_argument("--fetch-limit", type=int, default=100)
    p.add_argument("--seed", type=int, help="seed the random choices (ids stay random)")
    p.add_argument("--out-dir", default=".", help="where the report and plot go (default .)")
    p.add_argument("--report", help="JSON report path (default OUT_DIR/loadtest-TIME.json)")
    p.add_argument("--plot", help="PNG plot path (default next to the report)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no live progress")
    p.add_argument("--quiet", action="store_true", help="no summary either (report files only)")
    return p


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    duration = args.duration
    if duration is None and args.messages is None:
        duration = 10.0
    return LoadConfig(
        targets=tuple(args.target),
        outboxes=tuple(args.outbox),
        public_address=args.public_address,
        users=args.users,
        devices=args.devices,
        processes=args.processes,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=duration,
        messages=args.messages,
        max_seconds=args.max_seconds,
        mix=parse_mix(args.mix),
        group_size=args.group_size,
        payload_bytes=args.payload_bytes,
        crypto=args.crypto,
        channels=args.channels,
        register_concurrency=args.register_concurrency,
        register_timeout=args.register_timeout,
        drain_timeout=args.drain_timeout,
        settle=args.settle,
        send_retries=args.send_retries,
        retry_backoff=args.retry_backoff,
        rpc_timeout=args.rpc_timeout,
        max_inflight=args.max_inflight,
        fetch_limit=args.fetch_limit,
        seed=args.seed,
    ).validate()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except UsageError as exc:
        print(f"rossby loadtest: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    report_path = Path(args.report or Path(args.out_dir) / f"loadtest-{stamp}.json")
    plot_path = Path(args.plot or report_path.with_suffix(".png"))

    console = Console(stderr=True)
    try:
        with Progress(console, enabled=not (args.no_progress or args.quiet)) as progress:
            outcome = Coordinator(config, progress).run()
    except HarnessError as exc:
        print(f"rossby loadtest: the load generator failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("rossby loadtest: interrupted", file=sys.stderr)
        return 3
    report = build_report(outcome)
    report["report_path"] = str(report_path)
    report["plot_path"] = None if args.no_plot else str(plot_path)
    if not args.no_plot:
        try:
            write_plot(report, plot_path)
        except ImportError as exc:  # matplotlib is only needed for the PNG
            print(f"rossby loadtest: no plot ({exc}); install matplotlib", file=sys.stderr)
            report["plot_path"] = None
    write_json(report, report_path)
    if not args.quiet:
        print_summary(report, Console(soft_wrap=True))
        plot = report["plot_path"]
        print(f"report: {report_path}" + (f"  plot: {plot}" if plot else ""))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
