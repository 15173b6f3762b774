"""HTTP/2 connection options of the public server (keepalive, idle, age).

Its own module: the options are derived from settings alone, and tests and
the server read them without building a server.
"""

from __future__ import annotations

from rossby.config import Settings

#: Seconds past ``stream_max_age`` a connection past its age gets before
#: the calls still on it are cut: room for a stream's last write.
AGE_GRACE_MARGIN = 60.0


def connection_options(settings: Settings) -> list[tuple[str, int]]:
    """HTTP/2 keepalive and connection lifetimes (docs/realtime.md).

    * Keepalive: the server pings every ``keepalive_time`` and closes a
      connection whose ping goes unanswered for ``keepalive_timeout``, so a
      client that vanished without FIN or RST releases its streams (and
      their ``stream_limit`` slots) in about a minute, not after a TCP
      timeout. It pings idle connections too (permit without calls), and
      lets clients ping down to ``keepalive_min_interval`` even when idle;
      faster pings are strikes, and the third is GOAWAY "too_many_pings".
    * ``connection_idle``: a connection with no call that long gets GOAWAY;
      the client reconnects when it next calls.
    * Age: a connection gets GOAWAY after ``stream_max_age`` (gRPC adds
      +-10%), so with SO_REUSEPORT or a TCP load balancer a resubscribing
      client lands on a fresh connection and possibly another process. The
      grace covers every stream still on it: each ends by its own max age.
    """
    s = settings
    return [
        ("grpc.keepalive_time_ms", _ms(s.keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(s.keepalive_timeout)),
        # The wait that actually applies to an unanswered ping in gRPC core
        # (1.85): without it a vanished client is noticed only after 60 s.
        ("grpc.http2.ping_timeout_ms", _ms(s.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS; gRPC ignores
        # unknown names silently, so tests/api/test_stream_lifetime.py checks it bites.
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(s.keepalive_min_interval)),
        ("grpc.max_connection_idle_ms", _ms(s.connection_idle)),
        ("grpc.max_connection_age_ms", _ms(s.stream_max_age)),
        ("grpc.max_connection_age_grace_ms", _ms(s.stream_max_age + AGE_GRACE_MARGIN)),
    ]


def _ms(seconds: float) -> int:
    """Milliseconds as a gRPC channel argument: a C int, where INT_MAX is "never"."""
    return max(1, min(2**31 - 1, round(seconds * 1000)))


__all__ = ["AGE_GRACE_MARGIN", "connection_options"]
