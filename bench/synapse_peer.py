"""A peer: Matrix Synapse on SQLite on loopback, the same 1 KiB messages at the same concurrency.

Synapse lives in its OWN virtualenv (never the project's)::

    python3 -m venv /tmp/bench-synapse-venv
    /tmp/bench-synapse-venv/bin/pip install matrix-synapse

This script generates a homeserver config under ``--dir``, lifts every rate
limit, turns presence off, binds 127.0.0.1 only, starts the homeserver,
registers two users through the shared-secret admin API, creates ``--rooms``
private rooms (A invites B, B joins), then:

1. throughput: ``--concurrency`` workers PUT ``m.room.message`` events of
   ``--payload-bytes`` characters round-robin into the rooms, for
   ``--seconds`` (or ``--count`` messages);
2. send -> sync latency: serially, A sends and B's long-poll ``/sync``
   sees the event; ``--latency-samples`` samples.

Prints one JSON line. The homeserver is stopped at the end.

    .venv/bin/python bench/synapse_peer.py --synapse-python /tmp/bench-synapse-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
from _harness import closed_loop, emit, new_histogram

PATCH = r"""
import sys, yaml
path, port = sys.argv[1], int(sys.argv[2])
cfg = yaml.safe_load(open(path))
cfg["listeners"] = [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
    "tls": False, "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}]
lots = {"per_second": 100000, "burst_count": 100000}
for key in ("rc_message", "rc_registration", "rc_room_creation", "rc_admin_redaction",
            "rc_third_party_invite", "rc_3pid_validation", "rc_media_create",
            "rc_registration_token_validity", "rc_delayed_event_mgmt", "rc_reports"):
    cfg[key] = dict(lots)
cfg["rc_login"] = {k: dict(lots) for k in ("address", "account", "failed_attempts")}
cfg["rc_joins"] = {k: dict(lots) for k in ("local", "remote")}
cfg["rc_joins_per_room"] = dict(lots)
cfg["rc_invites"] = {k: dict(lots) for k in ("per_room", "per_user", "per_issuer")}
cfg["rc_presence"] = {"per_user": dict(lots)}
cfg["presence"] = {"enabled": False}
cfg["trusted_key_servers"] = []
cfg["suppress_key_server_warning"] = True
cfg["report_stats"] = False
cfg["enable_metrics"] = False
yaml.safe_dump(cfg, open(path, "w"))
print(cfg["registration_shared_secret"])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(py: str, workdir: Path, port: int) -> str:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    config = workdir / "homeserver.yaml"
    subprocess.run(
        [py, "-m", "synapse.app.homeserver", "--server-name", "localhost",
         "--config-path", str(config), "--data-directory", str(workdir),
         "--generate-config", "--report-stats=no"],
        cwd=workdir, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    out = subprocess.run(
        [py, "-c", PATCH, str(config), str(port)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


async def wait_up(base: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"synapse exited {proc.returncode}")
            try:
                async with http.get(f"{base}/_matrix/client/versions") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"synapse did not answer within {seconds}s")


async def register(http: aiohttp.ClientSession, base: str, secret: str, user: str) -> str:
    url = f"{base}/_synapse/admin/v1/register"
    async with http.get(url) as r:
        nonce = (await r.json())["nonce"]
    password = secrets.token_hex(12)
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\x00{user}\x00{password}\x00notadmin".encode())
    body = {"nonce": nonce, "username": user, "password": password, "mac": mac.hexdigest()}
    async with http.post(url, json=body) as r:
        data = await r.json()
        if r.status != 200:
            raise RuntimeError(f"register {user}: {r.status} {data}")
        return str(data["access_token"])


async def bench(args: argparse.Namespace, base: str, secret: str) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=args.concurrency + 4)
    async with aiohttp.ClientSession(connector=conn) as http:
        a = await register(http, base, secret, "alice")
        b = await register(http, base, secret, "bob")
        ha, hb = {"Authorization": f"Bearer {a}"}, {"Authorization": f"Bearer {b}"}
        rooms = []
        for _ in range(args.rooms):
            body = {"preset": "private_chat", "invite": ["@bob:localhost"]}
            async with http.post(
                f"{base}/_matrix/client/v3/createRoom", json=body, headers=ha
            ) as r:
                room = (await r.json())["room_id"]
            async with http.post(f"{base}/_matrix/client/v3/join/{room}", json={}, headers=hb) as r:
                r.raise_for_status()
            rooms.append(room)

        text = secrets.token_urlsafe(args.payload_bytes)[: args.payload_bytes]
        turn = 0

        async def send(room: str, body: str) -> None:
            txn = secrets.token_hex(8)
            url = f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
            async with http.put(url, json={"msgtype": "m.text", "body": body}, headers=ha) as r:
                if r.status != 200:
                    raise RuntimeError(f"send: HTTP {r.status}")
                await r.read()

        async def call() -> None:
            nonlocal turn
            turn += 1
            await send(rooms[turn % len(rooms)], text)

        result = await closed_loop("synapse send", call, args.concurrency, args.seconds, args.count)

        # send -> sync: B long-polls; A sends one marked message at a time.
        async with http.get(f"{base}/_matrix/client/v3/sync?timeout=0", headers=hb) as r:
            since = (await r.json())["next_batch"]
        seen: dict[str, float] = {}
        waiting: dict[str, asyncio.Event] = {}
        stop = asyncio.Event()

        async def poll() -> None:
            nonlocal since
            while not stop.is_set():
                url = f"{base}/_matrix/client/v3/sync?since={since}&timeout=5000"
                async with http.get(url, headers=hb) as r:
                    data = await r.json()
                now = time.perf_counter()
                since = data["next_batch"]
                for room in data.get("rooms", {}).get("join", {}).values():
                    for event in room.get("timeline", {}).get("events", []):
                        marker = event.get("content", {}).get("body", "")[:24]
                        seen.setdefault(marker, now)
                        if marker in waiting:
                            waiting[marker].set()

        poller = asyncio.create_task(poll())
        sync_hist = new_histogram()
        missed = 0
        await asyncio.sleep(0.3)
        for i in range(args.latency_samples):
            marker = f"m{i:04d}-{secrets.token_hex(9)}"[:24]
            waiting[marker] = asyncio.Event()
            started = time.perf_counter()
            await send(rooms[i % len(rooms)], marker + text[24:])
            try:
                await asyncio.wait_for(waiting[marker].wait(), timeout=10)
            except TimeoutError:
                pass
            if marker in seen:
                sync_hist.record_value(max(1, int((seen[marker] - started) * 1_000_000)))
            else:
                missed += 1
        stop.set()
        try:
            await asyncio.wait_for(poller, timeout=7)
        except (TimeoutError, aiohttp.ClientError):
            poller.cancel()
    out = result.to_dict()
    out.update(
        rooms=args.rooms,
        concurrency=args.concurrency,
        payload_bytes=args.payload_bytes,
        send_to_sync_ms={
            f"p{p:g}": sync_hist.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)
        }
        if sync_hist.get_total_count()
        else {},
        send_to_sync_samples=int(sync_hist.get_total_count()),
        send_to_sync_missed=missed,
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--synapse-python", default="/tmp/bench-synapse-venv/bin/python")
    p.add_argument("--dir", default="bench/out/synapse")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--count", type=int)
    p.add_argument("--rooms", type=int, default=8)
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--latency-samples", type=int, default=30)
    args = p.parse_args()
    py = args.synapse_python
    version = subprocess.run(
        [py, "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    workdir = Path(args.dir).absolute()
    port = free_port()
    secret = configure(py, workdir, port)
    log = open(workdir / "stdout.log", "wb")
    proc = subprocess.Popen(
        [py, "-m", "synapse.app.homeserver", "-c", str(workdir / "homeserver.yaml")],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_up(base, proc, 120))
        out = asyncio.run(bench(args, base, secret))
        out["synapse_version"] = version
        emit(out)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


if __name__ == "__main__":
    main()
