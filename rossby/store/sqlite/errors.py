"""The one place a sqlite3 exception becomes a ``rossby.errors`` one."""

from __future__ import annotations

import sqlite3

from rossby.errors import FailedPrecondition, RossbyError, StoreUnavailable

# Primary result codes (the low byte of an extended code).
_SQLITE_ERROR = 1
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_NOMEM = 7
_SQLITE_READONLY = 8
_SQLITE_INTERRUPT = 9
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14

# Failures that happen before anything is written: the caller may retry
# knowing the write did not land. Anything else (I/O errors in COMMIT, a
# corrupt file) leaves the outcome unknown.
_NOT_APPLIED = {
    _SQLITE_PERM,
    _SQLITE_BUSY,
    _SQLITE_LOCKED,
    _SQLITE_NOMEM,
    _SQLITE_READONLY,
    _SQLITE_INTERRUPT,
    _SQLITE_FULL,
    _SQLITE_CANTOPEN,
}


def translate_error(exc: sqlite3.Error | MemoryError) -> RossbyError:
    """The one place a sqlite3 exception becomes a ``rossby.errors`` one.

    The sqlite3 module reports SQLITE_NOMEM as MemoryError, without a result
    code; the worker hands that over too, so out of memory is an outage
    (nothing was written: SQLite rolled the statement or transaction back),
    not a raw MemoryError reaching the server."""
    if isinstance(exc, MemoryError):
        return StoreUnavailable("sqlite: out of memory", applied=False)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        # A constraint or API misuse is a bug in this backend, not an outage:
        # retrying would fail the same way, so it must not look retryable.
        return RossbyError(f"sqlite store bug: {text}", reason="STORE_INTERNAL")
    if primary == _SQLITE_ERROR and text.startswith("no such table"):
        return FailedPrecondition(
            f"sqlite schema missing ({text}); run `rossby migrate`", reason="SCHEMA_MISSING"
        )
    applied = False if primary in _NOT_APPLIED else None
    return StoreUnavailable(f"sqlite: {text}", applied=applied)


__all__ = ["translate_error"]
