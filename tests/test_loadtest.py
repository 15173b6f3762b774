"""``rossby loadtest``: a few-second smoke run against a real ``rossby serve`` on SQLite,
plus the audit's vocabulary on its own. Speed is never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rossby.loadtest.audit import AuditResult, DeviceAudit
from rossby.loadtest.config import LoadConfig, UsageError, parse_mix
from tests.serverproc import ServerProcess, rossby

# One serving process and no metrics port: several of these may run at once.
# The per-device send limit is off: the load generator sends from four
# devices as fast as the server answers (it measures the server, not the limit).
# So is the per-address Register limit: every device registers from 127.0.0.1.
SERVER_ENV = {
    "ROSSBY_WORKERS": "1",
    "ROSSBY_METRICS_LISTEN": "",
    "ROSSBY_SEND_RATE_PER_DEVICE": "0",
    "ROSSBY_REGISTER_RATE_PER_ADDRESS": "0",
    # --crypto real claims a bundle per pair of users within seconds.
    "ROSSBY_PREKEY_CLAIM_RATE_PER_DEVICE": "0",
    "ROSSBY_PREKEY_CLAIM_RATE_PER_BOX": "0",
}


def _sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    return url


@pytest.mark.parametrize("processes", [1, 2])
def test_smoke_run_audits_clean(tmp_path: Path, processes: int) -> None:
    report_path = tmp_path / "out" / "report.json"
    plot_path = tmp_path / "out" / "plot.png"
    with ServerProcess(tmp_path, _sqlite(tmp_path), env=SERVER_ENV) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "rossby",
                "loadtest",
                "--target",
                server.target,
                "--outbox",
                str(tmp_path / "outbox"),
                "--users",
                "4",
                "--processes",
                str(processes),
                "--concurrency",
                "4",
                "--duration",
                "3",
                "--mix",
                "send=5,group=1,fetch=2,subscribe=2",
                "--report",
                str(report_path),
                "--plot",
                str(plot_path),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert plot_path.stat().st_size > 0
    assert report["config"]["processes"] == processes
    assert report["registration"]["users"] == 4
    assert report["totals"]["sends"] > 0
    assert report["send_outcomes"]["acknowledged"] > 0
    audit = report["audit"]
    assert audit["acknowledged"] > 0
    assert audit["lost"] == 0, audit
    assert audit["duplicates"] == 0, audit
    assert audit["delivered"] == audit["expected"]
    assert report["ok"] is True
    assert set(report["rpcs"]) >= {"Send", "Fetch", "Subscribe"}
    assert {"p50", "p90", "p99", "p99.9"} <= set(report["rpcs"]["Send"]["latency_ms"])
    assert "LOST 0" in proc.stdout and "DUPLICATES 0" in proc.stdout


def test_real_crypto_run_opens_every_message(tmp_path: Path) -> None:
    """--crypto real: every device publishes prekeys, every message is a v2
    envelope (PQXDH on first contact, then the ratchet) and every delivered
    message is opened by its receiver; the CPU per seal/open is reported."""
    report_path = tmp_path / "report.json"
    with ServerProcess(tmp_path, _sqlite(tmp_path), env=SERVER_ENV) as server:
        proc = rossby(
            "loadtest",
            "--target",
            server.target,
            "--outbox",
            str(tmp_path / "outbox"),
            "--users",
            "4",
            "--concurrency",
            "4",
            "--messages",
            "60",
            "--mix",
            "send=5,group=1,fetch=2,subscribe=2",
            "--crypto",
            "real",
            "--report",
            str(report_path),
            "--no-plot",
            "--no-progress",
            timeout=240,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert report["config"]["crypto"] == "real"
    audit = report["audit"]
    assert audit["lost"] == 0 and audit["duplicates"] == 0, audit
    assert audit["delivered"] == audit["expected"] > 0
    # Every delivered message was sealed and opened for real: none unreadable.
    crypto = report["crypto"]
    assert crypto["unreadable"] == 0, crypto
    assert crypto["cpu_ms"]["open"]["count"] == audit["delivered"]
    assert crypto["cpu_ms"]["seal"]["count"] >= report["send_outcomes"]["acknowledged"]
    assert crypto["cpu_ms"]["open"]["mean"] > 0
    assert report["ok"] is True
    assert "client crypto, CPU ms per operation" in proc.stdout


def test_a_rate_limited_server_is_waited_out_and_the_audit_stays_clean(tmp_path: Path) -> None:
    """SEND_RATE_LIMITED refuses a whole Send and stores nothing: the harness
    waits as told and resends the same ids, so nothing is lost or doubled."""
    report_path = tmp_path / "report.json"
    env = {**SERVER_ENV, "ROSSBY_SEND_RATE_PER_DEVICE": "10/second", "ROSSBY_MAX_RECIPIENTS": "10"}
    with ServerProcess(tmp_path, _sqlite(tmp_path), env=env) as server:
        proc = rossby(
            "loadtest",
            "--target",
            server.target,
            "--outbox",
            str(tmp_path / "outbox"),
            "--users",
            "3",
            "--concurrency",
            "6",
            "--duration",
            "3",
            "--mix",
            "send=3,group=1,fetch=1",
            "--group-size",
            "2",
            "--report",
            str(report_path),
            "--no-plot",
            "--no-progress",
            timeout=240,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert report["errors_by_code"]["Send"]["SEND_RATE_LIMITED"] > 0, report["errors_by_code"]
    assert "--send-rate-per-device 0" in proc.stdout
    audit = report["audit"]
    assert audit["acknowledged"] > 0
    assert (audit["lost"], audit["duplicates"]) == (0, 0), audit
    assert audit["delivered"] == audit["expected"]


def test_no_server_is_a_harness_failure(tmp_path: Path) -> None:
    proc = rossby(
        "loadtest",
        "--target",
        "127.0.0.1:9",
        "--outbox",
        str(tmp_path),
        "--users",
        "2",
        "--duration",
        "1",
        "--register-timeout",
        "20",
        "--rpc-timeout",
        "2",
        "--no-progress",
        "--out-dir",
        str(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "fewer than 2 users registered" in proc.stderr


def test_usage_errors_exit_2() -> None:
    proc = rossby("loadtest", "--target", "127.0.0.1:1", "--outbox", "x", "--mix", "nope=1")
    assert proc.returncode == 2
    assert "unknown operation" in proc.stderr


def test_mix_parsing() -> None:
    assert parse_mix("send=2, fetch=1") == {"send": 2.0, "fetch": 1.0}
    assert parse_mix("subscribe=1") == {"subscribe": 1.0}
    for bad in ("nope=1", "send=x", "send=0"):
        with pytest.raises(UsageError):
            parse_mix(bad)


def test_config_shares_users_workers_and_quota() -> None:
    c = LoadConfig(
        targets=("127.0.0.1:1",),
        outboxes=("o",),
        users=10,
        processes=3,
        concurrency=8,
        duration=None,
        messages=7,
    ).validate()
    shares = [c.share(i) for i in range(3)]
    assert [len(s[0]) for s in shares] == [3, 3, 4]
    assert sorted(u for s in shares for u in s[0]) == list(range(10))
    assert sum(s[1] for s in shares) == 8
    assert sum(s[3] or 0 for s in shares) == 7


def test_audit_vocabulary() -> None:
    d = DeviceAudit()
    assert d.observe("a", 10) is True
    assert d.observe("b", 20) is True
    assert d.observe("a", 10) is False  # re-read before the ack: raw repeat
    d.acked(20)
    assert d.observe("b", 20) is False  # settle-window re-read below the cursor: raw repeat
    assert (d.raw_repeats, d.duplicates) == (2, 0)
    assert d.observe("a", 30) is False  # acked past it, and presented as new: duplicate
    assert (d.duplicates, d.repositioned) == (1, 1)

    result = AuditResult(acknowledged=3)
    result.add_device("dev", d, {"a", "b", "c"})
    assert (result.expected, result.delivered, result.lost, result.duplicates) == (3, 2, 1, 1)
    assert result.lost_examples == ["c -> dev"]
