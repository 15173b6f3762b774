"""Per-method request size limits, checked on the raw bytes before anything else.

gRPC has one receive limit for the whole server
(``grpc.max_receive_message_length``), and it must admit the largest valid
request: a full group Send, tens of MiB with the default settings. Without
more, every method would accept a message that large, including the
unauthenticated ones (Register, Authorize, JoinLink, CompleteLink) and the
peer service, and parse (or hash, for Hawk) all of it. So each method also
gets a limit sized to what it carries, derived from the settings
(``request_limits``), and ``limit_size`` wraps its handler so a larger
request is refused with RESOURCE_EXHAUSTED ``REQUEST_TOO_LARGE`` before
Hawk, parsing or any store call.

Every handler here is registered without a request deserializer (Hawk and
the peer MAC need the exact bytes), so the wrapper sees the raw request and
its length costs nothing. The server-wide limit stays at the largest
method's need (``max_receive_bytes``): gRPC core has no per-method receive
limit, so one request up to that size is still received into memory before
a handler can refuse it; what the check saves is the parse, the Hawk hash,
and every copy made after them.

The table covers the service descriptors exactly: a new RPC without a limit
makes ``request_limits`` fail, so the server does not start and the
parametrized test in tests/api/test_request_size.py fails.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from rossby import errors
from rossby.config import Settings
from rossby.contacts import MAX_CONTACT_LENGTH
from rossby.v1 import peer_pb2, rossby_pb2

ErrorHook = Callable[[Exception, Any], Awaitable[object]]

REASON: Final = "REQUEST_TOO_LARGE"

#: A request of ids, keys, signatures, codes, a limit or two and short text:
#: the largest of those (RotateKeys, ApproveLink) is well under 1 KiB.
SMALL: Final = 4 * 1024
#: One Contact: a kind and up to MAX_CONTACT_LENGTH characters, each at most
#: four UTF-8 bytes, plus framing.
CONTACT_BYTES: Final = 4 * MAX_CONTACT_LENGTH + 16
#: One Authorize code: six digits, plus framing (room for a longer format).
CODE_BYTES: Final = 16
#: UpdateProfile: display name 64, description 280, avatar reference 512
#: characters (rossby.server.accounts), up to four UTF-8 bytes each.
PROFILE_BYTES: Final = SMALL + 4 * (64 + 280 + 512)
#: Per OutgoingMessage beyond its ciphertext: recipient and message id
#: (36-character UUIDs) and framing, well under this.
MESSAGE_OVERHEAD: Final = 256
#: Peer/Notify: per BoxWake (a box id and two positions, framed) and per
#: ephemeral delivery beyond its ciphertext (four ids, a time, framing).
WAKE_BYTES: Final = 80
EPHEMERAL_OVERHEAD: Final = 512
#: How a peer batches (rossby.server.realtime.peer imports these, so sender
#: and receiver cannot drift apart): at most this many box wakes per Notify,
#: and ephemeral messages up to this many bytes (or one larger message).
PEER_MAX_WAKES: Final = 2000
PEER_EPHEMERAL_BUDGET: Final = 256 * 1024

#: UploadPrekeys, per key at its largest: a SignedPrekey of an ML-KEM-768 key
#: (a five-byte id, the 1,184-byte key, a 64-byte signature, framing: 1,263
#: bytes) and a OneTimePrekey (id, 32-byte key, framing: 42 bytes), rounded up.
SIGNED_KEM_PREKEY_BYTES: Final = 1270
ONE_TIME_PREKEY_BYTES: Final = 48
#: ClaimPrekeys, per named device id (a 36-character UUID, framed).
CLAIM_DEVICE_BYTES: Final = 40
#: Device ids one ClaimPrekeys may name (rossby.server.prekeys imports it);
#: a box with more is claimed whole (``device_ids`` empty) or in parts.
MAX_CLAIM_DEVICES: Final = 100

ROSSBY: Final = rossby_pb2.DESCRIPTOR.services_by_name["Rossby"]
PEER: Final = peer_pb2.DESCRIPTOR.services_by_name["Peer"]


def send_bytes(settings: Settings) -> int:
    """A full group Send: ``max_recipients`` messages of ``max_message_bytes``."""
    per_message = settings.max_message_bytes + MESSAGE_OVERHEAD
    return settings.max_recipients * per_message + SMALL


def upload_prekeys_bytes(settings: Settings) -> int:
    """A full UploadPrekeys: ``prekey_pool_max`` keys of each one-time kind
    plus the signed and the last-resort prekey (270 KB by default)."""
    per_pool = settings.prekey_pool_max * (SIGNED_KEM_PREKEY_BYTES + ONE_TIME_PREKEY_BYTES)
    return SMALL + per_pool + 2 * SIGNED_KEM_PREKEY_BYTES


def notify_bytes(settings: Settings, *, max_wakes: int, ephemeral_budget: int) -> int:
    """What a peer puts in one Notify (rossby.server.realtime.peer): at most
    ``max_wakes`` wakes and ephemeral messages up to ``ephemeral_budget``
    bytes, or a single one larger than that."""
    one = settings.max_message_bytes + EPHEMERAL_OVERHEAD
    return SMALL + max_wakes * WAKE_BYTES + max(ephemeral_budget, one) + one


def _limits(settings: Settings, *, max_wakes: int, ephemeral_budget: int) -> dict[str, int]:
    """The table, checked against the service descriptors."""
    contacts = settings.max_contacts
    rossby = {
        "Register": SMALL + contacts * CONTACT_BYTES,
        "Authorize": SMALL + contacts * CODE_BYTES,
        "JoinLink": SMALL,
        "CompleteLink": SMALL,
        "RequestKey": SMALL + CONTACT_BYTES,
        "Send": send_bytes(settings),
        "Fetch": SMALL,
        "Ack": SMALL,
        "Subscribe": SMALL,
        "CreateLinkOffer": SMALL,
        "GetLinkOffer": SMALL,
        "ApproveLink": SMALL,
        "RevokeDevice": SMALL,
        "RotateKeys": SMALL,
        "KeyLog": SMALL,
        "AddContact": SMALL + CONTACT_BYTES,
        "VerifyContact": SMALL + CONTACT_BYTES,
        "RemoveContact": SMALL + CONTACT_BYTES,
        "GetProfile": SMALL,
        "UpdateProfile": PROFILE_BYTES,
        "SetSenderRule": SMALL,
        "ListSenderRules": SMALL,
        "UploadPrekeys": upload_prekeys_bytes(settings),
        "GetPrekeyStatus": SMALL,
        "ClaimPrekeys": SMALL + MAX_CLAIM_DEVICES * CLAIM_DEVICE_BYTES,
        "GetPushConfig": SMALL,
        "SetPushTarget": SMALL,
        "ClearPushTarget": SMALL,
    }
    peer = {
        "Notify": notify_bytes(settings, max_wakes=max_wakes, ephemeral_budget=ephemeral_budget)
    }
    out: dict[str, int] = {}
    for service, table in ((ROSSBY, rossby), (PEER, peer)):
        names = {m.name for m in service.methods}
        if names != set(table):
            missing, extra = sorted(names - set(table)), sorted(set(table) - names)
            raise AssertionError(
                f"request size table out of date for {service.full_name}: "
                f"missing {missing}, unknown {extra}"
            )
        for name, size in table.items():
            out[f"/{service.full_name}/{name}"] = size
    return out


def request_limits(settings: Settings) -> dict[str, int]:
    """Full method path -> the largest request it accepts, in bytes."""
    return _limits(settings, max_wakes=PEER_MAX_WAKES, ephemeral_budget=PEER_EPHEMERAL_BUDGET)


def max_receive_bytes(settings: Settings) -> int:
    """The public server's gRPC receive limit (Peer has a server of its own,
    rossby.server.realtime): the largest method's need, plus
    ``SMALL`` so that a request a little over even the largest method's
    limit still gets the typed answer. Beyond this gRPC refuses by itself
    (RESOURCE_EXHAUSTED too, without an ErrorInfo)."""
    prefix = f"/{ROSSBY.full_name}/"
    return max(v for k, v in request_limits(settings).items() if k.startswith(prefix)) + SMALL


def too_large(limit: int) -> errors.ResourceExhausted:
    return errors.ResourceExhausted(
        f"request larger than this method accepts ({limit} bytes)",
        reason=REASON,
        metadata={"max": str(limit)},
    )


def limit_size(
    handler: grpc.RpcMethodHandler, limit: int, on_error: ErrorHook
) -> grpc.RpcMethodHandler:
    """``handler`` refusing requests over ``limit`` bytes through ``on_error``.

    Only for handlers registered without a request deserializer (the
    behavior receives the raw bytes): a deserializer would parse first.
    """
    if handler.request_deserializer is not None:
        raise ValueError("limit_size needs a handler that receives the raw request")
    unary = handler.unary_unary
    if unary is not None:

        async def unary_behavior(raw: bytes, context: Any) -> Any:
            if len(raw) > limit:
                await on_error(too_large(limit), context)
                raise too_large(limit)  # the hook aborts; this is only reached without one
            return await unary(raw, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_behavior, response_serializer=handler.response_serializer
        )
    stream = handler.unary_stream
    if stream is None:
        raise ValueError("limit_size wraps unary-unary and unary-stream handlers")
    if inspect.isasyncgenfunction(stream):

        async def generator_behavior(raw: bytes, context: Any) -> AsyncIterator[Any]:
            if len(raw) > limit:
                await on_error(too_large(limit), context)
                raise too_large(limit)
            async for item in stream(raw, context):
                yield item

        behavior: Callable[..., Any] = generator_behavior
    else:

        async def writer_behavior(raw: bytes, context: Any) -> None:
            if len(raw) > limit:
                await on_error(too_large(limit), context)
                raise too_large(limit)
            await stream(raw, context)

        behavior = writer_behavior
    return grpc.unary_stream_rpc_method_handler(
        behavior, response_serializer=handler.response_serializer
    )


__all__ = [
    "MAX_CLAIM_DEVICES",
    "PEER_EPHEMERAL_BUDGET",
    "PEER_MAX_WAKES",
    "REASON",
    "SMALL",
    "limit_size",
    "max_receive_bytes",
    "notify_bytes",
    "request_limits",
    "send_bytes",
    "too_large",
    "upload_prekeys_bytes",
]
