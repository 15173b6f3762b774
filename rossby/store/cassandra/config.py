"""URL parameters, and the topology/consistency choices made from them.

Every consistency and routing decision lives in a small function here, so
geo-replication work can change where a kind of operation is coordinated
without touching the store logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import dict_factory, tuple_factory

from rossby.errors import ConfigError
from rossby.store import StoreURL

# Execution profile names, one per kind of operation.
QUEUE = "queue"  # message rows: enqueue, fetch, compact, pending count
CLAIM = "claim"  # (box, message id) -> position claims: LWT at LOCAL_SERIAL
CURSOR = "cursor"  # device cursors and purged_through
KEYS = "keys"  # boxes, devices, public keys, profiles
CONTACTS = "contacts"  # contact -> box claims: LWT at SERIAL (global)
REGISTRATIONS = "registrations"  # pending registrations: LWT at SERIAL
SCHEMA = "schema"  # DDL and schema_version: slow, so a long timeout

SCHEMA_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    hosts: tuple[str, ...]
    port: int
    keyspace: str
    local_dc: str
    replication: tuple[tuple[str, int], ...]
    settle_ms: int
    request_timeout_ms: int
    consistency: int
    max_in_flight: int

    @property
    def request_timeout(self) -> float:
        return self.request_timeout_ms / 1000.0

    @property
    def settle_seconds(self) -> float:
        return self.settle_ms / 1000.0


def _int_param(url: StoreURL, name: str, default: int, minimum: int) -> int:
    text = url.param(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"store: {name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ConfigError(f"store: {name} must be >= {minimum}, got {value}")
    return value


def parse_replication(text: str) -> tuple[tuple[str, int], ...]:
    """``dc1:3,dc2:3`` -> (("dc1", 3), ("dc2", 3))."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        dc, sep, rf_text = item.partition(":")
        if not sep or not dc or not dc.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"store: replication wants dc:rf[,dc:rf], got {text!r}")
        try:
            rf = int(rf_text)
        except ValueError:
            raise ConfigError(f"store: bad replication factor in {item!r}") from None
        if rf < 1:
            raise ConfigError(f"store: replication factor must be >= 1 in {item!r}")
        out[dc] = rf
    if not out:
        raise ConfigError("store: replication names no datacenter")
    return tuple(sorted(out.items()))


def parse_settings(url: StoreURL) -> Settings:
    """Validate the URL once, before anything connects."""
    known = {
        "local_dc",
        "replication",
        "settle_ms",
        "request_timeout_ms",
        "consistency",
        "max_in_flight",
    }
    unknown = sorted(k for k, _ in url.params if k not in known)
    if unknown:
        raise ConfigError(f"store: unknown Cassandra parameter(s) {', '.join(unknown)}")
    local_dc = url.param("local_dc") or "dc1"
    replication = parse_replication(url.param("replication") or f"{local_dc}:1")
    settle_ms = _int_param(url, "settle_ms", 5000, 1)
    timeout_ms = _int_param(url, "request_timeout_ms", 2000, 1)
    # The settle window must cover a write's whole life (request timeout)
    # plus the clock skew between writers; insisting on at least half the
    # window for skew keeps a misconfiguration from silently losing messages.
    if timeout_ms * 2 > settle_ms:
        raise ConfigError(
            f"store: request_timeout_ms ({timeout_ms}) must be at most half of settle_ms "
            f"({settle_ms}): the settle window covers the timeout plus clock skew"
        )
    name = (url.param("consistency") or "LOCAL_QUORUM").upper()
    # Only levels where a read sees every acknowledged write: the settle
    # argument and idempotent enqueue both rest on read-your-writes.
    # (EACH_QUORUM is not valid for reads.)
    if name not in ("LOCAL_QUORUM", "QUORUM", "ALL"):
        raise ConfigError(f"store: consistency must be LOCAL_QUORUM, QUORUM or ALL, got {name!r}")
    return Settings(
        hosts=url.hosts,
        port=url.port,
        keyspace=url.keyspace,
        local_dc=local_dc,
        replication=replication,
        settle_ms=settle_ms,
        request_timeout_ms=timeout_ms,
        consistency=getattr(ConsistencyLevel, name),
        max_in_flight=_int_param(url, "max_in_flight", 64, 1),
    )


def routing(local_dc: str) -> Any:
    """Coordinators in ``local_dc``, replicas first.

    One policy object per profile: the driver keeps per-policy host state.
    """
    return TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc))


def serial_for_contacts() -> int:
    """Global: two datacenters must never both hand the same contact out."""
    return int(ConsistencyLevel.SERIAL)


def serial_for_registrations() -> int:
    """Global, so an attempt counter cannot be raced from two datacenters."""
    return int(ConsistencyLevel.SERIAL)


def serial_for_claims() -> int:
    """Local: a message claim only dedupes retries, which reach one region."""
    return int(ConsistencyLevel.LOCAL_SERIAL)


def execution_profiles(settings: Settings) -> dict[Any, ExecutionProfile]:
    timeout = settings.request_timeout
    cl = settings.consistency

    def profile(serial: int | None = None, *, rows: Any = tuple_factory, t: float = timeout) -> Any:
        return ExecutionProfile(
            load_balancing_policy=routing(settings.local_dc),
            consistency_level=cl,
            serial_consistency_level=serial,
            request_timeout=t,
            row_factory=rows,
        )

    return {
        EXEC_PROFILE_DEFAULT: profile(),
        QUEUE: profile(),
        CURSOR: profile(),
        KEYS: profile(),
        # LWT answers carry their columns by name; dict rows keep that readable.
        CLAIM: profile(serial_for_claims(), rows=dict_factory),
        CONTACTS: profile(serial_for_contacts(), rows=dict_factory),
        REGISTRATIONS: profile(serial_for_registrations(), rows=dict_factory),
        SCHEMA: profile(rows=tuple_factory, t=SCHEMA_TIMEOUT),
    }
