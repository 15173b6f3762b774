"""``rossby serve --workers 2``: two processes on one port, one supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc

from rossby.v1 import rossby_pb2 as pb
from tests.ops.helpers import log_events, metric, migrated_sqlite, scrape, wait_for
from tests.serverproc import ServerProcess, rossby

CONNECTIONS = 32


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _worker_pids(server: ServerProcess) -> list[int]:
    started = [e for e in log_events(server.log) if e["event"] == "workers_started"]
    assert started, server.log.read_text()
    return [int(p) for p in started[-1]["pids"]]


async def _register_over_many_connections(target: str) -> None:
    """One bad Register per connection: INVALID_ARGUMENT, no side effect."""
    for _ in range(CONNECTIONS):
        # A local subchannel pool: a new TCP connection per channel.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            call = channel.unary_unary(
                "/rossby.v1.Rossby/Register",
                request_serializer=pb.RegisterRequest.SerializeToString,
                response_deserializer=pb.RegisterResponse.FromString,
            )
            try:
                await call(pb.RegisterRequest(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            else:
                raise AssertionError("an empty Register was accepted")


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with ServerProcess(tmp_path, url, "--workers", "2") as server:
        pids = _worker_pids(server)
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        wait_for(
            lambda: (
                {e.get("worker") for e in log_events(server.log) if e["event"] == "serving"}
                == {0, 1}
            ),
            30,
            "both workers serving",
        )
        asyncio.run(_register_over_many_connections(server.target))
        # The kernel spread the connections over both processes ...
        answered_by = {
            e.get("worker")
            for e in log_events(server.log)
            if e["event"] == "rpc" and e.get("method") == "Register"
        }
        assert answered_by == {0, 1}
        # ... and the supervisor's one endpoint adds up both workers' counts.
        samples = scrape(server.metrics_port)
        assert (
            metric(samples, "rossby_rpc_requests_total", method="Register", code="INVALID_ARGUMENT")
            == CONNECTIONS
        )
        assert metric(samples, "rossby_store_up") == 1

        assert server.stop(signal.SIGTERM) == 0
        wait_for(lambda: not any(_alive(p) for p in pids), 10, "workers gone")
    stopped = [e for e in log_events(server.log) if e["event"] == "stopped"]
    assert len(stopped) == 3  # each worker, then the supervisor


def test_a_dead_worker_stops_the_unit(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with ServerProcess(tmp_path, url, "--workers", "2") as server:
        first, second = _worker_pids(server)
        os.kill(first, signal.SIGKILL)
        assert server.proc is not None
        assert server.proc.wait(60) == 1
        wait_for(lambda: not _alive(second), 10, "the other worker gone")
    assert "worker_exited" in [e["event"] for e in log_events(server.log)]


def test_a_busy_port_is_refused_in_multi_worker_mode(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with ServerProcess(tmp_path, url, "--workers", "2") as first:
        proc = rossby(
            "serve",
            "--store",
            url,
            "--listen",
            first.target,
            "--workers",
            "2",
            "--metrics-listen",
            "",
            "--state-dir",
            str(tmp_path / "state"),
            timeout=60,
        )
        assert proc.returncode == 1
        assert f"cannot listen on {first.target}" in proc.stderr
