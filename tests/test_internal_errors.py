"""Unexpected exceptions answer a bare INTERNAL: no trace, no text."""

from __future__ import annotations

import grpc
import pytest

from rossby import errors
from rossby.hawk import HawkVerifier, NonceCache
from rossby.server.auth import HawkAuth
from rossby.server.service import abort_with_error
from rossby.status import error_info, from_rpc_error
from rossby.v1 import rossby_pb2 as pb


async def _nokey(_: str) -> bytes | None:
    return None


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (RuntimeError("secret detail /etc/passwd"), grpc.StatusCode.INTERNAL, None),
        (errors.RossbyError("store bug: secret detail"), grpc.StatusCode.INTERNAL, None),
        (
            errors.NotFound("no such thing", reason="NOT_FOUND"),
            grpc.StatusCode.NOT_FOUND,
            "NOT_FOUND",
        ),
    ],
)
async def test_error_hook(exc: Exception, code: grpc.StatusCode, reason: str | None) -> None:
    async def handler(request: pb.RegisterRequest, context: object) -> pb.RegisterResponse:
        raise exc

    verifier = HawkVerifier(_nokey, host="127.0.0.1", port=1, nonce_cache=NonceCache())
    auth = HawkAuth(verifier, service="rossby.v1.Rossby", on_error=abort_with_error)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "rossby.v1.Rossby",
                {"Register": auth.public_unary(handler, pb.RegisterRequest, pb.RegisterResponse)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/rossby.v1.Rossby/Register",
                request_serializer=pb.RegisterRequest.SerializeToString,
                response_deserializer=pb.RegisterResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(pb.RegisterRequest(), timeout=10)
    finally:
        await server.stop(0)
    err = caught.value
    assert err.code() == code
    assert "secret" not in (err.details() or "") and "Traceback" not in (err.details() or "")
    info = error_info(err)
    if reason is None:
        assert err.details() == "internal error" and info is None
    else:
        assert info is not None and info.reason == reason
        assert isinstance(from_rpc_error(err), errors.NotFound)
