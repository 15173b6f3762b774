"""Crash safety: ``kill -9`` the server repeatedly during a load run; nothing
acknowledged is lost and nothing is delivered twice.

Each run kills a real ``rossby serve`` several times while the load harness
sends (retrying under the same message id, as a client does), fetches, acks
and subscribes; the server is restarted on the same port each time. The
harness's audit then fetches everything every device should hold. Longer
runs with the figures: ``bench/crash_safety.py`` and docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import migrate_in_thread
from tests.conftest import cassandra_url
from tests.reliability.crashrun import crash_config, run_with_kills
from tests.serverproc import ServerProcess, rossby

KILLS = 4
#: One serving process (so SIGKILL hits the process that holds the writes) and
#: the abuse limits off: the harness registers and sends in bulk from one address.
SERVER_ARGS = (
    "--workers",
    "1",
    "--metrics-listen",
    "",
    "--register-rate-per-address",
    "0",
    "--send-rate-per-device",
    "0",
)


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rossby.db'}"
        done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
        assert done.returncode == 0, done.stderr
        yield url
    else:
        hosts = request.getfixturevalue("cassandra_hosts")
        url = cassandra_url(hosts, "rossby_crash", replication="dc1:1")
        migrate_in_thread(url)
        yield url


def test_kill_9_under_load_loses_and_duplicates_nothing(store_url: str, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, store_url, *SERVER_ARGS).start()
    try:
        config = crash_config(server, tmp_path / "outbox", users=8, duration=14.0, seed=11)
        run = run_with_kills(server, config, max_kills=KILLS, seed=7)
    finally:
        server.stop()
    summary = run.summary()
    audit = run.report["audit"]
    # The server really died under load: the kills happened, and clients saw it.
    assert run.kills == KILLS, summary
    assert run.report["errors_by_code"].get("Send", {}).get("UNAVAILABLE", 0) > 0, summary
    # What was acknowledged arrived, once.
    assert audit["acknowledged"] > 0, summary
    assert audit["expected"] > 0, summary
    assert audit["lost"] == 0, (summary, audit["lost_examples"])
    assert audit["duplicates"] == 0, (summary, audit["duplicate_examples"])
    assert audit["delivered"] == audit["expected"], summary
