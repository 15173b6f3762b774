"""Per-method request size limits (rossby.server.sizes), through a real channel.

Every method of both services, taken from the service descriptors so a new
RPC cannot be forgotten, refuses one byte over its limit with
RESOURCE_EXHAUSTED ``REQUEST_TOO_LARGE`` before Hawk or parsing, and does
not refuse for size at exactly its limit. The payload is a well-formed
message (one large unknown field), so without the check it would parse.
The server runs with small ``max_recipients``/``max_message_bytes`` so the
largest limit (Send) stays small enough to send in a test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.crypto.prekeys import PrekeyKind
from rossby.server.sizes import PEER, REASON, ROSSBY, max_receive_bytes, request_limits
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.api.prekeys import kem, one_time, signed, upload

METHODS = [(s.full_name, m.name, m.server_streaming) for s in (ROSSBY, PEER) for m in s.methods]
SETTINGS = {"max_recipients": 4, "max_message_bytes": 2048}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def unknown_field_message(total: int) -> bytes:
    """A valid protobuf message of exactly ``total`` bytes: field 1000, bytes."""
    tag = _varint((1000 << 3) | 2)
    body = total - len(tag) - 1
    while len(tag) + len(_varint(body)) + body != total:
        body -= 1
    return tag + _varint(body) + b"\x00" * body


async def call_raw(api: Api, path: str, streaming: bool, payload: bytes) -> grpc.aio.AioRpcError:
    """Call ``path`` on the port that serves it: Peer has a port of its own."""
    peer = path.startswith(f"/{PEER.full_name}/")
    assert api.server.service is not None, "the server has started"
    target = api.server.service.realtime.address if peer else api.target
    async with grpc.aio.insecure_channel(target) as channel:
        if streaming:
            stream = channel.unary_stream(path)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stream(payload, timeout=30):
                    pass
        else:
            unary = channel.unary_unary(path)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary(payload, timeout=30)
    return caught.value


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("service", "method", "streaming"), METHODS)
async def test_every_method_refuses_a_request_over_its_limit(
    make_api: Callable[..., Any], service: str, method: str, streaming: bool
) -> None:
    api: Api = await make_api(**SETTINGS)
    path = f"/{service}/{method}"
    limit = request_limits(api.server.settings)[path]
    assert limit < 64 * 1024 or method in ("Send", "Notify", "UploadPrekeys")

    over = await call_raw(api, path, streaming, unknown_field_message(limit + 1))
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, over.details()
    info = error_info(over)
    assert info is not None and info.reason == REASON, over.details()
    assert info.metadata["max"] == str(limit)

    at = await call_raw(api, path, streaming, unknown_field_message(limit))
    info = error_info(at)
    assert info is None or info.reason != REASON  # refused later, for another reason


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_full_group_send_fits_its_limit(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(**SETTINGS)
    alice = await Device(api, email("alice")).join()
    others = [await Device(api, email(f"p{i}")).join() for i in range(SETTINGS["max_recipients"])]
    body = b"\xff" * SETTINGS["max_message_bytes"]
    reply = await alice.send(*((o.box_id, body, uuid.uuid4()) for o in others))
    assert {r.outcome for r in reply.results} == {pb.SEND_OUTCOME_QUEUED}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_full_prekey_upload_fits_its_limit(make_api: Callable[..., Any]) -> None:
    """``prekey_pool_max`` keys of each kind, each the largest it can be
    (key ids above 2^28 take five bytes), plus both replaceable keys: the
    upload a client makes when both pools are empty."""
    api: Api = await make_api(**SETTINGS)
    alice = await Device(api, email("alice")).join()
    top = 2**32 - 1
    n = api.server.settings.prekey_pool_max
    request = pb.UploadPrekeysRequest(
        signed_prekey=signed(alice, PrekeyKind.SIGNED, top),
        one_time_prekeys=one_time(top - n + 1, n),
        one_time_kem_prekeys=kem(alice, top - n + 1, n),
        last_resort_kem_prekey=signed(alice, PrekeyKind.LAST_RESORT_KEM, top),
        replace_pools=True,
    )
    limit = request_limits(api.server.settings)["/rossby.v1.Rossby/UploadPrekeys"]
    assert request.ByteSize() <= limit < request.ByteSize() * 1.05  # fits, and no more
    status = await upload(alice, request)
    assert (status.one_time_prekeys, status.one_time_kem_prekeys) == (n, n)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_beyond_the_server_wide_cap_grpc_refuses_by_itself(
    make_api: Callable[..., Any],
) -> None:
    """gRPC's own limit (the largest method's need plus a margin) still
    applies first: more than that never reaches a handler."""
    api: Api = await make_api(**SETTINGS)
    cap = max_receive_bytes(api.server.settings)
    path = "/rossby.v1.Rossby/Register"
    err = await call_raw(api, path, False, unknown_field_message(cap + 1))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err) is None
