"""Cross-DC replication lag and the cost of a remote home region.

Needs a two-datacenter Cassandra (dc1 on 127.0.0.1, dc2 on 127.0.0.2):

    python3 deploy/cassandra/launcher.py start --nodes 2 --dcs 2 --dir var/geo
    .venv/bin/python bench/replication_lag.py [--samples 300] [--rate 20] [--json out.json]

Three measurements, each under light load (one request at a time, ``--rate``
samples per second):

1. **Replication lag**, both directions: a row is written at LOCAL_QUORUM
   through one DC's coordinator; the other DC is then polled at LOCAL_ONE
   (tight loop) until the row is visible. Reported from the write's
   acknowledgement (the lag a reader elsewhere sees after the sender was
   told "queued") and from the write's start. The poll's own round trip
   bounds the resolution; it is reported too.
2. **Store-level Send** (``CassandraStore.enqueue``) into a box homed in
   dc1, from a store whose local DC is dc1 (home local) and from one in dc2
   (home remote: every queue request is coordinated in dc1).
3. **End-to-end Send** through a real ``rossby serve`` per region (A: dc1,
   B: dc2) into a box homed in dc1: via A and via B.

On one machine the "WAN" is loopback, so (2) and (3) show the number of
requests a remote home adds, not a real round-trip time; multiply the
extra requests (about 4 per Send, 2 per Fetch or Ack) by the real RTT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rossby.store import Box, Device, DeviceKeys, DeviceState, NewMessage, open_store  # noqa: E402

DC_IP = {"dc1": "127.0.0.1", "dc2": "127.0.0.2"}
KEYSPACE = "rossby_bench_geo"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50_ms": round(pct(values_ms, 50), 3),
        "p99_ms": round(pct(values_ms, 99), 3),
        "max_ms": round(max(values_ms), 3) if values_ms else float("nan"),
        "mean_ms": round(statistics.fmean(values_ms), 3) if values_ms else float("nan"),
    }


def session_on(ip: str, cl: int) -> tuple[Any, Any]:
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([ip]), consistency_level=cl
    )
    cluster = Cluster([ip], protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    return cluster, cluster.connect()


def probe_lag(
    dc_ips: dict[str, str], keyspace: str, samples: int, *, rate: float | None = None
) -> dict[str, Any]:
    """Per direction ``src->dst`` between every pair of ``dc_ips``: write a row
    at LOCAL_QUORUM in src, poll it at LOCAL_ONE in dst until it is there.
    ``rate`` paces the writes (None: back to back). Also used by bench/wan.py."""
    clusters = []
    writers, readers = {}, {}
    for dc, ip in dc_ips.items():
        c1, writers[dc] = session_on(ip, ConsistencyLevel.LOCAL_QUORUM)
        c2, readers[dc] = session_on(ip, ConsistencyLevel.LOCAL_ONE)
        clusters += [c1, c2]
    replicas = ", ".join(f"'{dc}': 1" for dc in dc_ips)
    try:
        w = next(iter(writers.values()))
        w.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
            f"{{'class': 'NetworkTopologyStrategy', {replicas}}}"
        )
        w.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.probe (k uuid PRIMARY KEY, t bigint)")
        w.cluster.control_connection.wait_for_schema_agreement(wait_time=60)
        out: dict[str, Any] = {}
        for src in dc_ips:
            insert = writers[src].prepare(f"INSERT INTO {keyspace}.probe (k, t) VALUES (?, ?)")
            for dst in dc_ips:
                if dst == src:
                    continue
                select = readers[dst].prepare(f"SELECT t FROM {keyspace}.probe WHERE k = ?")
                write, after_ack, after_start, polls, poll_rtt = [], [], [], [], []
                for _ in range(samples):
                    key = uuid.uuid4()
                    t0 = time.perf_counter()
                    writers[src].execute(insert, (key, time.time_ns()))
                    t1 = time.perf_counter()
                    n = 0
                    while True:
                        p0 = time.perf_counter()
                        row = readers[dst].execute(select, (key,)).one()
                        p1 = time.perf_counter()
                        n += 1
                        poll_rtt.append((p1 - p0) * 1000)
                        if row is not None:
                            break
                    write.append((t1 - t0) * 1000)
                    after_ack.append((p1 - t1) * 1000)
                    after_start.append((p1 - t0) * 1000)
                    polls.append(n)
                    if rate is not None:
                        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
                out[f"{src}->{dst}"] = {
                    "write_local_quorum": summary(write),
                    "visible_after_ack": summary(after_ack),
                    "visible_after_write_start": summary(after_start),
                    "first_poll_hit_ratio": round(sum(1 for n in polls if n == 1) / len(polls), 3),
                    "poll_rtt": summary(poll_rtt),
                }
        return out
    finally:
        for c in clusters:
            c.shutdown()


def replication_lag(samples: int, rate: float) -> dict[str, Any]:
    return probe_lag(DC_IP, KEYSPACE, samples, rate=rate)


def _device(box_id: uuid.UUID) -> Device:
    return Device(
        box_id=box_id,
        device_id=uuid.uuid4(),
        name="bench",
        keys=DeviceKeys(b"e" * 32, b"s" * 32, b"k" * 64),
        hawk_key=b"h" * 32,
        state=DeviceState.ACTIVE,
        created_at=time.time(),
    )


async def store_send(samples: int, rate: float) -> dict[str, Any]:
    url = "cassandra://{ip}:9042/" + KEYSPACE + "?local_dc={dc}&replication=dc1:1,dc2:1"
    east = open_store(url.format(ip=DC_IP["dc1"], dc="dc1"))
    west = open_store(url.format(ip=DC_IP["dc2"], dc="dc2"))
    try:
        await east.migrate()
        box = uuid.uuid4()
        owner = _device(box)
        await east.create_box(Box(box, "dc1", time.time()), owner)
        await asyncio.sleep(1)
        out: dict[str, Any] = {}
        for name, store in (("home_local (dc1 store)", east), ("home_remote (dc2 store)", west)):
            lat: list[float] = []
            for i in range(samples + 10):
                message = NewMessage(uuid.uuid4(), box, owner.device_id, b"x" * 200)
                t0 = time.perf_counter()
                await store.enqueue(box, message)
                if i >= 10:  # warm-up: prepares, pools
                    lat.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
            out[name] = summary(lat)
            page = await east.fetch(box, owner.device_id, limit=500)
            if page.messages:
                await east.ack(box, owner.device_id, page.messages[-1].position)
        return out
    finally:
        await east.close()
        await west.close()


async def grpc_send(samples: int, rate: float) -> dict[str, Any]:
    # The raw-API test device (tests/api/device.py): Register, Authorize
    # with outbox codes, Hawk-signed Send.
    from tests.api.device import Device as ApiDevice
    from tests.api.device import email
    from tests.ops.helpers import ProcessApi
    from tests.serverproc import ServerProcess

    url = "cassandra://{ip}:9042/" + KEYSPACE + "?local_dc={dc}&replication=dc1:1,dc2:1"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # One device sends --rate Sends a second: the per-device send limit
        # is off, this measures lag, not the abuse limit.
        unlimited = ("--send-rate-per-device", "0")
        a = ServerProcess(
            work, url.format(ip=DC_IP["dc1"], dc="dc1"), "--region", "dc1", *unlimited
        )
        b = ServerProcess(
            work, url.format(ip=DC_IP["dc2"], dc="dc2"), "--region", "dc2", *unlimited
        )
        try:
            a.start(timeout=90)
            b.start(timeout=90)
            api_a, api_b = ProcessApi(a), ProcessApi(b)
            try:
                alice = await ApiDevice(api_a, email("alice")).join()  # home dc1
                carol_a = await ApiDevice(api_a, email("carol")).join()
                carol_b = await ApiDevice(api_b, email("carol")).join()  # home dc2
                out: dict[str, Any] = {}
                routes = (("via A (home local)", carol_a), ("via B (home remote)", carol_b))
                for name, sender in routes:
                    lat: list[float] = []
                    for i in range(samples + 10):
                        t0 = time.perf_counter()
                        reply = await sender.send((alice.box_id, b"x" * 200, None))
                        assert reply.results[0].outcome == 1, reply
                        if i >= 10:
                            lat.append((time.perf_counter() - t0) * 1000)
                        await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
                    out[name] = summary(lat)
                    await alice.drain()
                return out
            finally:
                await api_a.close()
                await api_b.close()
        finally:
            for server in (a, b):
                if server.proc is not None and server.proc.poll() is None:
                    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="samples per second")
    parser.add_argument("--skip-grpc", action="store_true")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    results: dict[str, Any] = {"samples": args.samples, "rate_per_s": args.rate}
    results["replication_lag"] = replication_lag(args.samples, args.rate)
    results["store_enqueue"] = asyncio.run(store_send(args.samples, args.rate))
    if not args.skip_grpc:
        results["grpc_send"] = asyncio.run(grpc_send(args.samples, args.rate))
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
