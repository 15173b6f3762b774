"""The Cassandra launcher's cluster layout, without starting Java: node indexes
from ``first``, seeds, DCs, tokens, and what ``cluster.json`` makes of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import load_launcher

launcher = load_launcher()


def _cluster(rt: Path, nodes: int, first: int | None, dcs: int = 1) -> dict[str, Any]:
    """A cluster.json as ``start`` writes it (``first`` None: an older file)."""
    meta: dict[str, Any] = {
        "version": launcher.DEFAULT_VERSION,
        "lib": str(rt / "lib"),
        "nodes": nodes,
        "dcs": dcs,
        "heap_min": "256M",
        "heap_max": "1G",
        "cluster_name": "rossby",
        "ring_delay_ms": 5000,
    }
    if first is not None:
        meta["first"] = first
    rt.mkdir(parents=True, exist_ok=True)
    (rt / "cluster.json").write_text(json.dumps(meta))
    return meta


def test_default_layout_is_unchanged() -> None:
    assert launcher.balanced_tokens(3, 1) == launcher.balanced_tokens(3, 1, first=1)
    assert sorted(launcher.balanced_tokens(2, 2)) == [1, 2]
    assert [launcher.node_dc(i, 2) for i in (1, 2, 3)] == ["dc1", "dc2", "dc1"]
    assert [launcher.jmx_port(i) for i in (1, 2, 3)] == [7199, 7299, 7399]
    yaml = launcher.render_yaml(cluster_name="c", node_dir=Path("/n"), ip="127.0.0.2", token=0)
    assert 'seeds: "127.0.0.1:7000"' in yaml


def test_first_shifts_indexes_tokens_and_dcs() -> None:
    shifted = launcher.balanced_tokens(3, 1, first=3)
    assert sorted(shifted) == [3, 4, 5]
    assert list(shifted.values()) == list(launcher.balanced_tokens(3, 1).values())
    two = launcher.balanced_tokens(4, 2, first=3)
    assert [launcher.node_dc(i, 2, first=3) for i in (3, 4, 5, 6)] == ["dc1", "dc2", "dc1", "dc2"]
    assert two == {i + 2: t for i, t in launcher.balanced_tokens(4, 2).items()}
    assert two == {3: -(2**63), 4: -(2**63) + 100, 5: 0, 6: 100}


def test_rendered_config_of_a_shifted_cluster(tmp_path: Path) -> None:
    meta = _cluster(tmp_path, nodes=3, first=3)
    node = launcher.Node(index=4, dir=tmp_path / "node4", dc="dc1")
    launcher._write_node_files(tmp_path, meta, node, 42)
    yaml = (tmp_path / "node4" / "conf" / "cassandra.yaml").read_text()
    assert 'seeds: "127.0.0.3:7000"' in yaml  # the first node, not 127.0.0.1
    assert "listen_address: 127.0.0.4" in yaml and "rpc_address: 127.0.0.4" in yaml
    assert "initial_token: '42'" in yaml
    assert node.jmx_port == 7499
    assert f"-Dcassandra.jmx.local.port={node.jmx_port}" in launcher._java_cmd(meta, node)


def test_cluster_json_keeps_first_for_node_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cluster(tmp_path, nodes=3, first=3)
    rows = launcher.status(tmp_path)
    assert [(r["node"], r["ip"], r["dc"], r["running"]) for r in rows] == [
        (3, "127.0.0.3", "dc1", False),
        (4, "127.0.0.4", "dc1", False),
        (5, "127.0.0.5", "dc1", False),
    ]
    with pytest.raises(ValueError, match=r"node 1 not in 3\.\.5"):
        launcher.start_node(tmp_path, 1)
    with pytest.raises(launcher.CassandraError, match=r"no conf/cassandra\.yaml"):
        launcher.start_node(tmp_path, 5)  # a valid index: it gets as far as the node dir
    assert launcher.main(["--dir", str(tmp_path), "status"]) == 3
    assert capsys.readouterr().out.splitlines() == [
        "node3 127.0.0.3 dc1 DOWN",
        "node4 127.0.0.4 dc1 DOWN",
        "node5 127.0.0.5 dc1 DOWN",
    ]


def test_cluster_json_without_first_means_1(tmp_path: Path) -> None:
    _cluster(tmp_path, nodes=2, first=None, dcs=2)
    assert [(n.index, n.ip, n.dc) for n in launcher.nodes(tmp_path)] == [
        (1, "127.0.0.1", "dc1"),
        (2, "127.0.0.2", "dc2"),
    ]


def test_first_is_bounded() -> None:
    for first in (0, launcher.MAX_INDEX - 1):
        with pytest.raises(ValueError, match="first must be"):
            launcher.start(nodes=3, first=first, dir="/nonexistent/never-created")


def test_default_yaml_has_no_login_or_tls(tmp_path: Path) -> None:
    text = launcher.render_yaml(cluster_name="c", node_dir=tmp_path, ip="127.0.0.9", token=0)
    assert "authenticator: AllowAllAuthenticator" in text
    assert "client_encryption_options" not in text


def test_secure_yaml_requires_login_and_tls(tmp_path: Path) -> None:
    tls = {"keystore": str(tmp_path / "node9.pem"), "truststore": str(tmp_path / "ca.pem")}
    text = launcher.render_yaml(
        cluster_name="c", node_dir=tmp_path, ip="127.0.0.9", token=0, auth=True, tls=tls
    )
    assert "authenticator: PasswordAuthenticator" in text
    assert "authorizer: CassandraAuthorizer" in text
    assert "  enabled: true\n  optional: false\n" in text
    assert "PEMBasedSslContextFactory" in text and "require_client_auth: true" in text


def test_make_tls_issues_node_certificates_for_their_addresses(tmp_path: Path) -> None:

    launcher.make_tls(tmp_path, [6, 7], client_auth=True)
    for i in (6, 7):
        pem = (tmp_path / f"node{i}.pem").read_bytes()
        assert b"BEGIN PRIVATE KEY" in pem  # unencrypted: Cassandra's PEMReader needs it
        cert = x509.load_pem_x509_certificates(pem)[0]
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"127.0.0.{i}" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert (tmp_path / "client.pem").is_file() and (
        tmp_path / "client.key"
    ).stat().st_mode & 0o077 == 0
