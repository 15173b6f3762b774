"""The gRPC ceiling: a bare grpc.aio echo server, a unary call carrying N bytes.

Same shape as Rossby's Send from the load generator's side: raw-bytes unary
calls over the same number of channels, at the same concurrency, timed by
the same HdrHistogram harness. No Hawk, no store, no protobuf parsing.

    .venv/bin/python bench/grpc_ceiling.py --concurrency 32 --seconds 15 [--payload-bytes 1024]

Prints one JSON line. ``--serve PORT`` runs only the server (used internally:
the server is a separate process, like ``rossby serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

import grpc
from _harness import closed_loop, cpu_per_call_us, emit, tree_cpu_seconds

METHOD = "/bench.Echo/Echo"


async def serve(port: int) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(echo)},  # no (de)serializers: raw bytes
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(port: int, args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for _ in range(args.channels)
    ]
    calls = [c.unary_unary(METHOD) for c in channels]
    payload = os.urandom(args.payload_bytes)
    turn = 0

    async def call() -> None:
        nonlocal turn
        turn += 1
        await calls[turn % len(calls)](payload, timeout=10)

    for c in calls:  # connect before timing
        await c(payload, timeout=10)
    cpu_before = tree_cpu_seconds(server_pid)
    result = await closed_loop("grpc echo", call, args.concurrency, args.seconds, args.count)
    server_cpu = tree_cpu_seconds(server_pid) - cpu_before
    for ch in channels:
        await ch.close()
    result.extra.update(
        payload_bytes=args.payload_bytes,
        concurrency=args.concurrency,
        channels=args.channels,
        server_cpu_seconds=round(server_cpu, 3),
        server_cpu_us_per_call=cpu_per_call_us(server_cpu, result.calls),
    )
    return result.to_dict()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", type=int)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--count", type=int)
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--channels", type=int, default=2)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        emit(asyncio.run(drive(port, args, server.pid)))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
