"""Rossby under the simulated WAN (docs/wan.md): the "before" figures of issue 20.

A three-DC cluster behind Toxiproxy (``launcher.py start --nodes 3 --dcs 3
--wan-latency-ms MS``; ``--keep`` reuses one running in ``--dir``), a
keyspace replicated ``dc1:1,dc2:1,dc3:1`` and one ``rossby serve --region
dcN`` per region. One request at a time, ``--count`` of each:

1. **Home routing**: Send via dc1 into a box homed in dc1 (local) and in dc2
   (remote); Fetch and Ack of a dc1-homed device via dc1 (local) and of a
   dc2-homed device via dc1 (remote), with the dc1 server's CPU per call;
2. **Replication lag** per direction: a row written at LOCAL_QUORUM in dcX,
   polled at LOCAL_ONE in dcY until visible (bench/replication_lag.py's
   method, six directions);
3. **Cross-region realtime**: a device streaming via dc1 (box homed in dc1),
   a sender homed in dc3 sending via dc3; from the Send's start to the
   stream's message event.

The launcher's WAN delays only traffic *between* Cassandra nodes. A Rossby
server's driver reaches other DCs' nodes at their own addresses, and servers
notify each other's Peer service on loopback: neither is delayed. So parts 1
and 3 run twice (``--server-links both``): ``direct`` (the WAN as built) and
``wan``, where each server's driver reaches the other DCs' nodes through a
proxy with the WAN's latency each way (bench/_wan_serve.py) and each
server's Peer address is a proxy with the same latency: what a deployment
with regions really apart pays.

    PYTHONPATH=$PWD .venv/bin/python bench/wan.py --first 70 --dir var/wan-bench \\
        --latency-ms 40 --count 40 --json wan.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench._harness import machine, tree_cpu_seconds  # noqa: E402
from bench.replication_lag import probe_lag, summary  # noqa: E402
from rossby.client.hawk import stream_signed  # noqa: E402
from rossby.loadtest.device import SERVICE  # noqa: E402
from rossby.store import open_store  # noqa: E402
from rossby.v1 import rossby_pb2 as pb  # noqa: E402
from tests.api.device import Device, email  # noqa: E402
from tests.conftest import cassandra_url, load_launcher  # noqa: E402
from tests.replication.conftest import Region, via  # noqa: E402
from tests.serverproc import ServerProcess, free_port  # noqa: E402

DCS = ("dc1", "dc2", "dc3")
KEYSPACE = "rossby_bench_wan"
REPLICATION = "dc1:1,dc2:1,dc3:1"
PREFIX = "wanbench-"  # the names of the proxies this script adds (and removes)
WRAPPER = ROOT / "bench" / "_wan_serve.py"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the cluster and the extra proxies ----------------------------------------------


@dataclass
class Cluster:
    launcher: Any
    links: Any  # deploy/wan/links.py WanLinks
    ips: dict[str, str]  # dc -> node ip
    first: int
    started: bool


@contextlib.contextmanager
def cluster(args: argparse.Namespace) -> Iterator[Cluster]:
    launcher = load_launcher()
    started = False
    if args.keep:
        nodes = [n for n in launcher.nodes(args.dir) if n.cql_up()]
        if len(nodes) != 3:
            raise SystemExit(f"--keep: no running 3-node cluster in {args.dir}")
    else:
        t0 = time.monotonic()
        nodes = launcher.start(
            nodes=3,
            dcs=3,
            dir=args.dir,
            first=args.first,
            heap_max="512M",
            cluster_name="rossby-wan-bench",
            wan=launcher.links.WanSettings(latency_ms=args.latency_ms),
            log=log,
        )
        started = True
        log(f"cluster up in {time.monotonic() - t0:.1f}s")
    links = launcher.wan_links(args.dir)
    links.set_latency(args.latency_ms)
    try:
        yield Cluster(launcher, links, {n.dc: n.ip for n in nodes}, args.first, started)
    finally:
        for name in links.api.proxies():
            if name.startswith(PREFIX):
                links.api.delete(name)
        if started:
            launcher.stop(args.dir, log=log)


def wan_proxy(c: Cluster, name: str, listen: str, upstream: str, ms: float) -> str:
    """A proxy with ``ms`` one way in both directions; returns its address."""
    latency = c.launcher.links.latency  # deploy/wan/proxy.py's, as links.py imports it
    address = c.links.api.create(PREFIX + name, listen, upstream)
    for stream in ("upstream", "downstream"):
        c.links.api.put(PREFIX + name, latency(f"lat-{stream}", ms, 0, stream))
    return str(address)


# -- the servers --------------------------------------------------------------------


def cpu(region: Region) -> float:
    assert region.server.proc is not None
    return tree_cpu_seconds(region.server.proc.pid)


def url(c: Cluster, dc: str) -> str:
    return cassandra_url([f"{c.ips[dc]}:9042"], KEYSPACE, local_dc=dc, replication=REPLICATION)


@contextlib.asynccontextmanager
async def regions(
    c: Cluster, workdir: Path, links: str, ms: float
) -> AsyncIterator[dict[str, Region]]:
    """A server per region; ``links == "wan"``: through the delaying proxies."""
    servers = {}
    for i, dc in enumerate(DCS):
        extra = [
            "--region",
            dc,
            "--send-rate-per-device",
            "0",
            "--register-rate-per-address",
            "0",
            "--stream-poll",
            "600",
            "--log-level",
            "warning",
        ]
        env: dict[str, str] = {}
        if links == "wan":
            table = []
            for j, other in enumerate(DCS):
                if other != dc:  # 127.0.3.<first + 3i + j>:9042 -> the dcj node
                    proxy_ip = f"127.0.3.{c.first + 3 * i + j}"
                    wan_proxy(
                        c, f"cql-{dc}-{other}", f"{proxy_ip}:9042", f"{c.ips[other]}:9042", ms
                    )
                    table.append(f"{c.ips[other]}={proxy_ip}")
            env["ROSSBY_BENCH_CQL_VIA"] = ",".join(table)
            peer = free_port()
            address = wan_proxy(c, f"peer-{dc}", "127.0.0.1:0", f"127.0.0.1:{peer}", ms)
            extra += ["--peer-listen", f"127.0.0.1:{peer}", "--peer-address", address]
        server = ServerProcess(workdir, url(c, dc), *extra, env=env)
        if links == "wan":
            server.args[1:3] = [str(WRAPPER)]  # python bench/_wan_serve.py serve ...
        servers[dc] = server
    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(s.start, 120) for s in servers.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        out = {dc: Region(dc, s) for dc, s in servers.items()}
        try:
            yield out
        finally:
            for region in out.values():
                await region.api.close()
    finally:
        for s in servers.values():
            if s.proc is not None and s.proc.poll() is None:
                s.stop()
        if links == "wan":
            for name in c.links.api.proxies():
                if name.startswith(PREFIX):
                    c.links.api.delete(name)


async def joined(region: Region, name: str) -> Device:
    return await Device(region.api, email(f"{name}-{uuid.uuid4().hex[:8]}")).join()


# -- part 1: home routing ------------------------------------------------------------


async def timed(
    name: str, count: int, warmup: int, cpu_of: Region, call: Callable[[int], Any]
) -> dict[str, Any]:
    """``call(i)`` for i in 0..warmup+count-1, one at a time, the first
    ``warmup`` untimed; latency summary, and the CPU the measuring region's
    server spent per timed call."""
    for i in range(warmup):
        await call(i)
    lat: list[float] = []
    cpu0 = cpu(cpu_of)
    for i in range(warmup, warmup + count):
        t0 = time.perf_counter()
        await call(i)
        lat.append((time.perf_counter() - t0) * 1000)
    spent = cpu(cpu_of) - cpu0
    out = {"name": name, **summary(lat), "server_cpu_us_per_call": round(spent / count * 1e6)}
    log(f"  {name}: p50 {out['p50_ms']} ms p99 {out['p99_ms']} ms")
    return out


async def home_routing(r: dict[str, Region], count: int, warmup: int) -> list[dict[str, Any]]:
    sender = await joined(r["dc1"], "sender")  # homed in dc1
    alice = await joined(r["dc1"], "alice")  # homed in dc1, read via dc1
    bob = await joined(r["dc2"], "bob")  # homed in dc2, read via dc1
    bob_via_dc1 = via(bob, r["dc1"])
    n = count + warmup
    out = []

    def send_to(box: uuid.UUID) -> Callable[[int], Any]:
        async def call(_: int) -> None:
            reply = await sender.send((box, b"x" * 200, None))
            assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED, reply

        return call

    out.append(
        await timed(
            "Send local (box homed dc1, via dc1)", count, warmup, r["dc1"], send_to(alice.box_id)
        )
    )
    out.append(
        await timed(
            "Send remote (box homed dc2, via dc1)", count, warmup, r["dc1"], send_to(bob.box_id)
        )
    )
    for label, reader in (
        ("local (device homed dc1, via dc1)", alice),
        ("remote (device homed dc2, via dc1)", bob_via_dc1),
    ):
        positions = [m.position for m in (await reader.fetch(limit=n)).messages]
        assert len(positions) == n, (label, len(positions))

        async def fetch(_: int, reader: Device = reader) -> None:
            page = await reader.fetch(limit=10)
            assert page.messages

        async def ack(i: int, reader: Device = reader, positions: list[int] = positions) -> None:
            await reader.ack(positions[i])

        out.append(await timed(f"Fetch {label}", count, warmup, r["dc1"], fetch))
        out.append(await timed(f"Ack {label}", count, warmup, r["dc1"], ack))
    return out


# -- part 2: replication lag -----------------------------------------------------------


def replication_lag(c: Cluster, samples: int) -> dict[str, Any]:
    out = probe_lag(c.ips, KEYSPACE + "_probe", samples)
    for direction, row in out.items():
        s = row["visible_after_write_start"]
        log(f"  lag {direction}: from write start p50 {s['p50_ms']} p99 {s['p99_ms']} ms")
    return out


# -- part 3: cross-region realtime -----------------------------------------------------


async def realtime(r: dict[str, Region], count: int, warmup: int) -> dict[str, Any]:
    dave = await joined(r["dc1"], "dave")  # streams via dc1, homed in dc1
    carol = await joined(r["dc3"], "carol")  # homed in dc3, sends via dc3
    assert dave.signer is not None
    events: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    live = asyncio.Event()

    async def listen() -> None:
        assert dave.signer is not None
        stream = stream_signed(
            dave.api.channel,
            dave.signer,
            SERVICE + "Subscribe",
            pb.SubscribeRequest(),
            pb.SubscribeEvent,
        )
        async for event in stream:
            kind = event.WhichOneof("event")
            if kind == "live":
                live.set()
            elif kind == "message":
                await events.put((event.message.message_id, time.perf_counter()))

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(live.wait(), 30)
        await asyncio.sleep(2)  # the presence row replicates to dc3
        e2e, rpc, after = [], [], []
        timeouts = 0
        for i in range(count + warmup):
            mid = str(uuid.uuid4())
            t0 = time.perf_counter()
            await carol.send((dave.box_id, b"rt", uuid.UUID(mid)))
            t1 = time.perf_counter()
            try:
                while True:
                    got, at = await asyncio.wait_for(events.get(), 10)
                    if got == mid:
                        break
            except TimeoutError:
                timeouts += 1
                continue
            if i >= warmup:
                e2e.append((at - t0) * 1000)
                rpc.append((t1 - t0) * 1000)
                after.append(max(0.0, at - t1) * 1000)
            await asyncio.sleep(0.05)
        out: dict[str, Any] = {
            "send_start_to_event": summary(e2e),
            "send_rpc": summary(rpc),
            "send_answer_to_event": summary(after),
            "not_delivered_within_10s": timeouts,
        }
        s = out["send_start_to_event"]
        log(f"  realtime dc3->dc1: p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms")
        return out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# -- main -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, c: Cluster) -> dict[str, Any]:
    async with open_store(url(c, "dc1")) as store:
        await store.migrate()
    results: dict[str, Any] = {}
    modes = ("direct", "wan") if args.server_links == "both" else (args.server_links,)
    for mode in modes:
        log(f"server links: {mode}")
        with tempfile.TemporaryDirectory(prefix="rossby-wan-bench-") as tmp:
            async with regions(c, Path(tmp), mode, args.latency_ms) as r:
                t0 = time.monotonic()
                part: dict[str, Any] = {
                    "home_routing": await home_routing(r, args.count, args.warmup)
                }
                part["realtime_dc3_to_dc1"] = await realtime(r, args.count, args.warmup)
                part["seconds"] = round(time.monotonic() - t0, 1)
                part["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                results[mode] = part
    log("replication lag")
    results["replication_lag"] = replication_lag(c, args.lag_samples)
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| operation | server links | n | p50 ms | p99 ms | max ms | dc1 server CPU/call |"]
    lines.append("|---|---|---|---|---|---|---|")
    for mode in ("direct", "wan"):
        if mode not in results:
            continue
        for row in results[mode]["home_routing"]:
            lines.append(
                f"| {row['name']} | {mode} | {row['n']} | {row['p50_ms']:.1f} "
                f"| {row['p99_ms']:.1f} | {row['max_ms']:.1f} "
                f"| {row['server_cpu_us_per_call']} µs |"
            )
        rt = results[mode]["realtime_dc3_to_dc1"]
        for key in ("send_start_to_event", "send_rpc", "send_answer_to_event"):
            s = rt[key]
            lines.append(
                f"| realtime dc3→dc1 {key} | {mode} | {s['n']} | {s['p50_ms']:.1f} "
                f"| {s['p99_ms']:.1f} | {s['max_ms']:.1f} | |"
            )
    lines += ["", "| lag | write p50 | visible after ack p50 / p99 | after write start p50 / p99 |"]
    lines.append("|---|---|---|---|")
    for direction, row in results.get("replication_lag", {}).items():
        w, a, s = (
            row["write_local_quorum"],
            row["visible_after_ack"],
            row["visible_after_write_start"],
        )
        lines.append(
            f"| {direction} | {w['p50_ms']:.1f} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} "
            f"| {s['p50_ms']:.1f} / {s['p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--first", type=int, default=40, help="first node index (127.0.0.FIRST..+2)"
    )
    parser.add_argument(
        "--dir", default=str(ROOT / "var" / "wan-bench"), help="cluster runtime dir"
    )
    parser.add_argument(
        "--keep", action="store_true", help="reuse the WAN cluster running in --dir"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=40.0, help="one-way latency between DCs"
    )
    parser.add_argument("--count", type=int, default=40, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--lag-samples", type=int, default=30, help="writes per lag direction")
    parser.add_argument(
        "--server-links",
        choices=("direct", "wan", "both"),
        default="both",
        help="servers reach other DCs' nodes and peers directly, through delaying proxies, or both",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "latency_ms_one_way": args.latency_ms,
        "count": args.count,
        "machine": machine(),
    }
    with cluster(args) as c:
        results.update(asyncio.run(run(args, c)))
    results["seconds"] = round(time.time() - started, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(table(results))
    print(json.dumps(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
