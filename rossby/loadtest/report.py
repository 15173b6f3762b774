"""The JSON report, the PNG plot, the console summary and the live progress view."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.live import Live
from rich.table import Table

from rossby.loadtest.config import OPS
from rossby.loadtest.coordinator import Outcome, Snapshots
from rossby.loadtest.realcrypto import CRYPTO_PREFIX, LAST_RESORT
from rossby.loadtest.worker import DELIVERY

REPORT_VERSION: Final = 1
SEND_OPS: Final = ("send", "group")
RPCS: Final = ("Send", "Fetch", "Ack")


def build_report(outcome: Outcome) -> dict[str, Any]:
    c = outcome.config
    stats = outcome.stats
    seconds = max(outcome.run_seconds, 1e-9)
    messages = int(stats.events.get("messages", 0))
    rpcs = stats.rpc_table()
    audit = outcome.audit.to_dict()
    rejected = {k.split(":", 1)[1]: v for k, v in stats.events.items() if k.startswith("rejected:")}
    reasons: list[str] = []
    if audit["lost"]:
        reasons.append(f"{audit['lost']} lost deliveries")
    if audit["duplicates"]:
        reasons.append(f"{audit['duplicates']} duplicate deliveries")
    unreadable = int(stats.events.get("unreadable", 0) + outcome.drain.events.get("unreadable", 0))
    if unreadable:
        reasons.append(f"{unreadable} messages the receiver could not open")
    sends_in_mix = any(c.mix.get(op, 0) > 0 for op in SEND_OPS)
    if sends_in_mix and outcome.audit.acknowledged == 0:
        reasons.append("no send was acknowledged")
    return {
        "rossby_loadtest": REPORT_VERSION,
        "started_at": outcome.started_at,
        "config": c.to_dict(),
        "mode": "rate" if c.rate is not None else "concurrency",
        "registration": {
            "users": outcome.registered_users,
            "devices": outcome.registered_devices,
            "boxes": outcome.registered_devices,
            "failed_devices": outcome.registration_failed,
            "errors": outcome.registration_errors[:5],
            "seconds": round(outcome.register_seconds, 3),
            "rpcs": outcome.setup.rpc_table(),
        },
        "run_seconds": round(outcome.run_seconds, 3),
        "run_started_unix": round(outcome.run_started_unix, 3),
        "drain_seconds": round(outcome.drain_seconds, 3),
        "totals": {
            "sends": outcome.sends_started,
            "messages_acknowledged": messages,
            "deliveries_during_run": int(stats.events.get("received", 0)),
            "rpcs_ok": sum(v for k, v in stats.ok.items() if k in RPCS),
            "rpc_errors": sum(rpcs[k]["error_total"] for k in RPCS if k in rpcs),
            "skipped_by_inflight_cap": outcome.skipped,
            "unacknowledged": int(stats.events.get("unacknowledged", 0)),
        },
        "throughput": {
            "messages_per_s": round(messages / seconds, 1),
            "sends_per_s": round(stats.ok.get("Send", 0) / seconds, 1),
            "ops_per_s": round(sum(stats.ok.get(f"op:{op}", 0) for op in OPS) / seconds, 1),
            "rpcs_per_s": {k: round(stats.ok.get(k, 0) / seconds, 1) for k in RPCS},
        },
        "rpcs": {
            k: v
            for k, v in rpcs.items()
            if not k.startswith(("op:", CRYPTO_PREFIX)) and k != DELIVERY
        },
        "crypto": {
            "mode": c.crypto,
            "unreadable": unreadable,
            "last_resort_claims": int(stats.events.get(LAST_RESORT, 0)),
            # Process CPU time per operation (not wall time), in ms.
            "cpu_ms": {
                k[len(CRYPTO_PREFIX) :]: {"count": v["ok"], **v["latency_ms"]}
                for k, v in rpcs.items()
                if k.startswith(CRYPTO_PREFIX)
            },
        },
        "ops": {k[3:]: v for k, v in rpcs.items() if k.startswith("op:")},
        "delivery_latency_ms": rpcs.get(DELIVERY, {}).get("latency_ms", {}),
        "send_outcomes": {
            "acknowledged": messages,
            "duplicate": int(stats.events.get("outcome:DUPLICATE", 0)),
            "rejected": rejected,
        },
        "errors_by_code": {k: v["errors"] for k, v in rpcs.items() if v["errors"]},
        "drain": {"rpcs": outcome.drain.rpc_table()},
        "audit": audit,
        "timeline": stats.timeline_rows(until=max(1, int(outcome.run_seconds + 0.999))),
        "ok": not reasons,
        "failures": reasons,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Throughput per second, mean latency per second, and p50..p99.9 per RPC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    t = [r["t"] for r in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 11))
    c = report["config"]
    fig.suptitle(
        f"rossby loadtest: {report['registration']['users']} users, "
        f"{c['processes']} process(es), "
        + (f"rate {c['rate']}/s" if c["rate"] else f"concurrency {c['concurrency']}")
        + f", {c['payload_bytes']} B payloads"
    )
    series = [*RPCS, "messages"]
    for name in series:
        top.plot(t, [r["counts"].get(name, 0) for r in rows], label=name, marker=".")
    top.set_title("throughput (per second)")
    top.set_xlabel("seconds into the run")
    top.set_ylabel("per second")
    top.legend()
    top.grid(True, alpha=0.3)

    for name in (*RPCS, DELIVERY):
        values = [r["mean_ms"].get(name) for r in rows]
        if any(v is not None for v in values):
            middle.plot(
                t,
                [v if v is not None else float("nan") for v in values],
                label=f"{name} mean",
                marker=".",
            )
    middle.set_title("mean latency per second (ms)")
    middle.set_xlabel("seconds into the run")
    middle.set_ylabel("ms")
    middle.set_yscale("log")
    middle.legend()
    middle.grid(True, alpha=0.3)

    table = dict(report["rpcs"])
    if report["delivery_latency_ms"]:
        table[DELIVERY] = {"latency_ms": report["delivery_latency_ms"]}
    names = [n for n in table if table[n]["latency_ms"]]
    pcts = ("p50", "p90", "p99", "p99.9")
    width = 0.8 / max(1, len(pcts))
    for j, pct in enumerate(pcts):
        xs = [i + (j - 1.5) * width for i in range(len(names))]
        bottom.bar(xs, [table[n]["latency_ms"][pct] for n in names], width, label=pct)
    bottom.set_xticks(range(len(names)), names)
    bottom.set_title("latency percentiles (HdrHistogram, ms)")
    bottom.set_ylabel("ms")
    bottom.set_yscale("log")
    bottom.legend()
    bottom.grid(True, axis="y", alpha=0.3)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_summary(report: dict[str, Any], console: Console) -> None:
    c = report["config"]
    console.print(
        f"[bold]rossby loadtest[/bold] {report['registration']['users']} users x "
        f"{c['devices']} device(s), {c['processes']} process(es), "
        f"{report['run_seconds']:.1f}s run, mix "
        + ",".join(f"{k}={v:g}" for k, v in c["mix"].items())
    )
    table = Table(title="latency per RPC (ms)")
    for col in ("rpc", "ok", "errors", "p50", "p90", "p99", "p99.9", "max"):
        table.add_column(col, justify="right" if col != "rpc" else "left")
    rows = dict(report["rpcs"])
    rows.update({f"op:{k}": v for k, v in report["ops"].items()})
    if report["delivery_latency_ms"]:
        rows[DELIVERY] = {"ok": "", "error_total": "", "latency_ms": report["delivery_latency_ms"]}
    for name, row in rows.items():
        lat = row["latency_ms"]
        table.add_row(
            name,
            str(row["ok"]),
            str(row["error_total"]),
            *(f"{lat[p]:.2f}" if p in lat else "-" for p in ("p50", "p90", "p99", "p99.9", "max")),
        )
    console.print(table)
    tp = report["throughput"]
    console.print(
        f"throughput: {tp['messages_per_s']} messages/s acknowledged, "
        f"{tp['sends_per_s']} Send/s, {tp['ops_per_s']} ops/s; "
        + ", ".join(f"{k} {v}/s" for k, v in tp["rpcs_per_s"].items())
    )
    if report["errors_by_code"]:
        console.print(f"errors by code: {report['errors_by_code']}")
    limited = report["errors_by_code"].get("Send", {}).get("SEND_RATE_LIMITED", 0)
    if limited:
        console.print(
            f"[yellow]the server rate-limited {limited} Sends (SEND_RATE_LIMITED; waited out "
            "and resent). To measure capacity, run it with --send-rate-per-device 0.[/yellow]"
        )
    if report["send_outcomes"]["rejected"]:
        console.print(f"rejected sends: {report['send_outcomes']['rejected']}")
    crypto = report["crypto"]
    if crypto["mode"] == "real":
        console.print(
            "client crypto, CPU ms per operation (mean): "
            + ", ".join(
                f"{k} {v.get('mean', 0):.3f} (x{v['count']})" for k, v in crypto["cpu_ms"].items()
            )
            + f"; unreadable {crypto['unreadable']}"
            + f", last-resort claims {crypto['last_resort_claims']}"
        )
    a = report["audit"]
    style = "green" if a["lost"] == 0 and a["duplicates"] == 0 else "bold red"
    console.print(
        f"[{style}]delivery audit: acknowledged {a['acknowledged']}, expected {a['expected']}, "
        f"delivered {a['delivered']}, LOST {a['lost']}, DUPLICATES {a['duplicates']}[/{style}]"
        f" (raw repeats {a['raw_repeats']}, repositioned {a['repositioned']}, "
        f"unexpected {a['unexpected']})"
    )
    for example in a["lost_examples"] + a["duplicate_examples"]:
        console.print(f"  {example}")
    for failure in report["failures"]:
        console.print(f"[bold red]FAIL[/bold red] {failure}")


class Progress:
    """Live progress: a rich table on a terminal, a line every few seconds otherwise."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.live: Live | None = None
        self.last_print = 0.0
        self.last: tuple[float, int, int] | None = None
        self.rate = (0.0, 0.0)

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __call__(self, phase: str, elapsed: float, snapshots: Snapshots) -> None:
        if not self.enabled:
            return
        parts = list(snapshots.values())
        ok = sum(sum(p["ok"].get(k, 0) for k in RPCS) for p in parts)
        messages = sum(int(p["messages"]) for p in parts)
        now = time.monotonic()
        if self.last is not None and now - self.last[0] >= 1.0:
            dt = now - self.last[0]
            self.rate = ((ok - self.last[1]) / dt, (messages - self.last[2]) / dt)
            self.last = (now, ok, messages)
        elif self.last is None:
            self.last = (now, ok, messages)
        phases = sorted({str(p["phase"]) for p in parts}) or [phase]
        fields = {
            "phase": f"{phase} ({'/'.join(phases)})",
            "elapsed": f"{elapsed:.1f}s",
            "registered": str(sum(int(p["registered"]) for p in parts)),
            "rpcs ok": f"{ok} ({self.rate[0]:.0f}/s)",
            "messages acked": f"{messages} ({self.rate[1]:.0f}/s)",
            "delivered": str(sum(int(p["received"]) for p in parts)),
            "errors": str(sum(int(p["errors"]) for p in parts)),
            "in flight": str(sum(int(p["inflight"]) for p in parts)),
        }
        if self.live is not None:
            table = Table(title="rossby loadtest", show_header=False)
            table.add_column("what")
            table.add_column("value", justify="right")
            for k, v in fields.items():
                table.add_row(k, v)
            self.live.update(table)
        elif now - self.last_print >= 5.0 or phase == "done":
            self.last_print = now
            self.console.print(" | ".join(f"{k} {v}" for k, v in fields.items()))


__all__ = ["Progress", "build_report", "print_summary", "write_json", "write_plot"]
