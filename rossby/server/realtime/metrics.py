"""Prometheus metrics of real-time delivery, on the server's own registry.

Registered next to ``rossby.server.metrics.Metrics`` (same registry, so one
scrape shows both); multiprocess-safe like the rest (gauges say how they
combine over ``--workers``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.streams_open = Gauge(
            "rossby_streams_open",
            "Subscribe streams open on this server.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.streams_refused = Counter(
            "rossby_streams_refused",
            "Subscribe streams refused because the device held stream_limit streams.",
            registry=r,
        )
        self.stream_events = Counter(
            "rossby_stream_events",
            "Events written to Subscribe streams, by kind.",
            ["kind"],
            registry=r,
        )
        self.stream_catch_ups = Counter(
            "rossby_stream_catch_ups",
            "Streams ended with a catch-up event because they stopped reading "
            "(their queued events were dropped; the messages stay in the store).",
            registry=r,
        )
        self.stream_slow_aborts = Counter(
            "rossby_stream_slow_consumer_aborts",
            "Streams aborted with SLOW_CONSUMER: a single write stalled past the limit.",
            registry=r,
        )
        self.stream_max_age_ends = Counter(
            "rossby_stream_max_age_ends",
            "Streams ended with OK because they reached stream_max_age (clients resubscribe).",
            registry=r,
        )
        self.stream_buffer_peak = Gauge(
            "rossby_stream_buffer_peak",
            "The most events any one Subscribe stream of this process has held queued "
            "(never above stream_buffer).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.ephemeral_dropped = Counter(
            "rossby_ephemeral_dropped",
            "Ephemeral messages not handed to a stream because its queue was full.",
            registry=r,
        )
        self.delivery_latency = Histogram(
            "rossby_stream_delivery_seconds",
            "From the server receiving a message (Send) to writing it to a live stream.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.peer_notifies = Counter(
            "rossby_peer_notifies",
            "Peer Notify calls, by direction (sent, received) and outcome.",
            ["direction", "outcome"],
            registry=r,
        )
        self.presence_errors = Counter(
            "rossby_presence_errors",
            "Presence reads and writes that failed (delivery then falls back to the poll).",
            ["operation"],
            registry=r,
        )
        self.presence_lookups = Counter(
            "rossby_presence_lookups",
            "Presence lookups of a fan-out, by source: a store read, or this "
            "process's presence cache (presence_cache_ttl).",
            ["source"],
            registry=r,
        )
        #: This process's value of ``stream_buffer_peak``.
        self.buffer_peak = 0

    def note_buffered(self, depth: int) -> None:
        if depth > self.buffer_peak:
            self.buffer_peak = depth
            self.stream_buffer_peak.set(depth)


__all__ = ["RealtimeMetrics"]
