"""Send -> receive latency of real-time delivery (Subscribe), end to end.

Starts ``rossby serve`` processes on loopback (one store: a SQLite file or a
Cassandra keyspace), registers receivers on the first process and senders
on the last, opens one Subscribe stream per receiver, then sends at a fixed
rate (open loop: each Send starts on schedule, however slow the previous
ones were) one message at a time to a random receiver. Latency is from the
moment the Send is issued to the moment the receiver's stream hands the
message to the client, both on this process's monotonic clock. With two or
more processes every message crosses processes (presence + peer Notify);
with one it goes through the in-process hub. The streams' safety-net poll
is set to 600 s, so it never explains a delivery.

    .venv/bin/python bench/realtime_latency.py --processes 2 --rate 200 --seconds 20
    .venv/bin/python bench/realtime_latency.py --store cassandra://127.0.0.1:9042/rossby_bench_rt \\
        --processes 2 --rate 200 --seconds 20

The load generator is one Python process (it costs about as much CPU per
message as the server does); give it the spare cores. Output: a summary and
a JSON document (``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram

from rossby.client.hawk import stream_signed
from rossby.loadtest.device import SERVICE, SimDevice
from rossby.v1 import rossby_pb2 as pb

PUBLIC_PORT = 1205
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rossby(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rossby", *args], capture_output=True, text=True, timeout=300
    )


def start_servers(store: str, count: int, workdir: Path, extra: list[str]) -> list[Any]:
    procs = []
    for i in range(count):
        port = free_port()
        log = open(workdir / f"server-{i}.log", "ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rossby",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--store",
                store,
                "--state-dir",
                str(workdir / "state"),
                "--outbox-dir",
                str(workdir / "outbox"),
                "--workers",
                "1",
                "--metrics-listen",
                "",
                "--public-host",
                "127.0.0.1",
                "--public-port",
                str(PUBLIC_PORT),
                "--stream-poll",
                "600",
                # Each sender device sends rate/10 a second, above the default
                # per-device send limit: this measures latency, not the limit.
                "--send-rate-per-device",
                "0",
                # Every device registers from 127.0.0.1.
                "--register-rate-per-address",
                "0",
                "--log-format",
                "json",
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, f"127.0.0.1:{port}", log))
    for proc, target, _ in procs:
        wait_serving(proc, target)
    return procs


def wait_serving(proc: subprocess.Popen[bytes], target: str, timeout: float = 60.0) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {target} exited {proc.returncode}")
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server {target} not serving after {timeout}s")


def percentiles(hist: Any) -> dict[str, float]:
    if not hist.get_total_count():
        return {}
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000
    out["mean"] = round(hist.get_mean_value() / 1000, 3)
    return out


async def register(
    channels: list[grpc.aio.Channel], outbox: Path, n: int, run_id: str, role: str
) -> list[SimDevice]:
    devices = []
    for i in range(n):
        channel = channels[i % len(channels)]
        d = SimDevice(i, 0, channel, str(outbox), ("127.0.0.1", PUBLIC_PORT), f"{run_id}-{role}")
        devices.append(d)

    async def one(d: SimDevice) -> None:
        await d.register(30)
        await d.authorize(await d.code(), 30)

    slots = asyncio.Semaphore(16)

    async def bounded(d: SimDevice) -> None:
        async with slots:
            await one(d)

    await asyncio.gather(*(bounded(d) for d in devices))
    return devices


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="rossby-rt-bench-"))
    load_before = os.getloadavg()[0]
    store = args.store or f"sqlite:///{workdir / 'rossby.db'}"
    migrated = rossby("migrate", "--store", store, "--state-dir", str(workdir / "state"))
    if migrated.returncode != 0:
        raise SystemExit(f"migrate failed: {migrated.stderr}")
    procs = start_servers(store, args.processes, workdir, args.server_arg or [])
    run_id = uuid.uuid4().hex[:8]
    first = grpc.aio.insecure_channel(procs[0][1])
    last = grpc.aio.insecure_channel(procs[-1][1])
    try:
        receivers = await register([first], workdir / "outbox", args.receivers, run_id, "r")
        senders = await register([last], workdir / "outbox", args.senders, run_id, "s")
        sent_at: dict[str, float] = {}
        warm_until = 0.0
        e2e, send_rpc = HdrHistogram(1, 60_000_000, 3), HdrHistogram(1, 60_000_000, 3)
        # From the Send's answer to the push: the real-time path alone
        # (0 when the push arrived before the answer).
        after_answer = HdrHistogram(1, 60_000_000, 3)
        answered_at: dict[str, float] = {}
        arrived_at: dict[str, float] = {}
        received: set[str] = set()
        live = 0
        all_live = asyncio.Event()
        acks: set[asyncio.Future[Any]] = set()

        async def listen(d: SimDevice) -> None:
            nonlocal live
            assert d.signer is not None
            # ack at most the stream's last ack_limit (0: none; docs/store.md, "Long sweeps")
            since_ack, highest, limit = 0, 0, 0
            stream = stream_signed(
                d.channel,
                d.signer,
                SERVICE + "Subscribe",
                pb.SubscribeRequest(),
                pb.SubscribeEvent,
            )
            async for event in stream:
                kind = event.WhichOneof("event")
                limit = max(limit, event.ack_limit)
                if kind == "live":
                    live += 1
                    if live == len(receivers):
                        all_live.set()
                elif kind == "message":
                    now = time.perf_counter()
                    mid = event.message.message_id
                    start = sent_at.get(mid)
                    if start is not None and mid not in received:
                        received.add(mid)
                        if start >= warm_until:
                            e2e.record_value(max(1, int((now - start) * 1e6)))
                            answered = answered_at.get(mid)
                            if answered is None:
                                arrived_at[mid] = now
                            else:
                                gap = max(1, int((now - answered) * 1e6))
                                after_answer.record_value(gap)
                    highest = max(highest, event.message.position)
                    since_ack += 1
                    if args.ack_every and since_ack >= args.ack_every:  # off the hot path
                        since_ack = 0
                        through = min(highest, limit) if limit else highest
                        ack = asyncio.ensure_future(
                            d.call("Ack", pb.AckRequest(through=through), pb.AckResponse, 10)
                        )
                        acks.add(ack)
                        ack.add_done_callback(acks.discard)

        listeners = [asyncio.create_task(listen(d)) for d in receivers]
        await asyncio.wait_for(all_live.wait(), 60)
        payload = os.urandom(args.payload_bytes)
        rng = random.Random(1)
        interval = 1.0 / args.rate
        total = int(args.rate * args.seconds)
        begin = time.perf_counter()
        warm_until = begin + args.warmup
        errors: dict[str, int] = {}
        inflight: set[asyncio.Task[None]] = set()

        async def send_one(i: int, scheduled: float) -> None:
            sender = senders[i % len(senders)]
            target = rng.choice(receivers)
            mid = str(uuid.uuid4())
            sent_at[mid] = scheduled  # from the schedule: no coordinated omission
            try:
                await sender.call(
                    "Send",
                    pb.SendRequest(
                        messages=[
                            pb.OutgoingMessage(
                                recipient_box_id=target.box_id, message_id=mid, ciphertext=payload
                            )
                        ]
                    ),
                    pb.SendResponse,
                    10,
                )
                done = time.perf_counter()
                if scheduled >= warm_until:
                    send_rpc.record_value(max(1, int((done - scheduled) * 1e6)))
                    if mid in arrived_at:
                        after_answer.record_value(1)  # pushed before the answer came
                    else:
                        answered_at[mid] = done
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                sent_at.pop(mid, None)

        for i in range(total):
            scheduled = begin + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send_one(i, scheduled))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        elapsed = time.perf_counter() - begin
        if inflight:
            await asyncio.wait(inflight, timeout=30)
        deadline = time.monotonic() + args.drain
        while len(received) < len(sent_at) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        return {
            "store": store.split("?")[0].split("://")[0],
            "processes": args.processes,
            "path": "cross-process (presence + peer Notify)"
            if args.processes > 1
            else "in-process hub",
            "receivers": args.receivers,
            "senders": args.senders,
            "rate_per_s": args.rate,
            "achieved_per_s": round(total / elapsed, 1),
            "seconds": args.seconds,
            "payload_bytes": args.payload_bytes,
            "ack_every": args.ack_every,
            "sent_ok": len(sent_at),
            "received": len(received),
            "lost": len(sent_at) - len(received),
            "send_errors": errors,
            "send_to_receive_ms": percentiles(e2e),
            "send_rpc_ms": percentiles(send_rpc),
            "answer_to_receive_ms": percentiles(after_answer),
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }
    finally:
        await first.close()
        await last.close()
        for proc, _, _log in procs:
            proc.terminate()
        for proc, _, log in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--processes", type=int, default=2, help="rossby serve processes")
    parser.add_argument("--receivers", type=int, default=50, help="streaming devices")
    parser.add_argument("--senders", type=int, default=10, help="sending devices")
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="sending time")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not recorded")
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument(
        "--ack-every", type=int, default=20, help="receivers ack every N messages (0: never)"
    )
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait at the end")
    parser.add_argument("--server-arg", action="append", help="extra `rossby serve` flag (repeat)")
    parser.add_argument("--json", metavar="FILE", help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    lat, rpc = result["send_to_receive_ms"], result["send_rpc_ms"]
    print(
        f"{result['path']} on {result['store']}: {result['received']}/{result['sent_ok']} "
        f"delivered ({result['lost']} lost) at {result['achieved_per_s']}/s"
    )
    print("send->receive ms: " + "  ".join(f"{k} {v:.2f}" for k, v in lat.items()))
    print("Send RPC ms:      " + "  ".join(f"{k} {v:.2f}" for k, v in rpc.items()))
    gap = result["answer_to_receive_ms"]
    print("answer->receive:  " + "  ".join(f"{k} {v:.2f}" for k, v in gap.items()))
    print(f"load average (1 min) before/after: {result['load_average_1m']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
