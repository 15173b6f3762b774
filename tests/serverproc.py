"""Run ``rossby serve`` as a real subprocess, for tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rossby(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rossby", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def health_status(
    target: str,
    service: str = "",
    timeout: float = 2.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> int:
    with (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return int(reply.status)


class ServerProcess:
    """``rossby serve`` on a free loopback port; stopped with SIGTERM."""

    def __init__(
        self,
        workdir: Path,
        store: str,
        *extra: str,
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self.workdir = workdir
        self.credentials = credentials  # for the health polls of a TLS server
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.log = workdir / f"server-{self.port}.log"
        self.args = [
            sys.executable,
            "-m",
            "rossby",
            "serve",
            "--listen",
            self.target,
            "--store",
            store,
            "--state-dir",
            str(workdir / "state"),
            "--outbox-dir",
            str(workdir / "outbox"),
            "--log-format",
            "json",
            # One process and a private metrics port unless ``extra`` says
            # otherwise (argparse keeps the last occurrence of a flag).
            "--workers",
            "1",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            *extra,
        ]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                status = health_status(self.target, timeout=0.5, credentials=self.credentials)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return self
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not SERVING after {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


#: Environment for ``rossby client`` in tests: cheap keyfiles (rossby.client.keycost).
FAST_KEYFILE = {"ROSSBY_KEYFILE_SCRYPT_N": str(2**10)}
