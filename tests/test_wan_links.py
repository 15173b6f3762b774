"""The WAN's pieces without Cassandra: the launcher's layout behind proxies
(config files only) and the Toxiproxy controller against a real
``toxiproxy-server`` (built by ``make toxiproxy-fetch``) in front of a TCP
echo on loopback. The three-region cluster is tests/replication/test_wan.py."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_launcher

launcher = load_launcher()
toxiproxy = launcher.toxiproxy
proxy = sys.modules["wan.proxy"]  # deploy/wan/proxy.py, loaded with the launcher


def _wan_meta(rt: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": launcher.DEFAULT_VERSION,
        "lib": str(rt / "lib"),
        "nodes": 3,
        "first": 40,
        "dcs": 3,
        "heap_min": "256M",
        "heap_max": "512M",
        "cluster_name": "rossby-wan",
        "ring_delay_ms": 5000,
        "wan": {"api": "127.0.2.40:8474", "latency_ms": 40.0, "jitter_ms": 0.0},
    }
    rt.mkdir(parents=True, exist_ok=True)
    (rt / "cluster.json").write_text(json.dumps(meta))
    return meta


def test_three_dcs_round_robin_from_first() -> None:
    assert [launcher.node_dc(i, 3, first=40) for i in range(40, 46)] == [
        "dc1", "dc2", "dc3", "dc1", "dc2", "dc3",
    ]  # fmt: skip
    assert sorted(launcher.balanced_tokens(3, 3, first=40).values()) == [
        -(2**63), -(2**63) + 100, -(2**63) + 200,
    ]  # fmt: skip


def test_a_wan_node_broadcasts_its_proxy_and_seeds_by_proxy(tmp_path: Path) -> None:
    meta = _wan_meta(tmp_path)
    node = launcher._node_from_meta(tmp_path, meta, 41)
    assert (node.dc, node.ip, node.gossip_ip) == ("dc2", "127.0.0.41", "127.0.1.41")
    launcher._write_node_files(tmp_path, meta, node, 0)
    conf = tmp_path / "node41" / "conf"
    yaml = (conf / "cassandra.yaml").read_text()
    assert "listen_address: 127.0.0.41\nbroadcast_address: 127.0.1.41\n" in yaml
    assert "rpc_address: 127.0.0.41" in yaml  # CQL clients bypass the proxies
    assert 'seeds: "127.0.1.40:7000"' in yaml  # the seed as gossip knows it
    assert (conf / "cassandra-rackdc.properties").read_text() == (
        "dc=dc2\nrack=rack1\nprefer_local=true\n"
    )
    links = launcher.wan_links(tmp_path)
    assert links.dcs == {40: "dc1", 41: "dc2", 42: "dc3"}
    assert links.api.base == "http://127.0.2.40:8474"


def test_without_a_wan_nothing_changes(tmp_path: Path) -> None:
    meta = _wan_meta(tmp_path)
    del meta["wan"]
    (tmp_path / "cluster.json").write_text(json.dumps(meta))
    node = launcher._node_from_meta(tmp_path, meta, 41)
    launcher._write_node_files(tmp_path, meta, node, 0)
    yaml = (tmp_path / "node41" / "conf" / "cassandra.yaml").read_text()
    assert "broadcast_address" not in yaml and 'seeds: "127.0.0.40:7000"' in yaml
    rackdc = (tmp_path / "node41" / "conf" / "cassandra-rackdc.properties").read_text()
    assert "prefer_local" not in rackdc
    with pytest.raises(launcher.CassandraError, match="has no WAN"):
        launcher.wan_links(tmp_path)


# -- the controller against a real toxiproxy-server -------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A toxiproxy-server of its own (pid-stopped at the end) and its client."""
    address = f"127.0.0.1:{_free_port('127.0.0.1')}"
    run = tmp_path_factory.mktemp("toxiproxy")
    toxiproxy.start_server(address, run)
    try:
        yield proxy.Toxiproxy(address)
    finally:
        assert toxiproxy.stop_server(address, run)
        assert not toxiproxy.api_answers(address)


@pytest.fixture
def echo() -> Iterator[str]:
    """A TCP echo server on loopback; its host:port."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    srv.close()


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _round_trip(s: socket.socket, data: bytes = b"ping") -> float:
    t0 = time.monotonic()
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(4096)
        assert chunk, "connection closed"
        got += chunk
    assert got == data
    return (time.monotonic() - t0) * 1000


def test_latency_delays_the_stream_it_is_on(api: Any, echo: str) -> None:
    listen = api.create("lat", "127.0.0.1:0", echo)
    try:
        api.put("lat", proxy.latency("l", 60))
        with _connect(listen) as s:
            assert _round_trip(s) >= 60 * 0.95
            api.put("lat", proxy.latency("l", 60, stream="downstream"))  # replaces it
            assert [t["stream"] for t in api.toxics("lat")] == ["downstream"]
            assert _round_trip(s) >= 60 * 0.95
            api.discard("lat", "l")
            api.discard("lat", "l")  # idempotent
            assert api.toxics("lat") == []
    finally:
        api.delete("lat")


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_a_stall_holds_bytes_without_a_reset_and_lets_them_through(api: Any, echo: str) -> None:
    listen = api.create("stall", "127.0.0.1:0", echo)
    try:
        with _connect(listen) as s:
            _round_trip(s)
            api.put("stall", proxy.stall("up", "upstream"))
            s.sendall(b"held")
            s.settimeout(1.0)
            with pytest.raises(TimeoutError):  # neither data nor EOF nor a reset
                s.recv(4096)
            api.remove("stall", "up")
            s.settimeout(5)
            assert s.recv(4096) == b"held"  # the held bytes flow on after heal
            assert _round_trip(s) >= 0  # and the connection goes on
    finally:
        api.delete("stall")


def test_a_blackhole_drops_bytes_without_a_reset_and_a_disable_resets(api: Any, echo: str) -> None:
    listen = api.create("drop", "127.0.0.1:0", echo)
    try:
        with _connect(listen) as s:
            _round_trip(s)
            api.put("drop", proxy.blackhole("up", "upstream"))
            s.sendall(b"lost")
            s.settimeout(1.0)
            with pytest.raises(TimeoutError):  # open, silent
                s.recv(4096)
            api.remove("drop", "up")
            s.settimeout(5)
            assert _closed(s)  # 2.5.0: removing the timeout toxic closes; "lost" never came
        with _connect(listen) as s:
            _round_trip(s)
            api.set_enabled("drop", False)
            s.settimeout(5)
            assert _closed(s)
        api.set_enabled("drop", True)
        with _connect(listen) as s:
            _round_trip(s)
    finally:
        api.delete("drop")


def test_api_errors_say_what_failed(api: Any) -> None:
    with pytest.raises(proxy.ToxiproxyApiError, match="HTTP 404"):
        api.remove("no-such-proxy", "x")
