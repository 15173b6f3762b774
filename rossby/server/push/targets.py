"""SetPushTarget's input, checked: a ``SetPushTargetRequest`` becomes a
``PushTarget`` or a typed error (docs/api.md "Push").

A Web Push endpoint is a URL the server will POST to, chosen by a client:
without a check a client could point it at an address inside the
operator's network (SSRF). So it must be https, name a host that
``push_webpush_allowed_hosts`` admits (by default the big browsers' push
services) and carry no credentials. Nothing from the request is echoed in
an error message: an endpoint or a token identifies a device.
"""

from __future__ import annotations

import uuid
from typing import Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from rossby import errors
from rossby.pushspec import host_allowed
from rossby.server.push.config import PushConfig
from rossby.store.pushtargets import PushKind, PushTarget
from rossby.v1 import rossby_pb2 as pb

MAX_ENDPOINT: Final = 1024
MAX_PUSHKEY_BYTES: Final = 512
MAX_HINT_BYTES: Final = 64
P256_POINT_BYTES: Final = 65
AUTH_BYTES: Final = 16

INVALID: Final = "PUSH_TARGET_INVALID"


def invalid(message: str, field: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message, reason=INVALID, metadata={"field": field})


def disabled(kind: PushKind) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        f"{kind.value} push is not configured on this server",
        reason="PUSH_DISABLED",
        metadata={"kind": kind.value},
    )


def _endpoint(value: str, config: PushConfig) -> str:
    field = "web_push.endpoint"
    if not value or len(value) > MAX_ENDPOINT:
        raise invalid(f"{field}: 1 to {MAX_ENDPOINT} characters", field)
    if not value.isprintable() or any(c.isspace() for c in value):
        raise invalid(f"{field}: not a URL", field)
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port  # port: raises on a bad one
    except ValueError:
        raise invalid(f"{field}: not a URL", field) from None
    if parts.scheme != "https" or not host:
        raise invalid(f"{field}: needs an https URL with a host", field)
    if parts.username is not None or parts.password is not None:
        raise invalid(f"{field}: no credentials in the URL", field)
    if not host_allowed(host, config.allowed_hosts):
        raise invalid(f"{field}: this server does not push to that host", field)
    return value


def _p256dh(value: bytes) -> bytes:
    field = "web_push.p256dh"
    if len(value) != P256_POINT_BYTES or value[0] != 0x04:
        raise invalid(f"{field}: needs an uncompressed P-256 point (65 bytes)", field)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), value)
    except ValueError:
        raise invalid(f"{field}: not a point on P-256", field) from None
    return value


def parse_target(
    request: pb.SetPushTargetRequest,
    config: PushConfig,
    *,
    box_id: uuid.UUID,
    device_id: uuid.UUID,
    now: float,
) -> PushTarget:
    hint = request.hint
    if len(hint.encode()) > MAX_HINT_BYTES:
        raise invalid(f"hint: at most {MAX_HINT_BYTES} bytes", "hint")
    which = request.WhichOneof("target")
    if which == "web_push":
        if not config.enabled(PushKind.WEB_PUSH):
            raise disabled(PushKind.WEB_PUSH)
        web = request.web_push
        endpoint = _endpoint(web.endpoint, config)
        p256dh = _p256dh(bytes(web.p256dh))
        if len(web.auth) != AUTH_BYTES:
            raise invalid(f"web_push.auth: needs {AUTH_BYTES} bytes", "web_push.auth")
        return PushTarget(
            box_id=box_id,
            device_id=device_id,
            kind=PushKind.WEB_PUSH,
            registered_at=now,
            endpoint=endpoint,
            p256dh=p256dh,
            auth=bytes(web.auth),
            hint=hint,
        )
    if which == "gateway":
        if not config.enabled(PushKind.GATEWAY):
            raise disabled(PushKind.GATEWAY)
        gw = request.gateway
        if gw.app_id not in config.gateways:
            raise errors.InvalidArgument(
                "gateway.app_id: not one of this server's push gateways (GetPushConfig)",
                reason="PUSH_GATEWAY_UNKNOWN",
                metadata={"field": "gateway.app_id"},
            )
        size = len(gw.pushkey.encode())
        if not 1 <= size <= MAX_PUSHKEY_BYTES:
            raise invalid(f"gateway.pushkey: 1 to {MAX_PUSHKEY_BYTES} bytes", "gateway.pushkey")
        return PushTarget(
            box_id=box_id,
            device_id=device_id,
            kind=PushKind.GATEWAY,
            registered_at=now,
            app_id=gw.app_id,
            pushkey=gw.pushkey,
            hint=hint,
        )
    raise invalid("give a target: web_push or gateway", "target")


__all__ = ["INVALID", "MAX_HINT_BYTES", "MAX_PUSHKEY_BYTES", "disabled", "parse_target"]
