"""``rossby serve`` as a real process: health, reflection, clean stops."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.serverproc import ServerProcess, free_port, rossby


def _sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    return url


def test_serve_reports_serving_and_lists_services(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, _sqlite(tmp_path)) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
            names = {s.name for s in reply.list_services_response.service}
        assert {"rossby.v1.Rossby", "grpc.health.v1.Health"} <= names
        assert server.stop(signal.SIGTERM) == 0
        events = [json.loads(line).get("event") for line in server.log.read_text().splitlines()]
        assert "stopped" in events


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, _sqlite(tmp_path)) as server:
        assert server.stop(signal.SIGINT) == 0


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    again = rossby("migrate", "--store", url)
    assert again.returncode == 0, again.stderr


def test_serve_refuses_an_unmigrated_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = rossby(
        "serve",
        "--store",
        url,
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--state-dir",
        str(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 1
    assert "SCHEMA_MISSING" in proc.stderr


def test_busy_port_fails_with_a_clear_line(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    with ServerProcess(tmp_path, url) as first:
        proc = rossby(
            "serve",
            "--store",
            url,
            "--listen",
            first.target,
            "--state-dir",
            str(tmp_path / "state"),
            timeout=60,
        )
        assert proc.returncode == 1
        assert f"cannot listen on {first.target}" in proc.stderr
        assert health_ok(first.target)


def health_ok(target: str) -> bool:
    from tests.serverproc import health_status

    serving: int = health_pb2.HealthCheckResponse.SERVING  # grpc_health has no types
    return health_status(target) == serving
