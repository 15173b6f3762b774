"""Hawk request authentication (protocol version 1), shared by server and client.

Hawk is frozen ("the code is the specification": mozilla/hawk ``lib/``), so
this module reproduces that code's byte-level behaviour rather than any
paraphrase of it: any conformant Hawk client (mohawk, the Node library, ...)
produces headers the server accepts, and our client's headers are accepted by
any conformant Hawk server. ``tests/test_hawk.py`` checks both directions
against mohawk.

How a gRPC call maps onto Hawk (there is no published convention):

* method: ``POST`` (every gRPC call is an HTTP/2 POST);
* resource: the gRPC method path, e.g. ``/rossby.v1.Rossby/Send``;
* host, port: the server's *configured* public address. grpc-python does not
  show ``:authority`` to handlers, and pinning the address is what Hawk's own
  security notes advise against Host-header forgery;
* payload: the exact serialized request message as sent on the wire (without
  the 5-byte gRPC frame prefix). Protobuf serialization is not canonical, so
  both sides hash bytes, never a re-serialized message;
* content type: always ``application/grpc`` (``CONTENT_TYPE``), never read
  from the call. It only feeds the payload hash, so it is a constant both
  sides must agree on; the base gRPC media type is the one every gRPC stack
  knows (``+proto`` is an optional suffix). A third-party Hawk client must
  pass exactly this value;
* the credentials' algorithm is always sha256 (``HawkCredentials.algorithm``).

Where we are stricter than the Node library (headers from a conformant
client that hashes its payload are unaffected):

* the payload hash is mandatory: a header without ``hash`` is refused;
* ``ts`` must be a plain decimal integer without leading zeros (Node would let
  a non-numeric ``ts`` slip past its staleness check as NaN);
* non-ASCII headers are malformed (gRPC metadata values are ASCII anyway);
* the nonce is checked *after* the timestamp, so that only in-window nonces
  are ever stored (Node checks it before).

Performance: everything is stdlib ``hmac``/``hashlib`` over precompiled
regular expressions, because verification sits on every request; a verify
costs about 10 us against stock mohawk's ~110 us (``bench/hawk_verify.py``).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final

from rossby.errors import Unauthenticated

CONTENT_TYPE: Final = "application/grpc"
MAX_HEADER_LENGTH: Final = 4096
DEFAULT_SKEW_SECONDS: Final = 60
STALE_TIMESTAMP: Final = "Stale timestamp"

# Stable reasons carried by ``Unauthenticated``.
HAWK_MISSING: Final = "HAWK_MISSING"
HAWK_MALFORMED: Final = "HAWK_MALFORMED"
HAWK_UNKNOWN_ID: Final = "HAWK_UNKNOWN_ID"
HAWK_BAD_MAC: Final = "HAWK_BAD_MAC"
HAWK_BAD_PAYLOAD_HASH: Final = "HAWK_BAD_PAYLOAD_HASH"
HAWK_STALE: Final = "HAWK_STALE"
HAWK_REPLAY: Final = "HAWK_REPLAY"

REQUEST_ATTRIBUTES: Final = frozenset({"id", "ts", "nonce", "hash", "ext", "mac", "app", "dlg"})
RESPONSE_ATTRIBUTES: Final = frozenset({"mac", "ext", "hash"})
CHALLENGE_ATTRIBUTES: Final = frozenset({"ts", "tsm", "error"})

# mozilla/hawk lib/utils.js, made ASCII-only (JS ``\w`` is ASCII) and anchored
# with \Z (Python's ``$`` would also match before a trailing newline).
_SCHEME_RE: Final = re.compile(r"(\w+)(?:\s+(.*))?", re.ASCII)
_ATTRIBUTE_RE: Final = re.compile(r'(\w+)="([^"\\]*)"\s*(?:,\s*|\Z)', re.ASCII)
_VALUE_CHARS: Final = r"[ \w!#$%&'()*+,\-./:;<=>?@\[\]^`{|}~]+"
_VALUE_RE: Final = re.compile(_VALUE_CHARS, re.ASCII)
# Fast path: the same grammar with the value check folded in (a value cannot
# contain '"' or a backslash either way), matched whole, then the pairs extracted.
_ATTRIBUTE_LIST_RE: Final = re.compile(rf'(?:\w+="{_VALUE_CHARS}"\s*(?:,\s*|\Z))+', re.ASCII)
_PAIR_RE: Final = re.compile(rf'(\w+)="({_VALUE_CHARS})"', re.ASCII)
_TS_RE: Final = re.compile(r"0|[1-9][0-9]{0,14}", re.ASCII)


class HeaderSyntaxError(ValueError):
    """A Hawk header (or challenge) that the Hawk parser rejects."""


class NotHawkScheme(HeaderSyntaxError):
    """The header names another scheme; Hawk treats that as no credentials."""


class ServerAuthenticationError(Exception):
    """The client could not authenticate something the server said.

    Raised for a bad ``Server-Authorization`` or an unverifiable stale-time
    challenge. Not a ``RossbyError``: it arises in the client and never
    travels over the wire.
    """


@dataclass(slots=True)
class VerifiedRequest:
    """The artifacts of an accepted request; a response MAC reuses them.

    ``key`` is the caller's key (as Hawk's ``authenticate`` returns the
    credentials with the artifacts) so the response can be signed without a
    second lookup; it is kept out of ``repr`` so it cannot leak into logs.
    ``dlg`` is only kept when ``app`` is present, because Hawk leaves it out
    of the MAC otherwise. Not frozen only because a frozen dataclass costs a
    microsecond per request to build; treat it as read-only.
    """

    id: str
    ts: int
    nonce: str
    ext: str
    mac: str
    payload_hash: str
    key: bytes = field(repr=False, compare=False)
    app: str | None = None
    dlg: str | None = None


def parse_header(header: str, allowed: AbstractSet[str]) -> dict[str, str]:
    """Parse ``Hawk k="v", ...`` exactly as mozilla/hawk's parser does.

    The length cap comes first because it is what protects the regular
    expressions from pathological input. A well-formed header is parsed by
    two regex passes; anything else is re-parsed attribute by attribute,
    which is slower but names the precise fault.
    """
    if len(header) > MAX_HEADER_LENGTH:
        raise HeaderSyntaxError("Header length too long")
    if not header.isascii():
        raise HeaderSyntaxError("Invalid header syntax")
    parts = _SCHEME_RE.fullmatch(header)
    if parts is None:
        raise HeaderSyntaxError("Invalid header syntax")
    if parts.group(1).lower() != "hawk":
        raise NotHawkScheme("Not a Hawk header")
    rest = parts.group(2)
    if not rest:
        raise HeaderSyntaxError("Invalid header syntax")
    if _ATTRIBUTE_LIST_RE.fullmatch(rest) is not None:
        pairs = _PAIR_RE.findall(rest)
        attributes = dict(pairs)
        if len(attributes) == len(pairs) and attributes.keys() <= allowed:
            return attributes
    return _parse_attributes(rest, allowed)


def _parse_attributes(rest: str, allowed: AbstractSet[str]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    pos, end = 0, len(rest)
    while pos < end:
        m = _ATTRIBUTE_RE.match(rest, pos)
        if m is None:
            raise HeaderSyntaxError("Bad header format")
        name, value = m.group(1, 2)
        if name not in allowed:
            raise HeaderSyntaxError(f"Unknown attribute: {name}")
        if _VALUE_RE.fullmatch(value) is None:
            raise HeaderSyntaxError(f"Bad attribute value: {name}")
        if name in attributes:
            raise HeaderSyntaxError(f"Duplicate attribute: {name}")
        attributes[name] = value
        pos = m.end()
    return attributes


def normalized_string(
    kind: str,
    *,
    ts: int | str,
    nonce: str,
    method: str,
    resource: str,
    host: str,
    port: int | str,
    hash: str = "",
    ext: str = "",
    app: str | None = None,
    dlg: str | None = None,
) -> str:
    """The exact text Hawk MACs; ``kind`` is ``header`` or ``response``."""
    if ext and ("\\" in ext or "\n" in ext):
        ext = ext.replace("\\", "\\\\").replace("\n", "\\n")
    text = (
        f"hawk.1.{kind}\n{ts}\n{nonce}\n{method.upper()}\n{resource}\n"
        f"{host.lower()}\n{port}\n{hash}\n{ext}\n"
    )
    if app:
        text = f"{text}{app}\n{dlg or ''}\n"
    return text


def _b64(digest: bytes) -> str:
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def _mac(key: bytes, text: str) -> str:
    return _b64(hmac.new(key, text.encode(), "sha256").digest())


def _content_type_line(content_type: str) -> bytes:
    return b"hawk.1.payload\n" + content_type.split(";")[0].strip().lower().encode() + b"\n"


_GRPC_PAYLOAD_PREFIX: Final = _content_type_line(CONTENT_TYPE)


def payload_hash(payload: bytes, content_type: str = CONTENT_TYPE) -> str:
    """Hawk's payload hash; the content type loses its parameters and case."""
    prefix = (
        _GRPC_PAYLOAD_PREFIX if content_type == CONTENT_TYPE else _content_type_line(content_type)
    )
    return _b64(hashlib.sha256(prefix + payload + b"\n").digest())


def timestamp_mac(ts: int | str, key: bytes) -> str:
    """The ``tsm`` that lets a client trust a server's stale-time answer."""
    return _mac(key, f"hawk.1.ts\n{ts}\n")


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


class NonceCache:
    """Remembers accepted ``(id, nonce, ts)`` triples for replay detection.

    A triple is accepted only while ``|ts - now| <= skew``, so keeping it for
    ``2 * skew`` after acceptance outlives every moment it could be replayed
    within the window; afterwards the timestamp check refuses it. Entries
    expire in insertion order (a set plus a deque, both O(1) per request), and
    at ``max_entries`` the oldest is dropped: memory stays bounded even under
    a flood, at the price of forgetting the oldest nonces early (counted in
    ``evicted``).

    The cache is per process: it refuses a replay to the same process
    without a round trip. A server with several processes must also claim
    each accepted request where they all see it (the Rossby server claims
    it in its store, ``rossby.server.replay``).
    """

    __slots__ = ("_order", "_retention", "_seen", "evicted", "max_entries", "skew_seconds")

    def __init__(
        self, skew_seconds: float = DEFAULT_SKEW_SECONDS, max_entries: int = 262_144
    ) -> None:
        if skew_seconds <= 0 or max_entries <= 0:
            raise ValueError("skew_seconds and max_entries must be positive")
        self.skew_seconds = skew_seconds
        self.max_entries = max_entries
        self.evicted = 0
        self._retention = 2 * skew_seconds
        self._seen: set[tuple[str, str, int]] = set()
        self._order: deque[tuple[float, tuple[str, str, int]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, id: str, nonce: str, ts: int, now: float) -> bool:
        """True (and remembered) if the triple is new; False for a replay.

        Synchronous on purpose: with no await between the test and the
        insert, two concurrent requests cannot both pass.
        """
        order, seen = self._order, self._seen
        horizon = now - self._retention
        while order and order[0][0] < horizon:
            seen.discard(order.popleft()[1])
        entry = (id, nonce, ts)
        if entry in seen:
            return False
        if len(order) >= self.max_entries:
            seen.discard(order.popleft()[1])
            self.evicted += 1
        seen.add(entry)
        order.append((now, entry))
        return True


Lookup = Callable[[str], Awaitable[bytes | None]]
Clock = Callable[[], float]


def _fail(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


class HawkVerifier:
    """Server side: authenticates one request header over the exact payload.

    Checks run in mozilla/hawk's order (parse, required attributes, key
    lookup, MAC, payload hash, timestamp) with the nonce last (see the module
    notes). Every comparison of secrets is constant-time. ``lookup`` answers
    the sha256 key for a Hawk id, or None when the id is unknown or revoked;
    its exceptions (e.g. ``StoreUnavailable``) propagate unchanged.
    """

    __slots__ = ("_clock", "_host", "_lookup", "_nonces", "_port", "_skew")

    def __init__(
        self,
        lookup: Lookup,
        *,
        host: str,
        port: int,
        nonce_cache: NonceCache,
        skew_seconds: float = DEFAULT_SKEW_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        if nonce_cache.skew_seconds < skew_seconds:
            raise ValueError("the nonce cache must remember nonces for the whole skew window")
        self._lookup = lookup
        self._host = host.lower()
        self._port = str(port)
        self._nonces = nonce_cache
        self._skew = skew_seconds
        self._clock = clock

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return int(self._port)

    async def verify(
        self, header: str | None, *, resource: str, payload: bytes, method: str = "POST"
    ) -> VerifiedRequest:
        """Accept the request or raise ``Unauthenticated`` with a stable reason.

        A stale timestamp answers ``HAWK_STALE`` with metadata ``ts`` (server
        time, whole seconds) and ``tsm`` (its MAC under the caller's key), the
        same pair Hawk puts in ``WWW-Authenticate``.
        """
        now = self._clock()  # measured before any other work, as Hawk does
        if not header:
            raise _fail(HAWK_MISSING, "missing Hawk authorization")
        try:
            attributes = parse_header(header, REQUEST_ATTRIBUTES)
        except NotHawkScheme:
            raise _fail(HAWK_MISSING, "authorization is not a Hawk header") from None
        except HeaderSyntaxError as exc:
            raise _fail(HAWK_MALFORMED, str(exc)) from None
        get = attributes.get
        id_, ts_text, nonce, their_mac = get("id"), get("ts"), get("nonce"), get("mac")
        if not (id_ and ts_text and nonce and their_mac):
            raise _fail(HAWK_MALFORMED, "Missing attributes")
        if _TS_RE.fullmatch(ts_text) is None:
            raise _fail(HAWK_MALFORMED, "Invalid timestamp")

        key = await self._lookup(id_)
        if key is None:
            raise _fail(HAWK_UNKNOWN_ID, "Unknown credentials")

        their_hash, ext, app = get("hash"), get("ext", ""), get("app")
        dlg = get("dlg") if app else None
        expected = _mac(
            key,
            normalized_string(
                "header",
                ts=ts_text,
                nonce=nonce,
                method=method,
                resource=resource,
                host=self._host,
                port=self._port,
                hash=their_hash or "",
                ext=ext,
                app=app,
                dlg=dlg,
            ),
        )
        if not hmac.compare_digest(expected, their_mac):
            raise _fail(HAWK_BAD_MAC, "Bad mac")
        if their_hash is None:
            raise _fail(HAWK_BAD_PAYLOAD_HASH, "Missing required payload hash")
        ours = payload_hash(payload)
        if not hmac.compare_digest(ours, their_hash):
            raise _fail(HAWK_BAD_PAYLOAD_HASH, "Bad payload hash")

        ts = int(ts_text)
        if abs(ts - now) > self._skew:
            server_ts = math.floor(now)
            raise Unauthenticated(
                STALE_TIMESTAMP,
                reason=HAWK_STALE,
                metadata={"ts": str(server_ts), "tsm": timestamp_mac(server_ts, key)},
            )
        if not self._nonces.check_and_add(id_, nonce, ts, now):
            raise _fail(HAWK_REPLAY, "Invalid nonce")
        return VerifiedRequest(id_, ts, nonce, ext, their_mac, ours, key, app, dlg)


__all__ = [
    "CHALLENGE_ATTRIBUTES",
    "CONTENT_TYPE",
    "DEFAULT_SKEW_SECONDS",
    "HAWK_BAD_MAC",
    "HAWK_BAD_PAYLOAD_HASH",
    "HAWK_MALFORMED",
    "HAWK_MISSING",
    "HAWK_REPLAY",
    "HAWK_STALE",
    "HAWK_UNKNOWN_ID",
    "MAX_HEADER_LENGTH",
    "REQUEST_ATTRIBUTES",
    "RESPONSE_ATTRIBUTES",
    "Clock",
    "HawkVerifier",
    "HeaderSyntaxError",
    "Lookup",
    "NonceCache",
    "NotHawkScheme",
    "ServerAuthenticationError",
    "VerifiedRequest",
    "clock_offset",
    "normalized_string",
    "parse_header",
    "parse_www_authenticate",
    "payload_hash",
    "server_authorization_header",
    "sign_request",
    "timestamp_mac",
    "verify_server_authorization",
    "www_authenticate_header",
]
