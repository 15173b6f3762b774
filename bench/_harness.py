"""The closed-loop harness shared by the ceiling benchmarks (bench/run_all.py).

``closed_loop(factory, concurrency, seconds)`` keeps ``concurrency`` calls in
flight for ``seconds`` (or until ``count`` calls) in one asyncio loop and
answers a ``Result``: calls, errors, elapsed seconds and an HdrHistogram of
the successful calls' latency in microseconds (1 µs to 60 s, 3 digits), the
same histogram ``rossby loadtest`` uses. ``factory()`` is awaited once per
run and returns the async callable to time (it owns any connection set-up).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
Call = Callable[[], Awaitable[None]]


def new_histogram() -> Any:
    return HdrHistogram(1, 60_000_000, 3)


@dataclass
class Result:
    name: str
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    hist: Any = field(default_factory=new_histogram)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        lat = {}
        if self.hist.get_total_count():
            lat = {f"p{p:g}": self.hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
        return {
            "name": self.name,
            "calls": self.calls,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.rate, 1),
            "latency_ms": lat,
            **self.extra,
        }


async def closed_loop(
    name: str,
    call: Call,
    concurrency: int,
    seconds: float,
    count: int | None = None,
) -> Result:
    result = Result(name)
    deadline = time.perf_counter() + seconds
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while time.perf_counter() < deadline and (count is None or issued < count):
            issued += 1
            started = time.perf_counter()
            try:
                await call()
            except Exception as exc:
                code = getattr(exc, "code", None)
                label = str(code().name) if callable(code) else type(exc).__name__
                result.errors[label] = result.errors.get(label, 0) + 1
                await asyncio.sleep(0.01)
                continue
            micros = int((time.perf_counter() - started) * 1_000_000)
            result.hist.record_value(max(1, min(60_000_000, micros)))
            result.calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    import grpc

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run a helper that prints one JSON document on its last stdout line."""
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
