"""Cassandra with login and TLS (docs/configuration.md, "Cassandra login and TLS").

Its own one-node cluster, started by the project's launcher with
``PasswordAuthenticator`` and client encryption that requires a client
certificate (``auth=True, tls_client_auth=True``): node index
``ROSSBY_CASSANDRA_SECURE_INDEX`` (default 6, i.e. 127.0.0.6) in
``var/test-cassandra-secure``, stopped at the end of the module. Rossby logs
in as a role of its own, not the superuser.

* Right login, CA and client certificate: ``migrate`` and the store work.
* Wrong password, no login, no TLS, no client certificate, a CA that did not
  sign the nodes: each refused with a typed error and a reason naming the
  problem, and ``rossby migrate`` / ``rossby serve`` exit 1 with one line,
  no stack trace, the password nowhere in it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from rossby.errors import StoreUnavailable
from rossby.store import Box, Connection, Device, DeviceKeys, DeviceState, StoreOptions, open_store
from rossby.store.cassandra.driver import PROTOCOL_VERSION, ssl_context
from tests.certs import CertificateAuthority
from tests.conftest import ROOT, cassandra_url, load_launcher
from tests.serverproc import rossby

pytestmark = [pytest.mark.cassandra]

RUN_DIR = ROOT / "var" / "test-cassandra-secure"
INDEX = int(os.environ.get("ROSSBY_CASSANDRA_SECURE_INDEX", "6"))
KEYSPACE = "rossby_secure"
USER, PASSWORD = "rossby", "s3cret-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Secure:
    url: str
    tls: Path
    right: Connection


def log(msg: str) -> None:
    print(msg, flush=True)


@pytest.fixture(scope="module")
def secure() -> Iterator[Secure]:
    launcher = load_launcher()
    try:
        try:
            nodes = launcher.start(
                nodes=1,
                dir=RUN_DIR,
                first=INDEX,
                cluster_name="rossby-secure",
                auth=True,
                tls_client_auth=True,
                log=log,
            )
        except Exception as exc:  # fail loudly, like the session fixture
            pytest.fail(f"could not start the secure Cassandra: {exc}", pytrace=False)
        tls = RUN_DIR / "tls"
        superuser = Connection(
            "cassandra",
            "cassandra",
            tls_ca=str(tls / "ca.pem"),
            tls_cert=str(tls / "client.pem"),
            tls_key=str(tls / "client.key"),
        )
        _create_role(nodes[0].ip, superuser)
        right = Connection(
            USER,
            PASSWORD,
            tls_ca=superuser.tls_ca,
            tls_cert=superuser.tls_cert,
            tls_key=superuser.tls_key,
        )
        yield Secure(
            cassandra_url([f"{nodes[0].ip}:9042"], KEYSPACE, replication="dc1:1"), tls, right
        )
    finally:
        launcher.stop(RUN_DIR, log=log)


def _create_role(host: str, superuser: Connection) -> None:
    """A login role for Rossby that may create its keyspace (and, as its
    creator, owns it), rather than running as the superuser."""
    cluster = Cluster(
        [host],
        protocol_version=PROTOCOL_VERSION,
        auth_provider=PlainTextAuthProvider(superuser.username, superuser.password),
        ssl_context=ssl_context(superuser),
    )
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE ROLE IF NOT EXISTS {USER} WITH PASSWORD = %s AND LOGIN = true", (PASSWORD,)
        )
        session.execute(f"GRANT CREATE ON ALL KEYSPACES TO {USER}")
    finally:
        cluster.shutdown()


def device(box_id: uuid.UUID) -> Device:
    return Device(
        box_id=box_id,
        device_id=uuid.uuid4(),
        name="phone",
        keys=DeviceKeys(os.urandom(32), os.urandom(32), os.urandom(64)),
        hawk_key=os.urandom(65),
        state=DeviceState.ACTIVE,
        created_at=time.time(),
    )


async def test_login_over_tls_with_a_client_certificate_works(secure: Secure) -> None:
    async with open_store(secure.url, StoreOptions(connection=secure.right)) as store:
        assert await store.migrate() >= 6
        await store.check_schema()
        box = Box(uuid.uuid4(), "dc1", time.time())
        first = device(box.box_id)
        await store.create_box(box, first)
        got = await store.get_device(box.box_id, first.device_id)
        assert got is not None and got.hawk_key == first.hawk_key


def _replace(base: Connection, **changes: Any) -> Connection:
    fields: dict[str, Any] = {
        "username": base.username,
        "password": base.password,
        "tls_ca": base.tls_ca,
        "tls_cert": base.tls_cert,
        "tls_key": base.tls_key,
        "tls_check_hostname": base.tls_check_hostname,
    }
    return Connection(**{**fields, **changes})


async def refusal(secure: Secure, connection: Connection) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as caught:
        async with open_store(secure.url, StoreOptions(connection=connection)) as store:
            await store.ping()
    assert caught.value.applied is False
    assert PASSWORD not in str(caught.value)
    return caught.value


async def test_a_wrong_password_is_a_login_error(secure: Secure) -> None:
    err = await refusal(secure, _replace(secure.right, password="wrong"))
    assert err.reason == "STORE_AUTH_FAILED" and "cassandra_password" in str(err)


async def test_no_login_is_a_login_error(secure: Secure) -> None:
    err = await refusal(secure, _replace(secure.right, username="", password=""))
    assert err.reason == "STORE_AUTH_FAILED"


async def test_plaintext_is_refused_and_the_error_says_tls(secure: Secure) -> None:
    err = await refusal(secure, _replace(secure.right, tls_ca="", tls_cert="", tls_key=""))
    assert err.reason == "STORE_UNAVAILABLE" and "cassandra_tls_ca" in str(err)


async def test_no_client_certificate_is_a_tls_error(secure: Secure) -> None:
    err = await refusal(secure, _replace(secure.right, tls_cert="", tls_key=""))
    # The node drops the handshake without a certificate: a TLS error, or a
    # reset seen after it; either way not a login problem.
    assert err.reason in ("STORE_TLS_FAILED", "STORE_UNAVAILABLE"), err
    assert err.reason != "STORE_AUTH_FAILED"


async def test_a_ca_that_did_not_sign_the_nodes_is_a_tls_error(
    secure: Secure, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(CertificateAuthority("not the cluster's CA").pem)
    err = await refusal(secure, _replace(secure.right, tls_ca=str(other)))
    assert err.reason == "STORE_TLS_FAILED" and "cassandra_tls_ca" in str(err), err


def _flags(secure: Secure, tmp_path: Path, password: str) -> tuple[list[str], dict[str, str]]:
    pw = tmp_path / "password"
    pw.write_text(password + "\n")
    env = {
        "ROSSBY_CASSANDRA_USERNAME": USER,
        "ROSSBY_CASSANDRA_PASSWORD_FILE": str(pw),
        "ROSSBY_CASSANDRA_TLS_CA": secure.right.tls_ca,
        "ROSSBY_CASSANDRA_TLS_CERT": secure.right.tls_cert,
        "ROSSBY_CASSANDRA_TLS_KEY": secure.right.tls_key,
    }
    return ["--store", secure.url, "--state-dir", str(tmp_path / "state")], env


def test_rossby_migrate_logs_in_from_settings_and_files(secure: Secure, tmp_path: Path) -> None:
    flags, env = _flags(secure, tmp_path, PASSWORD)
    done = rossby("migrate", *flags, env=env, timeout=180)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_wrong_password_stops_the_command_with_one_line(
    secure: Secure, tmp_path: Path, command: str
) -> None:
    flags, env = _flags(secure, tmp_path, "wrong")
    extra = ["--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"]
    done = rossby(command, *flags, *(extra if command == "serve" else []), env=env, timeout=180)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("rossby:")]
    assert len(lines) == 1 and "(STORE_AUTH_FAILED)" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "wrong" not in lines[0]
