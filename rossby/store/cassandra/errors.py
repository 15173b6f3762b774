"""The one place driver exceptions become ``rossby.errors``.

The distinction that matters to callers is whether a failed write might
still land: "definitely not applied" (the coordinator refused, or no host
was reachable) lets a caller report a clean failure, while "outcome
unknown" (a timeout after the request left) obliges the caller to retry
with the same idempotency key.
"""

from __future__ import annotations

import ssl

from cassandra import (
    AuthenticationFailed,
    CoordinationFailure,
    OperationTimedOut,
    ReadFailure,
    ReadTimeout,
    Unavailable,
    WriteFailure,
    WriteTimeout,
)
from cassandra import InvalidRequest as DriverInvalidRequest
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.protocol import (
    ErrorMessage,
    IsBootstrappingErrorMessage,
    OverloadedErrorMessage,
    ServerError,
)

from rossby.errors import FailedPrecondition, RossbyError, StoreUnavailable


class DeadlineExceeded(Exception):
    """A request was not sent because its time budget ran out first."""


def _tls_failure(cause: object) -> bool:
    """Did a connection attempt fail in the TLS handshake? The driver
    re-raises an ``ssl.SSLError`` as a plain ``OSError`` carrying its text
    (with SSL's error number, so it may even read as a PermissionError)."""
    if isinstance(cause, ssl.SSLError):
        return True
    return isinstance(cause, OSError) and any(
        mark in str(cause) for mark in ("_ssl.c", "CERTIFICATE_VERIFY_FAILED", "[SSL")
    )


def translate(exc: BaseException) -> BaseException:
    """Map a driver exception to the error the server sees.

    Answers the exception unchanged when it is not a driver failure (a bug
    must surface as itself, not as "unavailable").
    """
    if isinstance(exc, RossbyError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, DeadlineExceeded):
        return StoreUnavailable(f"store: {exc}", applied=False)
    if isinstance(exc, Unavailable | OverloadedErrorMessage | IsBootstrappingErrorMessage):
        # The coordinator refused before touching a replica.
        return StoreUnavailable(f"store unavailable: {name}: {exc}", applied=False)
    if isinstance(exc, NoHostAvailable):
        # Raised when no host could take the request at all: nothing was sent
        # to a coordinator that answered, so nothing was applied. A refused
        # login or TLS handshake gets its own reason: retrying cannot help,
        # the operator has to fix a setting.
        causes = list(getattr(exc, "errors", {}).values())
        if any(isinstance(c, AuthenticationFailed) for c in causes):
            return StoreUnavailable(
                f"store login refused (check cassandra_username, cassandra_password): {exc}",
                applied=False,
                reason="STORE_AUTH_FAILED",
            )
        if any(_tls_failure(c) for c in causes):
            return StoreUnavailable(
                f"store TLS handshake failed (check cassandra_tls_ca, cassandra_tls_cert, "
                f"cassandra_tls_check_hostname): {exc}",
                applied=False,
                reason="STORE_TLS_FAILED",
            )
        return StoreUnavailable(f"store unreachable: {exc}", applied=False)
    if isinstance(exc, ReadTimeout | ReadFailure):
        # A read changes nothing (LWT timeouts arrive as WriteTimeout).
        return StoreUnavailable(f"store read failed: {name}: {exc}", applied=False)
    if isinstance(
        exc,
        WriteTimeout
        | WriteFailure
        | CoordinationFailure
        | OperationTimedOut
        | ConnectionException
        | ServerError,
    ):
        # The request may have reached replicas: it can still land.
        return StoreUnavailable(f"store outcome unknown: {name}: {exc}", applied=None)
    if isinstance(exc, DriverInvalidRequest):
        text = str(exc).lower()
        missing = "unconfigured table" in text or "does not exist" in text
        if missing and ("table" in text or "keyspace" in text):
            return FailedPrecondition(
                f"store schema missing ({exc}); run `rossby migrate`", reason="SCHEMA_MISSING"
            )
        bug: BaseException = exc
        return bug
    if isinstance(exc, ErrorMessage):
        # Any other server-side error: assume the worst about a write.
        return StoreUnavailable(f"store error: {name}: {exc}", applied=None)
    return exc
