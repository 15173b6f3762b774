"""Tombstone proof: a box that has carried many messages reads like a new one.

Sends ``--messages`` messages through one box with the Store API while a
device fetches and acks them and compaction runs after acks (as the server
does), so the box's partitions fill with deleted rows and range and
partition tombstones. Then it times Fetch on that box against a fresh box
holding the same few live messages, traces one Fetch on each, times a
naive read of the used partition without a lower bound (the anti-pattern,
for contrast), and greps the node logs for tombstone warnings.

    .venv/bin/python bench/tombstones.py --contact-points 127.0.0.1:9042 --messages 100000

Not a test: it takes minutes at the default size and prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

from rossby.store import Box, Device, DeviceKeys, DeviceState, NewMessage, StoreOptions, open_store
from rossby.store.cassandra import CassandraStore
from rossby.store.cassandra.positions import bucket_of, span

ROOT = Path(__file__).resolve().parent.parent
TRACE = re.compile(r"Read (\d+) live rows and (\d+) tombstone cells")
LOG_WARNING = re.compile(r"tombstone", re.IGNORECASE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contact-points", default="127.0.0.1:9042", help="host[:port],...")
    p.add_argument("--keyspace", default="rossby_bench")
    p.add_argument("--local-dc", default="dc1")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--fetches", type=int, default=200, help="timed fetches per box and round")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (p99 of 200 is noisy)")
    p.add_argument("--live", type=int, default=10, help="live messages in each box when timing")
    p.add_argument("--senders", type=int, default=32, help="concurrent enqueues")
    p.add_argument(
        "--logs",
        default=str(ROOT / "var" / "cassandra" / "node*" / "logs" / "system.log"),
        help="glob of Cassandra system.log files to grep",
    )
    return p.parse_args(argv)


def store_url(args: argparse.Namespace) -> str:
    points = [p.strip() for p in args.contact_points.split(",") if p.strip()]
    hosts = ",".join(p.rsplit(":", 1)[0] for p in points)
    port = points[0].rsplit(":", 1)[1] if ":" in points[0] else "9042"
    return (
        f"cassandra://{hosts}:{port}/{args.keyspace}"
        f"?local_dc={args.local_dc}&replication={args.local_dc}:1"
    )


def new_device(box_id: uuid.UUID) -> Device:
    return Device(
        box_id=box_id,
        device_id=uuid.uuid4(),
        name="bench",
        keys=DeviceKeys(os.urandom(32), os.urandom(32), os.urandom(64)),
        hawk_key=os.urandom(32),
        state=DeviceState.ACTIVE,
        created_at=time.time(),
    )


def message() -> NewMessage:
    return NewMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), os.urandom(100))


async def new_box(store: CassandraStore) -> tuple[Box, Device]:
    box = Box(uuid.uuid4(), "bench", time.time())
    device = new_device(box.box_id)
    await store.create_box(box, device)
    return box, device


def log_sizes(pattern: str) -> dict[Path, int]:
    root = Path(pattern).anchor or "."
    rel = str(Path(pattern).relative_to(root)) if Path(pattern).is_absolute() else pattern
    return {p: p.stat().st_size for p in Path(root).glob(rel)}


def new_log_lines(before: dict[Path, int], pattern: str) -> list[str]:
    lines: list[str] = []
    for path in log_sizes(pattern):
        with open(path, errors="replace") as fh:
            fh.seek(before.get(path, 0))
            lines += [line.rstrip() for line in fh if LOG_WARNING.search(line)]
    return lines


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def churn(store: CassandraStore, box: Box, device: Device, total: int, senders: int) -> float:
    """Send ``total`` messages while the device reads, acks and compacts."""
    sent = 0
    done = asyncio.Event()
    started = time.monotonic()

    async def send() -> None:
        nonlocal sent
        while sent < total:
            sent += 1
            await store.enqueue(box.box_id, message())

    async def read() -> None:
        last_compact = 0.0
        while not done.is_set():
            after, last = 0, 0
            while True:
                page = await store.fetch(box.box_id, device.device_id, after=after, limit=500)
                if page.messages:
                    last = page.messages[-1].position
                if not page.more:
                    break
                after = last
            if last:
                await store.ack(box.box_id, device.device_id, last)
            if time.monotonic() - last_compact > 1.0:
                await store.compact(box.box_id)
                last_compact = time.monotonic()
            await asyncio.sleep(0.05)

    async def report() -> None:
        while not done.is_set():
            await asyncio.sleep(10)
            rate = sent / (time.monotonic() - started)
            print(f"  {sent}/{total} sent ({rate:.0f}/s)", flush=True)

    reader, reporter = asyncio.create_task(read()), asyncio.create_task(report())
    await asyncio.gather(*(send() for _ in range(senders)))
    elapsed = time.monotonic() - started
    done.set()
    await asyncio.gather(reader, reporter)
    # Let the last messages leave the settle window, then ack through the
    # head and compact, as the server's next Ack would.
    await asyncio.sleep(store.settle_window / span(1.0) + 1)
    await store.ack(box.box_id, device.device_id, 2**62)
    result = await store.compact(box.box_id)
    pending = await store.pending_count(box.box_id)
    print(f"  compacted through {result.purged_through}; pending {pending}")
    return elapsed


async def traced_tombstones(
    store: CassandraStore, box: Box, device: Device
) -> list[tuple[int, int]]:
    store._db.traces = []
    try:
        await store.fetch(box.box_id, device.device_id)
    finally:
        futures, store._db.traces = store._db.traces, None
    out: list[tuple[int, int]] = []
    for future in futures:
        trace = await asyncio.to_thread(future.get_query_trace, 10.0)
        for event in trace.events:
            m = TRACE.search(event.description)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
    return out


async def time_fetches(
    store: CassandraStore, boxes: list[tuple[Box, Device]], n: int
) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in boxes]
    for _ in range(n):
        for i, (box, device) in enumerate(boxes):  # interleaved: same conditions for both
            t = time.perf_counter()
            page = await store.fetch(box.box_id, device.device_id)
            samples[i].append(time.perf_counter() - t)
            assert page.messages
    return samples


async def naive_read(store: CassandraStore, box: Box, first: int, last: int) -> tuple[float, int]:
    """The anti-pattern: the used box's partitions read without a lower bound."""
    session = await store._db.session()
    ks = store._settings.keyspace
    tombstones, started = 0, time.perf_counter()
    for bucket in range(bucket_of(first), bucket_of(last) + 1):
        query = f"SELECT position FROM {ks}.messages WHERE box_id = %s AND bucket = %s LIMIT 10"
        future = session.execute_async(query, (box.box_id, bucket), trace=True, timeout=60)
        await asyncio.to_thread(future.result)
        trace = await asyncio.to_thread(future.get_query_trace, 10.0)
        for event in trace.events:
            m = TRACE.search(event.description)
            if m:
                tombstones += int(m.group(2))
    return time.perf_counter() - started, tombstones


async def main(args: argparse.Namespace) -> int:
    store = open_store(store_url(args), StoreOptions(pending_cap=max(10_000, args.messages)))
    assert isinstance(store, CassandraStore)
    before = log_sizes(args.logs)
    try:
        await store.migrate()
        used, fresh = await new_box(store), await new_box(store)
        first = (await store.fetch(used[0].box_id, used[1].device_id)).cursor
        print(f"churning {args.messages} messages through box {used[0].box_id} ...", flush=True)
        elapsed = await churn(store, *used, args.messages, args.senders)
        print(f"  sent, read, acked and compacted at {args.messages / elapsed:.0f} msg/s")
        last = (await store.fetch(used[0].box_id, used[1].device_id)).cursor
        for box, _ in (used, fresh):
            for _ in range(args.live):
                await store.enqueue(box.box_id, message())
        print(f"fetch latency, {args.fetches} fetches per round ({args.live} live messages each):")
        for round_ in range(1, args.rounds + 1):
            samples = await time_fetches(store, [used, fresh], args.fetches)
            for name, s in zip(("used box", "fresh box"), samples, strict=True):
                print(
                    f"  round {round_}  {name:9}  p50 {pct(s, 0.50):6.2f} ms"
                    f"  p99 {pct(s, 0.99):6.2f} ms  mean {statistics.mean(s) * 1000:6.2f} ms"
                )
        for name, (box, device) in (("used box", used), ("fresh box", fresh)):
            counts = await traced_tombstones(store, box, device)
            print(f"  traced fetch on {name}: (live rows, tombstones) per read = {counts}")
        seconds, tombstones = await naive_read(store, used[0], first, last)
        print(
            f"naive read of the used box without a lower bound: {seconds * 1000:.1f} ms,"
            f" {tombstones} tombstones scanned"
        )
        warnings = new_log_lines(before, args.logs)
        print(f"tombstone lines in node logs during the run: {len(warnings)}")
        for line in warnings[:10]:
            print("  " + line)
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
