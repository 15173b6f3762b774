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
import itertools
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


# -- server CPU per call ---------------------------------------------------------
#
# Throughput on a shared 2-core machine moves with whatever else runs; the CPU
# time the server processes themselves spend per call does not (much), so every
# throughput figure is reported beside it.

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (``--workers`` children)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = found
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu.get(pid, 0.0) for pid in tree)


class CpuSampler:
    """Samples a process tree's CPU seconds every ``interval`` on a thread, so
    the CPU spent inside a window known only afterwards (a loadtest's run
    phase) can be read off by interpolation."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        import threading

        self.root = root
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), tree_cpu_seconds(self.root)))
            self._stop.wait(self.interval)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def at(self, t: float) -> float:
        samples = self.samples
        if not samples:
            return 0.0
        if t <= samples[0][0]:
            return samples[0][1]
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return samples[-1][1]

    def between(self, start: float, end: float) -> float:
        return self.at(end) - self.at(start)


def cpu_per_call_us(cpu_seconds: float, calls: int) -> float | None:
    return round(cpu_seconds / calls * 1e6, 1) if calls else None
