"""CPU per hit of the in-process abuse limit, against ``limits``' moving window.

    .venv/bin/python bench/ratelimit_cost.py [--seconds 4] [--rate 1000] [--keys 100]

Drives ``rate`` hits per second spread over ``keys`` keys (devices) for
``seconds``, under a 1200/minute limit that none of them reaches, the way
the Send path hits ``send_rate_per_device``. Reports the process's own CPU
time (every thread: ``limits``' memory storage hops to a thread per key when
it expires entries) per hit, minus the same loop without a limit. CPU time,
not wall time, so a busy machine does not change the figure much.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from rossby.server.ratelimit import RateLimit

Hit = Callable[[str], Awaitable[object]]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(hit: Hit, seconds: float, rate: int, keys: int) -> tuple[int, float]:
    n = 0
    start, spent = time.monotonic(), cpu()
    while time.monotonic() - start < seconds:
        for _ in range(max(1, rate // 100)):
            await hit(f"device-{n % keys}")
            n += 1
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # let background expiry work land in the count
    return n, cpu() - spent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100)
    args = parser.parse_args()

    async def nothing(key: str) -> None:
        return None

    item = parse("1200/minute")
    moving = MovingWindowRateLimiter(MemoryStorage())

    async def limits_moving_window(key: str) -> bool:
        return await moving.hit(item, "send", key)

    rossby = RateLimit("send", "1200/minute", reason="SEND_RATE_LIMITED")
    n, base = await drive(nothing, args.seconds, args.rate, args.keys)
    base_per_hit = base / n
    print(f"loop alone: {base_per_hit * 1e6:.1f} us CPU per iteration ({n} iterations)")
    for name, hit in (("limits moving window", limits_moving_window), ("rossby", rossby.hit)):
        n, spent = await drive(hit, args.seconds, args.rate, args.keys)
        print(f"{name:22} {(spent / n - base_per_hit) * 1e6:8.1f} us CPU per hit ({n} hits)")


if __name__ == "__main__":
    asyncio.run(main())
