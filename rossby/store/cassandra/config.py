"""URL parameters, and the topology/consistency choices made from them.

Every consistency and routing decision lives in a small function here, so
geo-replication work can change where a kind of operation is coordinated
without touching the store logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import ExecutionProfile

from rossby.errors import ConfigError
from rossby.replication.consistency import SCHEMA_TIMEOUT, Op
from rossby.replication.consistency import execution_profiles as _profiles
from rossby.replication.topology import Topology, parse_replication, topology_from
from rossby.store.url import StoreURL

# Execution profile names, one per kind of operation, coordinated in this
# server's DC. ``rossby.replication.consistency`` holds the table (level,
# serial level, local or home routing); home-routed operations name the
# ``op@dc`` profile of the box's home DC instead.
QUEUE = Op.QUEUE.value  # message rows: enqueue, fetch, compact, pending count
CLAIM = Op.CLAIM.value  # (box, message id) -> position claims: LWT at LOCAL_SERIAL
CURSOR = Op.CURSOR.value  # device cursors and purged_through
KEYS = Op.KEYS.value  # boxes, devices, public keys, profiles
NONCES = Op.NONCES.value  # Hawk nonces: write then read at the store's consistency
PREKEYS = Op.PREKEYS.value  # prekeys: claims are LWT at LOCAL_SERIAL on this region's share
CONTACTS = Op.CONTACTS.value  # contact -> box claims: LWT at SERIAL (global)
REGISTRATIONS = Op.REGISTRATIONS.value  # pending registrations: LWT at SERIAL
SCHEMA = Op.SCHEMA.value  # DDL and schema_version: slow, so a long timeout

__all__ = [
    "CLAIM",
    "CONTACTS",
    "CURSOR",
    "KEYS",
    "NONCES",
    "PREKEYS",
    "QUEUE",
    "REGISTRATIONS",
    "SCHEMA",
    "SCHEMA_TIMEOUT",
    "Settings",
    "execution_profiles",
    "parse_replication",
    "parse_settings",
]


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
    def topology(self) -> Topology:
        return Topology(self.local_dc, self.replication)

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
    topology = topology_from(url.param("local_dc"), url.param("replication"))
    local_dc, replication = topology.local_dc, topology.replication
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


def execution_profiles(settings: Settings) -> dict[Any, ExecutionProfile]:
    """One profile per operation and datacenter (rossby.replication.consistency)."""
    return _profiles(
        settings.topology,
        consistency=settings.consistency,
        request_timeout=settings.request_timeout,
    )
