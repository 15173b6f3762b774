"""Graceful shutdown: in-flight calls finish, and no answered Send is lost.

The server is ``rossby serve`` on SQLite, stopped with SIGTERM as a process
manager would, while clients keep calling it through real channels.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter
from pathlib import Path

import grpc

from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email
from tests.ops.helpers import (
    ProcessApi,
    async_wait_for,
    log_events,
    metric,
    migrated_sqlite,
    scrape,
    wedged_sqlite,
)
from tests.serverproc import ServerProcess

ANSWERED = (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE)


async def test_no_answered_send_is_lost_across_a_sigterm_restart(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    server = ServerProcess(tmp_path, url, "--grace", "5").start()
    api = ProcessApi(server)
    try:
        alice = await Device(api, email("alice")).join()
        bob = await Device(api, email("bob")).join()
        assert bob.box_id is not None
        answered: dict[str, bytes] = {}
        failures: Counter[str] = Counter()
        stop = asyncio.Event()

        async def sender() -> None:
            while not stop.is_set():
                batch = [
                    (bob.box_id, os.urandom(32), uuid.uuid4()) for _ in range(random.randint(1, 3))
                ]
                while True:  # the same message ids until the server answers
                    try:
                        reply = await alice.send(*batch)
                    except grpc.aio.AioRpcError as exc:
                        failures[exc.code().name] += 1
                        await asyncio.sleep(0.05)
                        continue
                    break
                for (_, body, mid), result in zip(batch, reply.results, strict=True):
                    assert result.outcome in ANSWERED, result
                    answered[str(mid)] = body

        senders = [asyncio.create_task(sender()) for _ in range(4)]
        await async_wait_for(lambda: len(answered) >= 40, 60, "40 answered messages")
        # SIGTERM mid-stream; the senders keep going while it stops.
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0
        during = len(answered)
        await asyncio.to_thread(server.start)  # same port, same database
        await async_wait_for(lambda: len(answered) >= during + 40, 60, "40 more after restart")
        stop.set()
        await asyncio.gather(*senders)
        assert failures, "the senders never saw the server down: the test proved nothing"

        seen: Counter[str] = Counter()
        bodies: dict[str, bytes] = {}
        after = 0
        while True:
            page = await bob.fetch(after=after, limit=500)
            for m in page.messages:
                seen[m.message_id] += 1
                bodies[m.message_id] = m.ciphertext
            after = page.next_after
            if not page.more:
                break
        missing = set(answered) - set(seen)
        assert not missing, f"{len(missing)} answered messages lost"
        assert all(seen[mid] == 1 for mid in answered), "a message was stored twice"
        assert all(bodies[mid] == body for mid, body in answered.items())
    finally:
        await api.close()
        server.stop()


async def test_sigterm_lets_an_in_flight_send_finish(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    server = ServerProcess(
        tmp_path, url, "--grace", "30", "--health-timeout", "30", "--health-interval", "30"
    ).start()
    api = ProcessApi(server)
    try:
        alice = await Device(api, email("alice")).join()
        bob = await Device(api, email("bob")).join()
        mid = uuid.uuid4()
        with wedged_sqlite(tmp_path / "rossby.db"):
            send = asyncio.create_task(alice.send((bob.box_id, b"in flight", mid)))

            def send_in_flight() -> bool:
                return (
                    metric(scrape(server.metrics_port), "rossby_rpc_in_flight", method="Send") > 0
                )

            await async_wait_for(send_in_flight, 10, "the Send to be in flight")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            await async_wait_for(
                lambda: "stopping" in [e["event"] for e in log_events(server.log)], 10, "stopping"
            )
        reply = await send  # the store is back: the call completes during the grace period
        assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        events = [(e["event"], e.get("method")) for e in log_events(server.log)]
        assert events.index(("stopping", None)) < events.index(("rpc", "Send"))

        server.start()  # and the message is there after the restart
        page = await bob.fetch()
        assert [m.message_id for m in page.messages] == [str(mid)]
    finally:
        await api.close()
        server.stop()
