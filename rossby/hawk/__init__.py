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

from rossby.hawk.headers import (
    clock_offset,
    parse_www_authenticate,
    server_authorization_header,
    sign_request,
    verify_server_authorization,
    www_authenticate_header,
)
from rossby.hawk.protocol import (
    CHALLENGE_ATTRIBUTES,
    CONTENT_TYPE,
    DEFAULT_SKEW_SECONDS,
    HAWK_BAD_MAC,
    HAWK_BAD_PAYLOAD_HASH,
    HAWK_MALFORMED,
    HAWK_MISSING,
    HAWK_REPLAY,
    HAWK_STALE,
    HAWK_UNKNOWN_ID,
    MAX_HEADER_LENGTH,
    REQUEST_ATTRIBUTES,
    RESPONSE_ATTRIBUTES,
    HeaderSyntaxError,
    NotHawkScheme,
    ServerAuthenticationError,
    VerifiedRequest,
    normalized_string,
    parse_header,
    payload_hash,
    timestamp_mac,
)
from rossby.hawk.verifier import Clock, HawkVerifier, Lookup, NonceCache

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
