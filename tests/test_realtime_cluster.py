"""Real-time delivery across server processes: ``rossby serve`` subprocesses
sharing one Cassandra (presence rows + peer Notify), and ``--workers 2`` on
one SQLite file.

Every process runs with a safety-net poll of 600 s, so a message that
arrives within the test's waits came through presence and a peer notify.
All processes share ``--state-dir`` (same contact-hash key and server
secret, as regions of one deployment do) and sign Hawk for one public
address (``--public-host``/``--public-port``), as processes behind one load
balancer do, so a device can talk to any of them with the same signer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import migrate_in_thread
from tests.api.device import SERVICE, Device, email
from tests.api.test_realtime import Subscription
from tests.conftest import cassandra_url
from tests.serverproc import ServerProcess, rossby

PUBLIC_PORT = 1205
COMMON = (
    "--stream-poll",
    "600",
    "--public-host",
    "127.0.0.1",
    "--public-port",
    str(PUBLIC_PORT),
    "--log-level",
    "info",
)


class Remote:
    """What tests.api.device.Device needs from an "api": a channel to one
    process, the shared outbox, the Hawk port and a clock."""

    def __init__(self, target: str, outbox: Path, channel: grpc.aio.Channel | None = None) -> None:
        self.target = target
        self.channel = channel or grpc.aio.insecure_channel(target)
        self.outbox = outbox
        self.server = SimpleNamespace(port=PUBLIC_PORT)
        self.clock = time.time

    async def close(self) -> None:
        await self.channel.close()


def metric(proc: ServerProcess, name: str) -> float:
    """Sum of a metric's samples on the process's /metrics."""
    url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def cluster_url(cassandra_hosts: list[str]) -> str:
    url = cassandra_url(cassandra_hosts, "rossby_realtime", replication="dc1:1")
    migrate_in_thread(url)
    return url


class Cluster:
    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.procs: list[ServerProcess] = []
        self.remotes: list[Remote] = []

    def start(self, *extra: str) -> ServerProcess:
        proc = ServerProcess(self.workdir, self.url, *COMMON, *extra).start()
        self.procs.append(proc)
        return proc

    def remote(self, proc: ServerProcess) -> Remote:
        remote = Remote(proc.target, self.workdir / "outbox")
        self.remotes.append(remote)
        return remote

    def stop(self) -> None:
        for proc in self.procs:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()


@pytest.fixture
def cluster(cluster_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, cluster_url)
    try:
        yield c
    finally:
        c.stop()


async def ephemeral_send(device: Device, *boxes: uuid.UUID | None) -> pb.SendResponse:
    mid = str(uuid.uuid4())
    return await device.call(
        "Send",
        pb.SendRequest(
            ephemeral=True,
            messages=[
                pb.OutgoingMessage(recipient_box_id=str(b), message_id=mid, ciphertext=b"typing")
                for b in boxes
            ],
        ),
        pb.SendResponse,
    )


@pytest.mark.cassandra
async def test_a_device_streaming_from_one_process_gets_what_another_queued(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(), cluster.start()
    bob = await Device(cluster.remote(one), email("bob")).join()
    alice = await Device(cluster.remote(two), email("alice")).join()
    sub = Subscription(bob).start()
    try:
        await sub.until("live")
        mids = [uuid.uuid4() for _ in range(5)]
        for mid in mids:
            await alice.send((bob.box_id, b"from the other process", mid))
        got = await sub.messages(5)
        assert [m.message_id for m in got] == [str(m) for m in mids]
        assert metric(one, "rossby_peer_notifies_total") >= 1
        assert metric(two, "rossby_stream_events_total") == 0  # nothing streamed there
    finally:
        await sub.close()
        for r in cluster.remotes:
            await r.close()


@pytest.mark.cassandra
async def test_a_stream_killed_mid_way_resumes_elsewhere_with_no_loss(cluster: Cluster) -> None:
    one, two = cluster.start(), cluster.start()
    bob_home = cluster.remote(one)
    bob = await Device(bob_home, email("bob")).join()
    alice = await Device(cluster.remote(two), email("alice")).join()
    sent: list[str] = []
    done = asyncio.Event()

    async def keep_sending() -> None:
        for i in range(60):
            mid = uuid.uuid4()
            await alice.send((bob.box_id, f"m{i}".encode(), mid))
            sent.append(str(mid))
            await asyncio.sleep(0.02)
        done.set()

    first = Subscription(bob).start()
    await first.until("live")
    sender = asyncio.create_task(keep_sending())
    got: dict[str, pb.QueuedMessage] = {}
    try:
        for m in await first.messages(15):
            got[m.message_id] = m
        await bob.ack(max(m.position for m in got.values()) - 1)  # acked all but the last
        one.stop(signal.SIGKILL)  # the process dies mid-stream
        while True:  # what was already in flight may still arrive, then the error
            event = await first.next()
            if isinstance(event, pb.SubscribeEvent):
                if event.WhichOneof("event") == "message":
                    got[event.message.message_id] = event.message
                continue
            assert isinstance(event, grpc.aio.AioRpcError)
            assert event.code() == grpc.StatusCode.UNAVAILABLE
            break
        # The client reconnects to the surviving process, resuming after
        # the last message it processed.
        bob.api = cluster.remote(two)
        resume = max(m.position for m in got.values())
        second = Subscription(bob, after=resume).start()
        await asyncio.wait_for(done.wait(), 60)
        opening = await second.until("live")
        for event in opening:
            if event.WhichOneof("event") == "message":
                got[event.message.message_id] = event.message
        missing = set(sent) - set(got)
        if missing:
            for m in await second.messages(len(missing)):
                got[m.message_id] = m
        assert set(got) == set(sent)  # nothing lost (repeats were dropped by id)
        await second.close()
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await first.close()
        for r in cluster.remotes:
            await r.close()


@pytest.mark.cassandra
async def test_ephemeral_reaches_only_online_devices_across_processes(cluster: Cluster) -> None:
    one, two = cluster.start(), cluster.start()
    bob = await Device(cluster.remote(one), email("bob")).join()
    carol = await Device(cluster.remote(one), email("carol")).join()  # offline
    alice = await Device(cluster.remote(two), email("alice")).join()
    sub = Subscription(bob).start()
    try:
        await sub.until("live")
        reply = await ephemeral_send(alice, bob.box_id, carol.box_id)
        assert [r.outcome for r in reply.results] == [pb.SEND_OUTCOME_EPHEMERAL] * 2
        event = (await sub.until("ephemeral"))[-1].ephemeral
        assert (event.ciphertext, event.sender_box_id) == (b"typing", str(alice.box_id))
        assert list((await bob.fetch()).messages) == []
        assert list((await carol.fetch()).messages) == []
        late = Subscription(carol).start()
        assert [e.WhichOneof("event") for e in await late.until("live")] == ["live"]
        await late.close()
    finally:
        await sub.close()
        for r in cluster.remotes:
            await r.close()


@pytest.mark.cassandra
async def test_a_stream_that_never_reads_stays_bounded_and_gets_catch_up(
    cluster: Cluster,
) -> None:
    bound = 4
    one = cluster.start("--stream-buffer", str(bound), "--stream-stall", "0.5")
    two = cluster.start()
    bob = await Device(cluster.remote(one), email("bob")).join()
    alice = await Device(cluster.remote(two), email("alice")).join()
    assert bob.signer is not None
    path = SERVICE + "Subscribe"
    payload = pb.SubscribeRequest().SerializeToString()
    call = bob.stub_channel.unary_stream(
        path, request_serializer=None, response_deserializer=pb.SubscribeEvent.FromString
    )(payload, metadata=bob.signer.sign(path, payload))
    try:
        while (await call.read()).WhichOneof("event") != "live":
            pass
        sent = []
        for i in range(120):  # ~7 MB: more than HTTP/2 windows hold
            mid = uuid.uuid4()
            await alice.send((bob.box_id, bytes([i % 256]) * 60_000, mid))
            sent.append(str(mid))
            if i % 20 == 19 and metric(one, "rossby_stream_catch_ups_total") >= 1:
                break
        deadline = time.monotonic() + 30
        while metric(one, "rossby_stream_catch_ups_total") < 1:
            assert time.monotonic() < deadline, "the stream never fell behind"
            await asyncio.sleep(0.1)
        assert metric(one, "rossby_stream_buffer_peak") == bound
        got, caught_up = [], None
        while (event := await call.read()) is not grpc.aio.EOF:
            if event.WhichOneof("event") == "message":
                got.append(event.message.message_id)
            elif event.WhichOneof("event") == "catch_up":
                caught_up = event.catch_up
        assert caught_up is not None and caught_up.reason == "SLOW_CONSUMER"
        assert await call.code() == grpc.StatusCode.OK
        assert got == sent[: len(got)]
        fetched: list[str] = []
        after = 0
        while True:  # catching up by Fetch finds everything
            page = await bob.fetch(after=after, limit=20)
            fetched += [m.message_id for m in page.messages if m.message_id not in fetched]
            after = page.next_after
            if not page.more:
                break
        assert fetched == sent
    finally:
        call.cancel()
        for r in cluster.remotes:
            await r.close()


# -- --workers on one SQLite file ---------------------------------------------------


def _worker_addresses(log: Path, want: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for line in log.read_text().splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "realtime" and entry.get("peer_address"):
                found.append(entry["peer_address"])
        if len(found) >= want:
            return found
        time.sleep(0.1)
    raise AssertionError(f"workers did not log their peer addresses:\n{log.read_text()}")


def _worker_of_last_register(log: Path, seen: int) -> tuple[int, object]:
    """How many Register calls the log shows, and the worker of the last one."""
    lines = [
        entry
        for entry in (json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{")
        if entry.get("event") == "rpc" and entry.get("method") == "Register"
    ]
    return len(lines), (lines[-1].get("worker") if len(lines) > seen else None)


async def _unimplemented(target: str, path: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            await call(b"", timeout=10)
        except grpc.aio.AioRpcError as exc:
            return bool(exc.code() == grpc.StatusCode.UNIMPLEMENTED)
        return False


async def _only_peer_on(*targets: str) -> None:
    """A worker's Peer port serves no public method (it once served them all,
    so a replay could be aimed at one chosen worker)."""
    for target in targets:
        for method in ("Register", "Fetch", "Send"):
            assert await _unimplemented(target, SERVICE + method), (target, method)


async def _no_peer_on(target: str) -> None:
    assert await _unimplemented(target, "/rossby.v1.Peer/Notify")


async def _channel_to_worker(proc: ServerProcess, worker: int) -> grpc.aio.Channel:
    """A connection through the shared port that the kernel gave ``worker``.

    Each try is a new TCP connection (a local subchannel pool) making one
    empty Register; the worker that logged it owns the connection.
    """
    for _ in range(64):
        channel = grpc.aio.insecure_channel(
            proc.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        seen, _owner = _worker_of_last_register(proc.log, 0)
        call = channel.unary_unary(
            "/rossby.v1.Rossby/Register",
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call(pb.RegisterRequest(), timeout=10)
        owner: object = None
        for _ in range(50):  # the line may be a moment behind the answer
            count, owner = _worker_of_last_register(proc.log, seen)
            if count > seen:
                break
            await asyncio.sleep(0.05)
        if owner == worker:
            return channel
        await channel.close()
    raise AssertionError(f"no connection reached worker {worker} in 64 tries")


async def test_workers_on_one_sqlite_file_wake_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    with ServerProcess(tmp_path, url, *COMMON, "--workers", "2") as proc:
        first, second = _worker_addresses(proc.log, 2)
        assert first != second  # each worker has a private peer port
        await _only_peer_on(first, second)
        await _no_peer_on(proc.target)
        outbox = tmp_path / "outbox"
        here = Remote(proc.target, outbox, await _channel_to_worker(proc, 0))
        there = Remote(proc.target, outbox, await _channel_to_worker(proc, 1))
        try:
            bob = await Device(here, email("bob")).join()
            alice = await Device(there, email("alice")).join()
            sub = Subscription(bob).start()
            try:
                await sub.until("live")
                mids = [uuid.uuid4() for _ in range(3)]
                for mid in mids:
                    await alice.send((bob.box_id, b"across workers", mid))
                got = await sub.messages(3)
                assert [m.message_id for m in got] == [str(m) for m in mids]
                reply = await ephemeral_send(alice, bob.box_id)
                assert reply.results[0].outcome == pb.SEND_OUTCOME_EPHEMERAL
                assert (await sub.until("ephemeral"))[-1].ephemeral.ciphertext == b"typing"
            finally:
                await sub.close()
        finally:
            await here.close()
            await there.close()
