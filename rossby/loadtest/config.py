"""Every knob of a load test, in one frozen object that crosses process boundaries."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

OPS: Final = ("send", "group", "fetch", "subscribe")
"""Operations the mix can hold.

``send``      one Send to one other user (every box of that user).
``group``     one Send carrying the same message to ``group_size`` other users.
``fetch``     Fetch (every page) and Ack through the last position, on one device.
``subscribe`` a short Subscribe session on one device: drain until live, take
              pushes for a moment, Ack through the last position.
"""

PLANNED_OPS: Final[dict[str, str]] = {}
"""Operations named by the design but not implemented yet: the CLI refuses
them with the reason instead of silently ignoring a weight."""

MAX_BACKOFF: Final = 2.0
"""Longest pause between two tries of one Send: a restarting server is back within a
few seconds, and a longer pause would only stretch the run's tail."""
RATE_LIMIT_WAITS: Final = 3
"""Times one Send waits out SEND_RATE_LIMITED (as long as the server says, at
most MAX_RATE_LIMIT_WAIT) before giving up; these waits leave ``send_retries``
alone, since the server stored nothing and will take the same ids later."""
MAX_RATE_LIMIT_WAIT: Final = 5.0
CRYPTO_MODES: Final = ("random", "real")
"""``--crypto``: what a message holds (rossby/loadtest/codec.py)."""

DEFAULT_MIX: Final = {"send": 6.0, "group": 1.0, "fetch": 3.0}


class UsageError(ValueError):
    """A bad command-line value; the CLI prints it and exits 2."""


def parse_mix(text: str) -> dict[str, float]:
    """``"send=6,group=1,fetch=3"`` -> weights; unknown or planned ops refused."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition("=")
        name = name.strip()
        if name in PLANNED_OPS:
            raise UsageError(f"--mix: {name!r} is not available yet: {PLANNED_OPS[name]}")
        if name not in OPS:
            raise UsageError(f"--mix: unknown operation {name!r} (choose from {', '.join(OPS)})")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            raise UsageError(
                f"--mix: weight of {name!r} is not a number: {weight_text!r}"
            ) from None
        if weight < 0:
            raise UsageError(f"--mix: weight of {name!r} is negative")
        mix[name] = weight
    if not any(w > 0 for w in mix.values()):
        raise UsageError("--mix: at least one operation needs a positive weight")
    return mix


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"address {text!r} is not host:port")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"address {text!r}: port is not a number") from None
    if not 0 < port < 65536:
        raise UsageError(f"address {text!r}: port out of range")
    return host.strip("[]"), port


@dataclass(frozen=True, slots=True)
class LoadConfig:
    targets: tuple[str, ...]
    outboxes: tuple[str, ...]
    users: int = 20
    devices: int = 1
    processes: int = 1
    concurrency: int = 16
    rate: float | None = None
    duration: float | None = 10.0
    messages: int | None = None
    max_seconds: float = 600.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    group_size: int = 5
    payload_bytes: int = 1024
    #: "random": random payloads (measures the server); "real": every message
    #: a real v2 envelope (measures the client's cryptography too).
    crypto: str = "random"
    channels: int = 2
    register_concurrency: int = 16
    register_timeout: float = 120.0
    drain_timeout: float = 30.0
    settle: float = 1.0
    send_retries: int = 2
    retry_backoff: float = 0.05
    rpc_timeout: float = 10.0
    max_inflight: int = 1024
    fetch_limit: int = 100
    public_address: str | None = None
    seed: int | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    def validate(self) -> LoadConfig:
        if not self.targets:
            raise UsageError("--target: at least one server address")
        for t in self.targets:
            parse_address(t)
        if self.public_address is not None:
            parse_address(self.public_address)
        if len(self.outboxes) not in (1, len(self.targets)):
            raise UsageError("--outbox: give one directory, or one per --target")
        if self.users < 2:
            raise UsageError("--users: at least 2 (senders need someone to send to)")
        if self.devices < 1:
            raise UsageError("--devices: at least 1")
        if self.processes < 1 or self.processes > self.users:
            raise UsageError("--processes: between 1 and --users")
        if self.rate is None and self.concurrency < self.processes:
            raise UsageError("--concurrency: at least one worker per process")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate: operations per second, > 0")
        if (self.duration is None) == (self.messages is None):
            raise UsageError("give exactly one of --duration and --messages")
        if self.duration is not None and not 0 < self.duration <= self.max_seconds:
            raise UsageError("--duration: > 0 and at most --max-seconds")
        if self.messages is not None and self.messages < 1:
            raise UsageError("--messages: at least 1")
        if self.messages is not None and not any(self.mix.get(op, 0) > 0 for op in OPS[:2]):
            raise UsageError("--messages counts sends: the mix needs send or group")
        if not 1 <= self.payload_bytes <= 65536:
            raise UsageError("--payload-bytes: 1 to 65536 (the server's default limit)")
        if self.payload_bytes < 8:
            raise UsageError("--payload-bytes: at least 8 (the send time rides in the first 8)")
        if self.crypto not in CRYPTO_MODES:
            raise UsageError(f"--crypto: one of {', '.join(CRYPTO_MODES)}")
        if self.group_size < 1:
            raise UsageError("--group-size: at least 1")
        if self.channels < 1 or self.register_concurrency < 1 or self.max_inflight < 1:
            raise UsageError("--channels, --register-concurrency, --max-inflight: at least 1")
        if not 1 <= self.fetch_limit <= 500:
            raise UsageError("--fetch-limit: 1 to 500")
        if self.send_retries < 0 or self.settle < 0 or self.drain_timeout < 0:
            raise UsageError("--send-retries, --settle, --drain-timeout: not negative")
        if not 0 <= self.retry_backoff <= MAX_BACKOFF:
            raise UsageError(f"--retry-backoff: 0 to {MAX_BACKOFF:g} seconds")
        return self

    def backoff(self, attempt: int) -> float:
        """Upper bound of the pause before retry ``attempt`` + 1 (jittered by the caller)."""
        return min(MAX_BACKOFF, self.retry_backoff * 2.0**attempt)

    def op_bound(self) -> float:
        """Longest one operation can take: every try timing out, plus the pauses."""
        pauses = sum(self.backoff(a) for a in range(self.send_retries))
        pauses += RATE_LIMIT_WAITS * (MAX_RATE_LIMIT_WAIT * 1.2 + self.rpc_timeout)
        return self.rpc_timeout * (self.send_retries + 2) + pauses + 5.0

    def share(self, index: int) -> tuple[range, int, float | None, int | None]:
        """Process ``index``'s users, workers, rate and message quota."""
        p = self.processes
        lo, hi = self.users * index // p, self.users * (index + 1) // p
        workers = self.concurrency // p + (1 if index < self.concurrency % p else 0)
        rate = self.rate / p if self.rate is not None else None
        quota = None
        if self.messages is not None:
            quota = self.messages // p + (1 if index < self.messages % p else 0)
        return range(lo, hi), workers, rate, quota

    def target_of(self, user: int) -> int:
        """Which --target (index) a user's devices talk to."""
        return user % len(self.targets)

    def outbox_of(self, target: int) -> str:
        return self.outboxes[0] if len(self.outboxes) == 1 else self.outboxes[target]

    def hawk_address(self, target: int) -> tuple[str, int]:
        return parse_address(self.public_address or self.targets[target])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        out["outboxes"] = list(self.outboxes)
        out["mix"] = dict(self.mix)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadConfig:
        values = dict(data)
        values["targets"] = tuple(values["targets"])
        values["outboxes"] = tuple(values["outboxes"])
        values["mix"] = dict(values["mix"])
        return cls(**values)


__all__ = [
    "DEFAULT_MIX",
    "OPS",
    "PLANNED_OPS",
    "LoadConfig",
    "UsageError",
    "parse_address",
    "parse_mix",
]
