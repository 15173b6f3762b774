"""Topology and the consistency table, without a cluster."""

from __future__ import annotations

import uuid

import pytest
from cassandra import ConsistencyLevel as CL

from rossby.config import load_settings
from rossby.errors import ConfigError
from rossby.replication.consistency import RULES, Op, Routing, execution_profiles, profile_name
from rossby.replication.homes import HomeCache, HomeRegionUnavailable
from rossby.replication.topology import Topology, parse_replication, resolve, topology_from
from rossby.status import to_grpc_status


def test_replication_parses_sorted_and_refuses_nonsense() -> None:
    assert parse_replication("dc2:3, dc1:3") == (("dc1", 3), ("dc2", 3))
    for bad in ("", "dc1", "dc1:0", "dc1:x", "dc1:1,dc1:2", "d c:1", "dc1:1;drop"):
        with pytest.raises(ConfigError):
            parse_replication(bad)


def test_local_dc_must_hold_replicas() -> None:
    with pytest.raises(ConfigError, match="holds no replicas"):
        topology_from("dc3", "dc1:1,dc2:1")
    topo = topology_from("dc2", "dc1:3,dc2:3")
    assert topo.datacenters == ("dc1", "dc2")
    assert topo.rf("dc2") == 3 and not topo.knows("dc9")


def test_consistency_table() -> None:
    # The queue of a box is coordinated in its home DC at the configured
    # (LOCAL_QUORUM) level; message claims are Paxos rounds inside the home.
    for op in (Op.QUEUE, Op.CURSOR, Op.CLAIM):
        assert RULES[op].routing is Routing.HOME
    assert RULES[Op.CLAIM].serial == CL.LOCAL_SERIAL
    # Global uniqueness: SERIAL, never LOCAL_SERIAL.
    assert RULES[Op.CONTACTS].serial == CL.SERIAL
    assert RULES[Op.REGISTRATIONS].serial == CL.SERIAL
    assert RULES[Op.KEYS].routing is Routing.LOCAL
    assert RULES[Op.EVERYWHERE].consistency == CL.EACH_QUORUM
    # Prekey claims: Paxos among the local replicas on the region's own share.
    assert RULES[Op.PREKEYS].routing is Routing.LOCAL
    assert RULES[Op.PREKEYS].serial == CL.LOCAL_SERIAL


def test_one_profile_per_operation_and_datacenter() -> None:
    topo = Topology("dc2", (("dc1", 1), ("dc2", 1)))
    profiles = execution_profiles(topo, consistency=CL.LOCAL_QUORUM, request_timeout=2.0)
    for op in Op:
        local = profiles[profile_name(op)]
        assert local.load_balancing_policy._child_policy.local_dc == "dc2"
        for dc in ("dc1", "dc2"):
            p = profiles[profile_name(op, dc)]
            assert p.load_balancing_policy._child_policy.local_dc == dc
            assert p.load_balancing_policy._child_policy.used_hosts_per_remote_dc == 0
            assert p.serial_consistency_level == RULES[op].serial
    assert profiles["queue@dc1"].consistency_level == CL.LOCAL_QUORUM
    assert profiles["contacts"].serial_consistency_level == CL.SERIAL
    assert profiles["schema"].request_timeout == 60.0


def test_region_and_local_dc_are_one_setting() -> None:
    url, region = resolve("cassandra://h/ks?settle_ms=5000", "dc2", "dc1:3,dc2:3")
    assert region == "dc2"
    assert "local_dc=dc2" in url and "replication=dc1:3,dc2:3" in url
    assert resolve("cassandra://h/ks?local_dc=dc2", "", "")[1] == "dc2"
    assert resolve("cassandra://h/ks", "", "")[1] == "dc1"
    with pytest.raises(ConfigError, match="differs"):
        resolve("cassandra://h/ks?local_dc=dc2", "dc1", "")
    with pytest.raises(ConfigError, match="differs"):
        resolve("cassandra://h/ks?replication=dc1:1", "", "dc1:3")
    with pytest.raises(ConfigError, match="only a Cassandra store"):
        resolve("sqlite:///x.db", "", "dc1:1")
    settings = load_settings(
        {"store": "cassandra://127.0.0.2/ks", "region": "dc2", "replication": "dc2:1,dc1:1"},
        environ={},
    )
    assert settings.region == "dc2"
    assert "local_dc=dc2" in settings.store and "replication=dc1:1,dc2:1" in settings.store
    with pytest.raises(ConfigError, match="invalid setting region"):
        load_settings({"store": "cassandra://h/ks?local_dc=dc1", "region": "dc2"}, environ={})


def test_home_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache = HomeCache(seconds=10, entries=2, clock=lambda: now[0])
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(a, "dc1")
    cache.put(b, "dc2")
    assert cache.get(a) == "dc1"
    cache.put(c, "dc1")  # evicts the oldest entry
    assert cache.get(a) is None and cache.get(b) == "dc2"
    now[0] = 11
    assert cache.get(b) is None


def test_home_unavailable_is_a_retryable_status_naming_the_region() -> None:
    err = HomeRegionUnavailable("dc2", "NoHostAvailable", applied=False)
    assert err.reason == "HOME_REGION_UNAVAILABLE" and err.applied is False
    status = to_grpc_status(err)
    assert status.code.name == "UNAVAILABLE"
    assert err.metadata == {"home_region": "dc2"}
