"""PeerClient's failure policy, against the real PeerService on a real gRPC
server on loopback: a slow Notify is retried and keeps its target; a
refused one skips the target for DOWN_FOR seconds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from rossby.server.realtime.metrics import RealtimeMetrics
from rossby.server.realtime.peer import SERVICE, PeerClient, PeerService, Receiver, peer_key
from rossby.v1 import rossby_pb2 as pb
from tests.serverproc import free_port

KEY = peer_key(b"s" * 32)
WAIT = 10.0


class Recorder(Receiver):
    """The receiving process's side, recorded (stands in for the hub)."""

    def __init__(self) -> None:
        self.wakes: list[tuple[uuid.UUID, int, int]] = []

    def wake_local(self, box_id: uuid.UUID, first: int, last: int) -> int:
        self.wakes.append((box_id, first, last))
        return 1

    def ephemeral_local(self, box_id: uuid.UUID, message: pb.QueuedMessage) -> int:
        return 0


class Peer:
    """A real PeerService whose first calls are held for ``delays`` seconds."""

    def __init__(self, delays: list[float]) -> None:
        self.server_id = uuid.uuid4().hex
        self.recorder = Recorder()
        service = PeerService(
            KEY,
            self.server_id,
            self.recorder,
            RealtimeMetrics(CollectorRegistry()),
            skew_seconds=30,
        )
        inner = service.handlers()["Notify"].unary_unary
        assert inner is not None
        self.delays = delays

        async def held(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if self.delays:
                await asyncio.sleep(self.delays.pop(0))
            return bytes(await inner(raw, context))

        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {"Notify": grpc.unary_unary_rpc_method_handler(held)}
                ),
            )
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    async def woken(self, box: uuid.UUID) -> bool:
        for _ in range(int(WAIT / 0.02)):
            if any(b == box for b, _, _ in self.recorder.wakes):
                return True
            await asyncio.sleep(0.02)
        return False


@pytest.fixture
async def client() -> AsyncIterator[tuple[PeerClient, RealtimeMetrics]]:
    metrics = RealtimeMetrics(CollectorRegistry())
    peers = PeerClient(KEY, uuid.uuid4().hex, metrics, grpc.aio.insecure_channel, call_timeout=0.3)
    yield peers, metrics
    await peers.close()


def sent(metrics: RealtimeMetrics, outcome: str) -> float:
    return float(metrics.peer_notifies.labels("sent", outcome)._value.get())


async def test_a_notify_that_runs_out_of_time_is_retried_and_keeps_its_target(
    client: tuple[PeerClient, RealtimeMetrics],
) -> None:
    peers, metrics = client
    peer = Peer(delays=[1.0])  # the first call outlives its 0.3 s deadline
    await peer.server.start()
    try:
        first, second = uuid.uuid4(), uuid.uuid4()
        peers.post((peer.server_id, peer.address), first, 5, 5, [])
        assert await peer.woken(first)  # retried, not left to the poll
        assert sent(metrics, "DEADLINE_EXCEEDED") == 1
        peers.post((peer.server_id, peer.address), second, 6, 6, [])
        assert await peer.woken(second)  # the target was not marked down
    finally:
        await peer.server.stop(None)


async def test_a_refused_notify_skips_its_target_for_a_while(
    client: tuple[PeerClient, RealtimeMetrics],
) -> None:
    peers, metrics = client
    target = (uuid.uuid4().hex, f"127.0.0.1:{free_port()}")  # nothing listens there
    peers.post(target, uuid.uuid4(), 1, 1, [])
    for _ in range(int(WAIT / 0.02)):
        if sent(metrics, "UNAVAILABLE"):
            break
        await asyncio.sleep(0.02)
    assert sent(metrics, "UNAVAILABLE") == 1
    peers.post(target, uuid.uuid4(), 2, 2, [])  # within DOWN_FOR: not tried
    await asyncio.sleep(0.5)
    assert sent(metrics, "UNAVAILABLE") == 1
