"""One rooted error tree for the whole service.

Every failure a client can see is a ``RossbyError`` carrying a gRPC status
name (``code``) and a stable machine-readable ``reason``. The server turns
them into a status with a ``google.rpc.ErrorInfo`` detail in exactly one
place (``rossby.server.status``); anything else that escapes a handler is
logged and answered as INTERNAL without a stack trace.

    RossbyError
    ├── InvalidArgument        INVALID_ARGUMENT    malformed input; nothing written
    ├── Unauthenticated        UNAUTHENTICATED     missing/bad/stale/replayed Hawk header
    ├── PermissionDenied       PERMISSION_DENIED   wrong code, bad proof of key possession
    ├── NotFound               NOT_FOUND           unknown (or hidden) box, contact, registration
    ├── AlreadyExists          ALREADY_EXISTS      contact already belongs to a box
    ├── FailedPrecondition     FAILED_PRECONDITION expired code, too many attempts, wrong state
    ├── ResourceExhausted      RESOURCE_EXHAUSTED  rate limits, pending-message cap
    └── Unavailable            UNAVAILABLE         store or notifier down; safe to retry
        └── StoreUnavailable                       the outcome of a write may be unknown

Store backends translate driver exceptions into this tree in one function
each, so the server never imports a driver.
"""

from __future__ import annotations

from collections.abc import Mapping

DOMAIN = "rossby.v1"


class RossbyError(Exception):
    """Base of every error a client may see."""

    code: str = "INTERNAL"
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(RossbyError):
    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


class Unauthenticated(RossbyError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(RossbyError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class NotFound(RossbyError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(RossbyError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(RossbyError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(RossbyError):
    code = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(RossbyError):
    code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class StoreUnavailable(Unavailable):
    """The store could not be reached or timed out.

    ``applied`` is False when the write definitely did not happen, and None
    when its outcome is unknown (a timed-out write may still land); callers
    retry idempotent operations either way.
    """

    default_reason = "STORE_UNAVAILABLE"

    def __init__(
        self, message: str, *, applied: bool | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.applied = applied


class ConfigError(Exception):
    """An invalid setting; raised before any port is bound.

    Not a ``RossbyError``: it never reaches a client.
    """


__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RossbyError",
    "StoreUnavailable",
    "Unauthenticated",
    "Unavailable",
]
