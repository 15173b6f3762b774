"""TLS and mutual TLS through real channels, with certificates made here."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rossby.client.channel import make_channel
from rossby.config import load_settings
from rossby.errors import ConfigError
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.certs import CertificateAuthority
from tests.ops.helpers import log_events, migrated_sqlite
from tests.serverproc import ServerProcess, health_status

# TLS sits below the store: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


@dataclass
class Pki:
    ca: CertificateAuthority
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: bytes
    client_key: bytes


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    cert, key = ca.issue("localhost", server=True).write(tmp_path, "server")
    client = ca.issue("device-1", server=False)
    return Pki(ca, ca_file, cert, key, client.cert, client.key)


@dataclass
class _Port:
    port: int


class ChannelApi:
    """``Device`` over a channel of our choosing to an in-process server."""

    def __init__(self, api: Api, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.outbox = api.outbox
        self.server = _Port(api.server.port)
        self.clock: Callable[[], float] = api.clock


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def _refused(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _health(channel)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close()


async def test_tls_serves_the_whole_workflow(make_api: Callable[..., Any], pki: Pki) -> None:
    api: Api = await make_api(tls_cert=pki.server_cert, tls_key=pki.server_key)
    target = f"127.0.0.1:{api.server.port}"
    async with make_channel(target, ca=pki.ca.pem) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        over_tls = ChannelApi(api, channel)
        alice = await Device(over_tls, email("alice")).join()
        bob = await Device(over_tls, email("bob")).join()
        sent = await alice.send((bob.box_id, b"over tls", None))
        assert sent.results[0].outcome == pb.SEND_OUTCOME_QUEUED
        assert [m.ciphertext for m in await bob.drain()] == [b"over tls"]
    # Plaintext to a TLS port, and TLS without trusting the CA, both fail.
    await _refused(grpc.aio.insecure_channel(target))
    await _refused(make_channel(target, tls=True))
    # An explicit server name is checked against the certificate.
    async with make_channel(target, ca=pki.ca.pem, server_name="localhost") as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    await _refused(make_channel(target, ca=pki.ca.pem, server_name="elsewhere.example"))


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    make_api: Callable[..., Any], pki: Pki
) -> None:
    api: Api = await make_api(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca_file
    )
    target = f"127.0.0.1:{api.server.port}"
    async with make_channel(
        target, ca=pki.ca.pem, client_cert=pki.client_cert, client_key=pki.client_key
    ) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        device = await Device(ChannelApi(api, channel), email("carol")).join()
        assert device.box_id is not None
    await _refused(make_channel(target, ca=pki.ca.pem))
    stranger = CertificateAuthority("Some other CA").issue("intruder", server=False)
    await _refused(
        make_channel(target, ca=pki.ca.pem, client_cert=stranger.cert, client_key=stranger.key)
    )


def test_rossby_serve_with_mutual_tls(tmp_path: Path, pki: Pki, backend: str) -> None:
    url = migrated_sqlite(tmp_path)
    tls = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    credentials = grpc.ssl_channel_credentials(pki.ca.pem, pki.client_key, pki.client_cert)
    with ServerProcess(
        tmp_path, url, *tls, "--tls-client-ca", str(pki.ca_file), credentials=credentials
    ) as server:
        serving = [e for e in log_events(server.log) if e["event"] == "serving"]
        assert serving[0]["tls"] == "mutual"
        with pytest.raises(grpc.RpcError):
            health_status(server.target, credentials=grpc.ssl_channel_credentials(pki.ca.pem))
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"tls_cert": "CERT"}, "tls_key"),
        ({"tls_key": "KEY"}, "tls_cert"),
        ({"tls_client_ca": "CA"}, "tls_client_ca"),
        ({"tls_cert": "CERT", "tls_key": "missing.key"}, "tls_key"),
    ],
)
def test_tls_settings_are_checked(
    tmp_path: Path, pki: Pki, flags: dict[str, str], named: str, backend: str
) -> None:
    real = {"CERT": str(pki.server_cert), "KEY": str(pki.server_key), "CA": str(pki.ca_file)}
    values = {k: real.get(v, str(tmp_path / v)) for k, v in flags.items()}
    with pytest.raises(ConfigError, match=f"invalid setting {named}"):
        load_settings(values, environ={})


async def test_sdk_keeps_its_tls_choice_across_opens(
    make_api: Callable[..., Any], pki: Pki, tmp_path: Path
) -> None:
    from rossby.client import RossbyClient
    from rossby.client.state import TlsConfig
    from rossby.contacts import normalize
    from rossby.server.notify import read_outbox_code

    api: Api = await make_api(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca_file
    )
    tls = TlsConfig(ca=pki.ca.pem, client_cert=pki.client_cert, client_key=pki.client_key)
    contacts = {name: email(name) for name in ("alice", "bob")}
    for name, contact in contacts.items():
        async with RossbyClient.create(
            tmp_path / name,
            "pw",
            server=api.target,
            contacts=[contact],
            device_name=name,
            tls=tls,
            scrypt_n=2**10,
        ) as client:
            await client.register()
            code = read_outbox_code(api.outbox, normalize("email", contact))
            assert code is not None
            await client.authorize([code])
    # Later opens read the TLS settings from the encrypted state.
    async with RossbyClient.open(tmp_path / "alice", "pw") as alice:
        report = await alice.send([contacts["bob"]], "over mutual tls")
        assert report.ok
    async with RossbyClient.open(tmp_path / "bob", "pw") as bob:
        texts = [getattr(e, "text", None) async for e in bob.fetch_messages()]
    assert "over mutual tls" in texts
