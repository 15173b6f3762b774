"""Hawk headers other than the request check: signing a request, the
``Server-Authorization`` response MAC (made by the server, checked by the
client), and the stale-timestamp challenge with the client's clock offset.
"""

from __future__ import annotations

import hmac

from rossby.hawk.protocol import (
    _TS_RE,
    _VALUE_RE,
    CHALLENGE_ATTRIBUTES,
    CONTENT_TYPE,
    RESPONSE_ATTRIBUTES,
    STALE_TIMESTAMP,
    HeaderSyntaxError,
    ServerAuthenticationError,
    VerifiedRequest,
    _mac,
    normalized_string,
    parse_header,
    payload_hash,
    timestamp_mac,
)


def _check_value(name: str, value: str) -> None:
    if _VALUE_RE.fullmatch(value) is None:
        raise ValueError(f"Hawk {name} has characters a Hawk parser rejects: {value!r}")


def sign_request(
    credentials_id: str,
    key: bytes,
    *,
    method: str,
    resource: str,
    host: str,
    port: int,
    payload: bytes,
    content_type: str,
    ts: int,
    nonce: str,
    ext: str = "",
) -> str:
    """Build the ``Authorization`` header value for one request.

    Values a Hawk parser would refuse are rejected here (``ValueError``)
    instead of being escaped: "limitations are better than escaping"
    (mozilla/hawk#151), and escaped values are unparseable anyway.
    """
    _check_value("id", credentials_id)
    _check_value("nonce", nonce)
    if ext:
        _check_value("ext", ext)
    if not resource.startswith("/"):
        raise ValueError(f"Hawk resource must be a path: {resource!r}")
    digest = payload_hash(payload, content_type)
    mac = _mac(
        key,
        normalized_string(
            "header",
            ts=ts,
            nonce=nonce,
            method=method,
            resource=resource,
            host=host,
            port=port,
            hash=digest,
            ext=ext,
        ),
    )
    ext_attr = f', ext="{ext}"' if ext else ""
    return (
        f'Hawk id="{credentials_id}", ts="{ts}", nonce="{nonce}", hash="{digest}"'
        f'{ext_attr}, mac="{mac}"'
    )


def server_authorization_header(
    verified: VerifiedRequest,
    key: bytes,
    *,
    resource: str,
    host: str,
    port: int,
    method: str = "POST",
    payload: bytes | None = None,
    content_type: str = CONTENT_TYPE,
    ext: str = "",
) -> str:
    """The ``Server-Authorization`` value for the response to ``verified``.

    The MAC reuses the request's ts and nonce (type ``response``), so it binds
    the response to that one request. ``payload`` None leaves the body out.
    """
    if ext:
        _check_value("ext", ext)
    digest = payload_hash(payload, content_type) if payload is not None else ""
    mac = _mac(
        key,
        normalized_string(
            "response",
            ts=verified.ts,
            nonce=verified.nonce,
            method=method,
            resource=resource,
            host=host,
            port=port,
            hash=digest,
            ext=ext,
            app=verified.app,
            dlg=verified.dlg,
        ),
    )
    header = f'Hawk mac="{mac}"'
    if digest:
        header = f'{header}, hash="{digest}"'
    if ext:
        header = f'{header}, ext="{ext}"'
    return header


def verify_server_authorization(
    header: str,
    key: bytes,
    *,
    ts: int,
    nonce: str,
    resource: str,
    host: str,
    port: int,
    method: str = "POST",
    payload: bytes | None = None,
    content_type: str = CONTENT_TYPE,
) -> str:
    """Check a ``Server-Authorization`` header; answer its (signed) ``ext``.

    Follows mozilla/hawk ``client.authenticate``: the MAC first, then, when
    the caller has the body, a mandatory and matching ``hash``.
    """
    try:
        attributes = parse_header(header, RESPONSE_ATTRIBUTES)
    except HeaderSyntaxError as exc:
        raise ServerAuthenticationError(f"Invalid Server-Authorization header: {exc}") from None
    their_mac = attributes.get("mac", "")
    their_hash = attributes.get("hash", "")
    ext = attributes.get("ext", "")
    expected = _mac(
        key,
        normalized_string(
            "response",
            ts=ts,
            nonce=nonce,
            method=method,
            resource=resource,
            host=host,
            port=port,
            hash=their_hash,
            ext=ext,
        ),
    )
    if not hmac.compare_digest(expected, their_mac):
        raise ServerAuthenticationError("Bad response mac")
    if payload is not None:
        if not their_hash:
            raise ServerAuthenticationError("Missing response hash attribute")
        if not hmac.compare_digest(payload_hash(payload, content_type), their_hash):
            raise ServerAuthenticationError("Bad response payload mac")
    return ext


def www_authenticate_header(ts: int | str, tsm: str) -> str:
    """The HTTP-style stale-time challenge, for transports that want one."""
    return f'Hawk ts="{ts}", tsm="{tsm}", error="{STALE_TIMESTAMP}"'


def clock_offset(ts: str, tsm: str, key: bytes, *, now: float) -> float:
    """Seconds to add to the local clock, from a verified stale-time answer.

    Hawk lets a client use the server's time only as an offset for that
    server, and only once ``tsm`` proves the server holds the client's key;
    an unauthenticated ``ts`` would let anyone steer the client's clock.
    """
    if _TS_RE.fullmatch(ts) is None:
        raise ServerAuthenticationError("Invalid server timestamp")
    if not hmac.compare_digest(timestamp_mac(ts, key), tsm):
        raise ServerAuthenticationError("Invalid server timestamp hash")
    return int(ts) - now


def parse_www_authenticate(header: str) -> tuple[str, str] | None:
    """``(ts, tsm)`` from a stale-time challenge, or None if it has none."""
    try:
        attributes = parse_header(header, CHALLENGE_ATTRIBUTES)
    except HeaderSyntaxError:
        return None
    ts, tsm = attributes.get("ts"), attributes.get("tsm")
    if ts is None or tsm is None:
        return None
    return ts, tsm
