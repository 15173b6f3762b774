"""RequestKey timing for an unknown, a hidden and a blocked box (issue 16,
finding 5): the three answer the same NOT_FOUND, and should cost the same
time too, or the time tells a caller which contacts are registered.

Starts ``rossby serve`` (SQLite in a temp dir, or ``--store URL``), registers
a caller, a non-discoverable box and a box that blocked the caller, then
times ``--rounds`` rounds of one RequestKey by contact per case (order
shuffled per round, after ``--warmup`` untimed rounds) from one client, one
call at a time. Prints the median and p90 per case in ms and each median's
ratio to the unknown case's, as one JSON line. Bounded: 3 x (warmup +
rounds) calls.

    .venv/bin/python bench/requestkey_timing.py --rounds 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rossby.v1 import rossby_pb2 as pb  # noqa: E402
from tests.api.device import Device, email  # noqa: E402
from tests.serverproc import ServerProcess, rossby  # noqa: E402


class ProcessApi:
    """What ``tests.api.device.Device`` needs of a server, for a subprocess."""

    def __init__(self, server: ServerProcess, workdir: Path) -> None:
        self.channel = grpc.aio.insecure_channel(server.target)
        self.outbox = workdir / "outbox"
        self.server = SimpleNamespace(port=server.port)
        self.clock = time.time


async def measure(server: ServerProcess, work: Path, rounds: int, warmup: int) -> dict[str, Any]:
    api = ProcessApi(server, work)  # its channel belongs to this event loop
    caller = await Device(api, email("caller")).join()
    hidden = await Device(api, email("hidden")).join()
    blocker = await Device(api, email("blocker")).join()
    await hidden.call(
        "UpdateProfile", pb.UpdateProfileRequest(discoverable=False), pb.UpdateProfileResponse
    )
    await blocker.call(
        "SetSenderRule",
        pb.SetSenderRuleRequest(box_id=str(caller.box_id), rule=pb.SENDER_RULE_BLOCKED),
        pb.SetSenderRuleResponse,
    )
    cases = {
        "unknown": email("nobody"),
        "hidden": hidden.contacts[0],
        "blocked": blocker.contacts[0],
    }
    times: dict[str, list[float]] = {case: [] for case in cases}
    order = list(cases)
    for i in range(warmup + rounds):
        random.shuffle(order)
        for case in order:
            t0 = time.perf_counter()
            try:
                await caller.request_key(cases[case])
            except grpc.aio.AioRpcError as err:
                assert err.code() is grpc.StatusCode.NOT_FOUND, err
            else:
                raise AssertionError(f"{case} was found")
            if i >= warmup:
                times[case].append((time.perf_counter() - t0) * 1000)
    medians = {case: statistics.median(v) for case, v in times.items()}
    return {
        case: {
            "median_ms": round(medians[case], 3),
            "p90_ms": round(statistics.quantiles(v, n=10)[-1], 3),
            "ratio_to_unknown": round(medians[case] / medians["unknown"], 3),
        }
        for case, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rossby-rk-") as tmp:
        work = Path(tmp)
        url = args.store or f"sqlite:///{work / 'rossby.db'}"
        migrated = rossby("migrate", "--store", url)
        if migrated.returncode != 0:
            raise SystemExit(migrated.stderr)
        server = ServerProcess(
            work,
            url,
            "--register-rate-per-address",
            "0",
            "--auth-cache-ttl",
            "0",  # every call reads the store, as for a caller probing cold boxes
        ).start(timeout=90)
        try:
            result = asyncio.run(measure(server, work, args.rounds, args.warmup))
        finally:
            server.stop()
    backend = url.split(":", 1)[0]
    print(
        json.dumps(
            {"bench": "requestkey_timing", "store": backend, "rounds": args.rounds, **result}
        )
    )


if __name__ == "__main__":
    main()
