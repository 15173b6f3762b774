"""Prometheus metrics of push wake-ups, on the server's own registry
(like ``rossby.server.realtime.metrics``; multiprocess-safe)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PushMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.attempts = Counter(
            "rossby_push_attempts",
            "Requests to push services, by target kind and outcome (delivered, gone, "
            "retry, failed).",
            ["kind", "outcome"],
            registry=r,
        )
        self.wakeups = Counter(
            "rossby_push_wakeups",
            "Wake-ups finished, by target kind and result (delivered; removed: the push "
            "service called the target gone; failed; gave_up: retries ran out; "
            "skipped: the device opened a stream before a retry).",
            ["kind", "result"],
            registry=r,
        )
        self.coalesced = Counter(
            "rossby_push_coalesced",
            "Wake-ups not sent because the device was woken within push_coalesce_seconds "
            "(it is owed one at the end of the interval).",
            registry=r,
        )
        self.awake = Counter(
            "rossby_push_awake",
            "Devices with a push target not woken for a message because they hold a "
            "stream (in this process or, by presence, in another).",
            registry=r,
        )
        self.dropped = Counter(
            "rossby_push_dropped",
            "Wake-ups dropped by this process, by reason (queue_full: too many boxes or "
            "pushes waiting; store_error: the targets or pending count could not be read).",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge(
            "rossby_push_in_flight",
            "Wake-ups being sent or waiting for a retry in this process.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.duration = Histogram(
            "rossby_push_duration_seconds",
            "Time one request to a push service took, by target kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


__all__ = ["PushMetrics"]
