"""Bringing one simulated device up: Register, the code from the outbox, Authorize, Prepare.

Counted apart from the run: these calls happen before the clock starts and
are reported as the setup phase.
"""

from __future__ import annotations

import time

import grpc

from rossby.crypto import InvalidSealed
from rossby.loadtest.codec import PayloadCodec
from rossby.loadtest.config import LoadConfig
from rossby.loadtest.device import RegistrationFailed, SimDevice
from rossby.loadtest.stats import Recorder

MAX_ERRORS = 5
"""Registration errors kept verbatim for the report; the rest are only counted."""


def code_name(exc: BaseException) -> str:
    """The gRPC status name of a failed call, or the exception's type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return type(exc).__name__


class Enrolment:
    """Registers devices one at a time (the caller bounds the concurrency) and counts."""

    def __init__(self, config: LoadConfig, codec: PayloadCodec, setup: Recorder) -> None:
        self._config = config
        self._codec = codec
        self._setup = setup
        self.registered = 0
        self.failed = 0
        self.errors: list[str] = []

    async def enrol(self, device: SimDevice) -> bool:
        """True once the device can make signed calls and others can write to it."""
        timeout = self._config.rpc_timeout
        step = "Register"
        try:
            started = time.perf_counter()
            await device.register(timeout)
            self._setup.ok_call(step, time.perf_counter() - started)
            step = "Authorize"
            code = await device.code()
            started = time.perf_counter()
            await device.authorize(code, timeout)
            self._setup.ok_call(step, time.perf_counter() - started)
            step = "Prepare"
            started = time.perf_counter()
            await self._codec.prepare(device, timeout)
            self._setup.ok_call(step, time.perf_counter() - started)
        except (grpc.aio.AioRpcError, RegistrationFailed, InvalidSealed) as exc:
            self._setup.failed_call(step, code_name(exc))
            self.note(f"{step}: {exc!s:.300}")
            self.failed += 1
            return False
        self.registered += 1
        return True

    def note(self, error: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)


__all__ = ["Enrolment", "code_name"]
