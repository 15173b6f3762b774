"""The internal Peer service has a port of its own (docs/realtime.md, "Addresses").

The public port serves the public API only, and the Peer port serves Peer
only: before, both services shared every port, so Peer/Notify answered on
the public address and, with ``--workers``, each worker's private port
served the whole public API.
"""

from __future__ import annotations

import grpc
import pytest

from rossby.config import load_settings
from rossby.errors import ConfigError
from tests.api.conftest import Api
from tests.api.device import SERVICE


async def code_of(target: str, path: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            await call(b"", timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_the_public_port_does_not_serve_peer(api: Api) -> None:
    public = f"127.0.0.1:{api.server.port}"
    assert await code_of(public, "/rossby.v1.Peer/Notify") == grpc.StatusCode.UNIMPLEMENTED
    # The same empty request reaches the Peer service on its own port, which
    # refuses it for what it is (no MAC), not as an unknown method.
    assert api.server.service is not None
    peer = api.server.service.realtime.address
    assert peer != public
    assert await code_of(peer, "/rossby.v1.Peer/Notify") != grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("method", ["Register", "Authorize", "Fetch", "Send", "Subscribe"])
async def test_the_peer_port_serves_no_public_method(api: Api, method: str) -> None:
    assert api.server.service is not None
    peer = api.server.service.realtime.address
    assert await code_of(peer, SERVICE + method) == grpc.StatusCode.UNIMPLEMENTED


def test_peer_listen_may_not_be_the_public_address() -> None:
    with pytest.raises(ConfigError, match="peer_listen"):
        load_settings({"listen": "127.0.0.1:1205", "peer_listen": "127.0.0.1:1205"}, environ={})
    with pytest.raises(ConfigError, match="peer_listen"):
        load_settings({"peer_listen": "nonsense"}, environ={})
