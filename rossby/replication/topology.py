"""Datacenters, replication factors and the server's own region.

A *region* is one Cassandra datacenter plus the Rossby servers that use it
as their local DC; the names are the same (``dc1``). The topology is the
list of datacenters with their replication factor. ``rossby migrate``
creates the keyspace from it (NetworkTopologyStrategy), and every server
builds one execution profile per datacenter from it, so a request for a box
homed elsewhere can be coordinated in that box's home DC (docs/replication.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rossby.errors import ConfigError


def valid_dc_name(name: str) -> bool:
    """Cassandra DC names as the snitch reads them; kept to a safe alphabet
    because they are spliced into CQL (the keyspace definition)."""
    return bool(name) and name.replace("_", "").replace("-", "").replace(".", "").isalnum()


def parse_replication(text: str) -> tuple[tuple[str, int], ...]:
    """``dc1:3,dc2:3`` -> (("dc1", 3), ("dc2", 3)), sorted by DC name."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        dc, sep, rf_text = item.partition(":")
        dc = dc.strip()
        if not sep or not valid_dc_name(dc):
            raise ConfigError(f"store: replication wants dc:rf[,dc:rf], got {text!r}")
        try:
            rf = int(rf_text)
        except ValueError:
            raise ConfigError(f"store: bad replication factor in {item!r}") from None
        if rf < 1:
            raise ConfigError(f"store: replication factor must be >= 1 in {item!r}")
        if dc in out:
            raise ConfigError(f"store: datacenter {dc!r} named twice in replication {text!r}")
        out[dc] = rf
    if not out:
        raise ConfigError("store: replication names no datacenter")
    return tuple(sorted(out.items()))


def format_replication(replication: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"{dc}:{rf}" for dc, rf in replication)


@dataclass(frozen=True, slots=True)
class Topology:
    """Where this process stands and which datacenters hold the data."""

    local_dc: str
    replication: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not valid_dc_name(self.local_dc):
            raise ConfigError(f"store: bad local_dc {self.local_dc!r}")

    @property
    def datacenters(self) -> tuple[str, ...]:
        """Every DC a box can be homed in: the replicated ones, and the
        local DC even if the keyspace does not replicate to it (a mistake
        ``check`` reports, but routing must still name it)."""
        dcs = [dc for dc, _ in self.replication]
        if self.local_dc not in dcs:
            dcs.append(self.local_dc)
        return tuple(dcs)

    def rf(self, dc: str) -> int:
        return dict(self.replication).get(dc, 0)

    def knows(self, dc: str) -> bool:
        return dc in self.datacenters

    def check(self) -> None:
        """Refuse a topology a server cannot work with: its own DC must
        hold replicas, or every LOCAL_QUORUM request would fail."""
        if self.rf(self.local_dc) < 1:
            raise ConfigError(
                f"store: local_dc {self.local_dc!r} holds no replicas "
                f"(replication={format_replication(self.replication)})"
            )


def topology_from(local_dc: str | None, replication: str | None) -> Topology:
    """The topology named by a store URL's ``local_dc`` and ``replication``
    (default: one replica in the local DC, a single-region deployment)."""
    dc = local_dc or "dc1"
    topo = Topology(dc, parse_replication(replication or f"{dc}:1"))
    topo.check()
    return topo


def resolve(store: str, region: str, replication: str) -> tuple[str, str]:
    """Reconcile the server settings ``region`` and ``replication`` with a
    Cassandra store URL's ``local_dc`` and ``replication``; answer the
    effective (store URL, region).

    A region is a datacenter: ``--region dc2`` alone sets ``local_dc=dc2``,
    ``local_dc=dc2`` alone sets the region, and the two must agree when both
    are given. ``--replication`` fills in the URL's parameter the same way.
    Other stores keep their URL; their region is only a label.
    """
    if not store.startswith("cassandra://"):
        if replication:
            raise ConfigError("replication: only a Cassandra store is replicated")
        return store, region
    parts = urlsplit(store)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    local_dc = params.get("local_dc", "")
    if region and local_dc and region != local_dc:
        raise ConfigError(
            f"region: {region!r} differs from the store URL's local_dc {local_dc!r} "
            "(a region is its Cassandra datacenter)"
        )
    url_replication = params.get("replication", "")
    if replication and url_replication:
        if parse_replication(replication) != parse_replication(url_replication):
            raise ConfigError(
                f"replication: {replication!r} differs from the store URL's {url_replication!r}"
            )
    region = region or local_dc or "dc1"
    params["local_dc"] = region
    if replication:
        params["replication"] = format_replication(parse_replication(replication))
    topology_from(params["local_dc"], params.get("replication"))  # validate now
    return urlunsplit(parts._replace(query=urlencode(params, safe=":,"))), region


__all__ = [
    "Topology",
    "format_replication",
    "parse_replication",
    "resolve",
    "topology_from",
    "valid_dc_name",
]
