"""Latency histograms, error counts and a per-second timeline, mergeable across processes.

Latencies are recorded in microseconds in an HdrHistogram (1 µs to 60 s,
3 significant digits), one per RPC (``Send``, ``Fetch``, ``Ack``, ...) and
one per operation (``op:send``, ``op:group``, ``op:fetch``; an operation
may be several RPCs, and with ``--rate`` it is timed from its *scheduled*
start, so queueing behind a slow server counts: no coordinated omission).
Only successful calls go into the histograms; failures are counted by
gRPC status code name. A process ships its histograms as HdrHistogram's
compressed encoding, and the coordinator adds them up.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

from hdrh.histogram import HdrHistogram

LOWEST_US: Final = 1
HIGHEST_US: Final = 60_000_000
SIGNIFICANT: Final = 3
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> Any:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def percentiles_ms(hist: Any) -> dict[str, float]:
    """p50/p90/p99/p99.9, mean and max of a histogram, in milliseconds."""
    if hist.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES}
    out["mean"] = round(hist.get_mean_value() / 1000.0, 3)
    out["max"] = hist.get_max_value() / 1000.0
    return out


class Second:
    """One second of the timeline: completions, errors and latency sums per name."""

    __slots__ = ("counts", "errors", "lat_max", "lat_sum")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.lat_sum: Counter[str] = Counter()
        self.lat_max: dict[str, int] = {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "lat_sum_us": dict(self.lat_sum),
            "lat_max_us": dict(self.lat_max),
        }


class Recorder:
    """What one process measured. ``t0`` is the shared wall-clock start of the run."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.hists: dict[str, Any] = {}
        self.ok: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = {}
        self.events: Counter[str] = Counter()
        self.timeline: dict[int, Second] = {}

    def _second(self) -> Second | None:
        if self.t0 is None:
            return None
        index = int(time.time() - self.t0)
        if index < 0:
            return None
        second = self.timeline.get(index)
        if second is None:
            second = self.timeline[index] = Second()
        return second

    def ok_call(self, name: str, seconds: float) -> None:
        micros = max(LOWEST_US, min(HIGHEST_US, int(seconds * 1_000_000)))
        hist = self.hists.get(name)
        if hist is None:
            hist = self.hists[name] = new_histogram()
        hist.record_value(micros)
        self.ok[name] += 1
        second = self._second()
        if second is not None:
            second.counts[name] += 1
            second.lat_sum[name] += micros
            if micros > second.lat_max.get(name, 0):
                second.lat_max[name] = micros

    def failed_call(self, name: str, code: str) -> None:
        self.errors.setdefault(name, Counter())[code] += 1
        second = self._second()
        if second is not None:
            second.errors[name] += 1

    def event(self, name: str, n: int = 1) -> None:
        """A plain counter (messages acknowledged, deliveries, rejections ...)."""
        if n <= 0:
            return
        self.events[name] += n
        second = self._second()
        if second is not None:
            second.counts[name] += n

    def error_total(self) -> int:
        return sum(sum(c.values()) for c in self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "hists": {k: h.encode().decode("ascii") for k, h in self.hists.items()},
            "ok": dict(self.ok),
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "events": dict(self.events),
            "timeline": {str(k): v.to_dict() for k, v in sorted(self.timeline.items())},
        }


class Merged:
    """The coordinator's sum of every process's ``Recorder.to_dict()``."""

    def __init__(self) -> None:
        self.hists: dict[str, Any] = {}
        self.ok: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = {}
        self.events: Counter[str] = Counter()
        self.timeline: dict[int, dict[str, Counter[str]]] = {}
        self.lat_max: dict[int, dict[str, int]] = {}

    def add(self, part: dict[str, Any]) -> None:
        for name, encoded in part["hists"].items():
            hist = self.hists.get(name)
            if hist is None:
                hist = self.hists[name] = new_histogram()
            hist.add(HdrHistogram.decode(encoded.encode("ascii")))
        self.ok.update(part["ok"])
        for name, codes in part["errors"].items():
            self.errors.setdefault(name, Counter()).update(codes)
        self.events.update(part["events"])
        for key, sec in part["timeline"].items():
            index = int(key)
            slot = self.timeline.setdefault(
                index, {"counts": Counter(), "errors": Counter(), "lat_sum_us": Counter()}
            )
            slot["counts"].update(sec["counts"])
            slot["errors"].update(sec["errors"])
            slot["lat_sum_us"].update(sec["lat_sum_us"])
            maxes = self.lat_max.setdefault(index, {})
            for name, value in sec["lat_max_us"].items():
                maxes[name] = max(maxes.get(name, 0), int(value))

    def rpc_table(self) -> dict[str, dict[str, Any]]:
        names = sorted(set(self.hists) | set(self.errors))
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            errors = dict(self.errors.get(name, Counter()))
            ok = self.ok.get(name, 0)
            hist = self.hists.get(name)
            out[name] = {
                "ok": ok,
                "errors": errors,
                "error_total": sum(errors.values()),
                "latency_ms": percentiles_ms(hist) if hist is not None else {},
            }
        return out

    def timeline_rows(self, until: int | None = None) -> list[dict[str, Any]]:
        """One row per second of the run: counts, errors, mean and max latency (ms)."""
        if not self.timeline:
            return []
        last = max(self.timeline) if until is None else until - 1
        rows = []
        for index in range(0, last + 1):
            slot = self.timeline.get(index)
            if slot is None:
                rows.append({"t": index, "counts": {}, "errors": {}, "mean_ms": {}, "max_ms": {}})
                continue
            counts = slot["counts"]
            mean = {
                name: round(total / 1000.0 / counts[name], 3)
                for name, total in slot["lat_sum_us"].items()
                if counts.get(name)
            }
            maxes = {k: v / 1000.0 for k, v in self.lat_max.get(index, {}).items()}
            rows.append(
                {
                    "t": index,
                    "counts": dict(counts),
                    "errors": dict(slot["errors"]),
                    "mean_ms": mean,
                    "max_ms": maxes,
                }
            )
        return rows


__all__ = ["PERCENTILES", "Merged", "Recorder", "new_histogram", "percentiles_ms"]
