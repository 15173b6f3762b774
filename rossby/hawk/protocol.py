"""Hawk's wire vocabulary: header syntax, the normalized string, MACs and hashes.

The byte-level core both sides share (mozilla/hawk ``lib/utils.js`` and
``lib/crypto.js``); the client's signing and response checks are in
``rossby.hawk.headers``, the server's verification in
``rossby.hawk.verifier``. The mapping of gRPC onto Hawk is described in
``rossby.hawk``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final

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
