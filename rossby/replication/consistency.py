"""One table: each kind of store operation -> consistency, serial
consistency, and where it is coordinated (this server's DC or the box's
home DC). docs/replication.md explains every row; the Cassandra store only
ever names an ``Op`` and, for home-routed ones, the box's home DC.

Each (operation, datacenter) pair becomes one driver execution profile
named ``op@dc`` whose ``TokenAwarePolicy(DCAwareRoundRobinPolicy(dc))``
picks a replica of that DC as coordinator; ``LOCAL_*`` levels are then
relative to that DC. A profile named after the bare operation (``queue``)
is routed to the server's own DC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import dict_factory

from rossby.replication.topology import Topology

SCHEMA_TIMEOUT = 60.0


class Op(enum.StrEnum):
    QUEUE = "queue"  # message rows: enqueue, fetch, compaction deletes, counts
    CLAIM = "claim"  # (box, message id) -> position claims: LWT
    CURSOR = "cursor"  # the box partition as queue ops see it: cursors, purge mark, devices
    KEYS = "keys"  # boxes, devices, public keys, profiles (reads and key/profile writes)
    CONTACTS = "contacts"  # contact -> box claims: LWT, globally unique
    REGISTRATIONS = "registrations"  # pending registrations: LWT
    NONCES = "nonces"  # Hawk nonces: write then read, in this server's DC
    PREKEYS = (
        "prekeys"  # prekeys: plain writes; claims LWT at LOCAL_SERIAL on the own region's share
    )
    EVERYWHERE = "everywhere"  # written in every DC at once: home moves, schema versions
    SCHEMA = "schema"  # DDL and schema_version


class Routing(enum.StrEnum):
    LOCAL = "local"  # a coordinator in this server's DC
    HOME = "home"  # a coordinator in the box's home DC (one WAN RTT from elsewhere)


@dataclass(frozen=True, slots=True)
class Rule:
    routing: Routing
    #: None: the store URL's ``consistency`` (LOCAL_QUORUM by default).
    consistency: int | None
    serial: int | None = None
    timeout: float | None = None  # None: the store's request timeout


CL = ConsistencyLevel

RULES: dict[Op, Rule] = {
    Op.QUEUE: Rule(Routing.HOME, None),
    Op.CLAIM: Rule(Routing.HOME, None, serial=CL.LOCAL_SERIAL),
    Op.CURSOR: Rule(Routing.HOME, None),
    Op.KEYS: Rule(Routing.LOCAL, None),
    Op.CONTACTS: Rule(Routing.LOCAL, None, serial=CL.SERIAL),
    Op.REGISTRATIONS: Rule(Routing.LOCAL, None, serial=CL.SERIAL),
    Op.NONCES: Rule(Routing.LOCAL, None),
    Op.PREKEYS: Rule(Routing.LOCAL, None, serial=CL.LOCAL_SERIAL),
    Op.EVERYWHERE: Rule(Routing.LOCAL, CL.EACH_QUORUM),
    Op.SCHEMA: Rule(Routing.LOCAL, None, timeout=SCHEMA_TIMEOUT),
}


def profile_name(op: Op, dc: str | None = None) -> str:
    """``queue`` (this server's DC) or ``queue@dc2`` (coordinated in dc2)."""
    return op.value if dc is None else f"{op.value}@{dc}"


def routing(dc: str) -> Any:
    """Coordinators in ``dc``, replicas first. No remote fallback
    (``used_hosts_per_remote_dc=0``): a request for a dead DC fails at once
    instead of being coordinated somewhere its ``LOCAL_*`` level means
    something else. One policy object per profile (the driver keeps
    per-policy host state)."""
    return TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=dc))


def execution_profiles(
    topology: Topology, *, consistency: int, request_timeout: float
) -> dict[Any, ExecutionProfile]:
    """Every profile the store may name: each operation in the local DC,
    and each operation in every DC of the topology."""

    def build(rule: Rule, dc: str) -> ExecutionProfile:
        return ExecutionProfile(
            load_balancing_policy=routing(dc),
            consistency_level=rule.consistency if rule.consistency is not None else consistency,
            serial_consistency_level=rule.serial,
            request_timeout=rule.timeout if rule.timeout is not None else request_timeout,
            # Every row is read by column name, one style for every table.
            row_factory=dict_factory,
        )

    local = topology.local_dc
    profiles: dict[Any, ExecutionProfile] = {
        EXEC_PROFILE_DEFAULT: build(RULES[Op.KEYS], local),
    }
    for op, rule in RULES.items():
        profiles[profile_name(op)] = build(rule, local)
        for dc in topology.datacenters:
            profiles[profile_name(op, dc)] = build(rule, dc)
    return profiles


def describe() -> list[tuple[str, str, str, str]]:
    """(operation, consistency, serial, routing) rows, for docs and tests."""
    out = []
    for op, rule in RULES.items():
        cl = "configured" if rule.consistency is None else CL.value_to_name[rule.consistency]
        serial = CL.value_to_name[rule.serial] if rule.serial is not None else "-"
        out.append((op.value, cl, serial, rule.routing.value))
    return out


__all__ = ["RULES", "Op", "Routing", "Rule", "describe", "execution_profiles", "profile_name"]
