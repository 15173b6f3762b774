"""Checks for the API's typed errors: a gRPC status plus a stable
``ErrorInfo`` reason (rossby/errors.py, the table in docs/api.md)."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from rossby.status import error_info


def reason(exc: grpc.aio.AioRpcError) -> str:
    """The error's ``ErrorInfo`` reason; fails when it has none (a bare
    status, or one from outside Rossby's domain)."""
    info = error_info(exc)
    assert info is not None, f"no ErrorInfo in {exc.code()}: {exc.details()}"
    assert info.domain == "rossby.v1"
    return str(info.reason)


async def expect(code: grpc.StatusCode, why: str, call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """Await ``call``; it must fail with status ``code`` and reason ``why``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert (caught.value.code(), reason(caught.value)) == (code, why), caught.value.details()
    return caught.value


async def refused(call: Awaitable[object], want: str) -> dict[str, str]:
    """Await ``call``; it must be a limit's refusal: RESOURCE_EXHAUSTED with
    reason ``want`` and a ``retry_after_seconds`` of at least 1. Answers the
    error's metadata."""
    err = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, want, call)
    info = error_info(err)
    assert info is not None
    metadata = dict(info.metadata)
    assert int(metadata["retry_after_seconds"]) >= 1, metadata
    return metadata
