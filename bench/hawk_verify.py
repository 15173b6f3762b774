"""Per-request cost of Hawk verification: stock mohawk vs ``rossby.hawk``.

Both verifiers get the same pre-built headers (distinct nonces, so neither
refuses a replay) over the same payload, with a nonce check, and each result
is the best of a few rounds to shave scheduler noise. Our verifier is awaited
inside a running event loop, as in the server; its lookup does not suspend, so
the numbers are the verification work itself.

    .venv/bin/python bench/hawk_verify.py [--iterations 20000] [--payload-bytes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import mohawk

from rossby.hawk import CONTENT_TYPE, HawkVerifier, NonceCache, sign_request

ID = "0b3e6c1e-4a55-4c1b-9f49-3f2f9f3f2a10.5f0c8a52-7d1e-4c3b-8a9f-1e2d3c4b5a69"
KEY = bytes(range(32))
HOST, PORT = "rossby.example", 443
RESOURCE = "/rossby.v1.Rossby/Send"
URL = f"https://{HOST}:{PORT}{RESOURCE}"
T = 1_800_000_000
ROUNDS = 3


def headers(n: int, payload: bytes) -> list[str]:
    return [
        sign_request(
            ID,
            KEY,
            method="POST",
            resource=RESOURCE,
            host=HOST,
            port=PORT,
            payload=payload,
            content_type=CONTENT_TYPE,
            ts=T,
            nonce=f"nonce{i}",
        )
        for i in range(n)
    ]


def bench_mohawk(batch: list[str], payload: bytes) -> float:
    seen: set[tuple[str, str, str]] = set()

    def seen_nonce(sender_id: str, nonce: str, ts: str) -> bool:
        key = (sender_id, nonce, ts)
        if key in seen:
            return True
        seen.add(key)
        return False

    def credentials(_id: str) -> dict[str, Any]:
        return {"id": ID, "key": KEY, "algorithm": "sha256"}

    offset = T - time.time()
    start = time.perf_counter()
    for header in batch:
        mohawk.Receiver(
            credentials,
            header,
            URL,
            "POST",
            content=payload,
            content_type=CONTENT_TYPE,
            seen_nonce=seen_nonce,
            localtime_offset_in_seconds=offset,
            # a long mohawk run must not outlive the window it started in
            timestamp_skew_in_seconds=3600,
        )
    return time.perf_counter() - start


async def bench_ours(batch: list[str], payload: bytes) -> float:
    async def lookup(_id: str) -> bytes | None:
        return KEY

    verifier = HawkVerifier(
        lookup,
        host=HOST,
        port=PORT,
        nonce_cache=NonceCache(max_entries=len(batch) + 1),
        clock=lambda: float(T),
    )
    verify = verifier.verify
    start = time.perf_counter()
    for header in batch:
        await verify(header, resource=RESOURCE, payload=payload)
    return time.perf_counter() - start


def best(run: Callable[[], float], n: int) -> float:
    return min(run() for _ in range(ROUNDS)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--payload-bytes", type=int, default=200)
    args = parser.parse_args()
    payload = os.urandom(args.payload_bytes)
    batch = headers(args.iterations, payload)

    mohawk_us = best(lambda: bench_mohawk(batch, payload), args.iterations)
    ours_us = best(lambda: asyncio.run(bench_ours(batch, payload)), args.iterations)
    print(
        f"Hawk verify, {args.iterations} requests, {args.payload_bytes}-byte payload, "
        f"best of {ROUNDS}"
    )
    print(f"  mohawk 1.1.0 Receiver (stock): {mohawk_us:8.2f} us/op")
    print(f"  rossby.hawk HawkVerifier:      {ours_us:8.2f} us/op")
    print(f"  speed-up:                      {mohawk_us / ours_us:8.1f}x")


if __name__ == "__main__":
    main()
