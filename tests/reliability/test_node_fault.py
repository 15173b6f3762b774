"""Cassandra node faults under load (docs/reliability.md, "Node faults").

Its own cluster: three nodes of dc1 on 127.0.0.3-5 (the launcher's
``first=3``), beside the session's 2-DC cluster on 127.0.0.1-2, in
``var/test-cassandra-3``, stopped at the end of the module whatever happens.
One keyspace replicated ``dc1:3``, one ``rossby serve`` at ``LOCAL_QUORUM``.

* One node down (a clean stop, then a SIGKILL) while ``rossby loadtest``
  runs, with a witness client sending one message at a time: no
  acknowledged message lost or duplicated, Sends keep succeeding while the
  node is down, so does a registration (contact claim at SERIAL), health
  stays SERVING, no call fails with anything but UNAVAILABLE, and every
  witness message acknowledged is delivered once after the node is back.
* Two nodes down (no quorum): Send and Fetch fail UNAVAILABLE with a
  ``STORE_UNAVAILABLE`` ErrorInfo (never INTERNAL, never a false QUEUED);
  once the nodes are back every message acknowledged before, and every
  refused one retried with its id, is delivered exactly once.

The figures of a longer run come from ``bench/node_fault.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from rossby.loadtest.config import LoadConfig
from rossby.loadtest.report import write_json
from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email, reason
from tests.conftest import ROOT, cassandra_url, load_launcher
from tests.ops.helpers import ProcessApi
from tests.reliability.nodefault import (
    keyspace_replication,
    restart_clean,
    run_with_node_outage,
)
from tests.serverproc import ServerProcess, rossby

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

RUN_DIR = ROOT / "var" / "test-cassandra-3"
FIRST = 3
NODES = (3, 4, 5)  # node3 is the seed; the faults hit the others
VICTIM, OTHER = 4, 5
KEYSPACE = "rossby_faults"
QUEUED = (pb.SEND_OUTCOME_QUEUED, pb.SEND_OUTCOME_DUPLICATE)
UNAVAILABLE_CODE = grpc.StatusCode.UNAVAILABLE.value[0]
# The load generator registers every user from 127.0.0.1 and sends as fast as
# the server answers: the abuse limits would measure themselves, not the store.
SERVER_ENV = {"ROSSBY_REGISTER_RATE_PER_ADDRESS": "0", "ROSSBY_SEND_RATE_PER_DEVICE": "0"}


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Rig:
    launcher: ModuleType
    directory: Path
    url: str
    workdir: Path
    server: ServerProcess
    #: Nodes stopped cleanly since the migration (their schema is on disk).
    drained: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    launcher = load_launcher()
    workdir = tmp_path_factory.mktemp("node-fault")
    try:
        try:
            launcher.start(
                nodes=3, dcs=1, dir=RUN_DIR, first=FIRST, cluster_name="rossby-faults", log=log
            )
        except Exception as exc:  # fail loudly, like the session fixture
            pytest.fail(f"could not start the 3-node Cassandra: {exc}", pytrace=False)
        url = cassandra_url(
            [f"127.0.0.{i}:9042" for i in NODES],
            KEYSPACE,
            replication="dc1:3",
            consistency="LOCAL_QUORUM",
        )
        done = rossby("migrate", "--store", url, "--state-dir", str(workdir / "state"), timeout=300)
        assert done.returncode == 0, done.stderr
        replication = keyspace_replication([f"127.0.0.{i}" for i in NODES], KEYSPACE)
        assert replication.get("dc1") == "3", replication
        server = ServerProcess(workdir, url, env=SERVER_ENV)
        try:
            server.start(timeout=120)
            yield Rig(launcher, RUN_DIR, url, workdir, server)
        finally:
            if server.proc is not None and server.proc.poll() is None:
                try:
                    server.stop()
                except Exception:
                    server.proc.kill()
                    server.proc.wait()
    finally:
        launcher.stop(RUN_DIR, log=log)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill"])
async def test_one_node_down_under_load_loses_nothing_and_keeps_serving(
    rig: Rig, kill: bool, tmp_path: Path
) -> None:
    if kill and VICTIM not in rig.drained:
        await asyncio.to_thread(restart_clean, rig.launcher, rig.directory, VICTIM, log)
        rig.drained.add(VICTIM)
    config = LoadConfig(
        targets=(rig.server.target,),
        outboxes=(str(rig.workdir / "outbox"),),
        users=24,
        concurrency=8,
        duration=45.0,
        settle=6.0,  # at least the store's settle window (5 s)
        send_retries=5,
        drain_timeout=90.0,
    ).validate()
    run = await run_with_node_outage(
        config,
        rig.server,
        rig.launcher,
        rig.directory,
        VICTIM,
        kill=kill,
        stop_after=3.0,
        outage=8.0,
        after=3.0,
        log=log,
    )
    if not kill:
        rig.drained.add(VICTIM)
    summary = run.to_dict()
    write_json(summary, tmp_path / "node-fault.json")
    log(f"node fault ({'kill' if kill else 'stop'}): {summary}")

    # The load's audit: every acknowledged send delivered exactly once.
    audit = run.report["audit"]
    assert audit["acknowledged"] > 0, audit
    assert audit["lost"] == 0, audit
    assert audit["duplicates"] == 0, audit
    assert audit["delivered"] == audit["expected"], audit
    assert run.report["ok"], run.report["failures"]

    # The service kept answering while the node was down: witness Sends that
    # ran entirely inside the outage succeeded, and so did the load's in the
    # seconds surely inside it; health said SERVING; whatever failed, load or
    # witness, failed UNAVAILABLE (retryable), never INTERNAL or a deadline.
    during = run.witness_window("during")
    assert any(c.ok for c in during), summary["witness"]
    assert run.timeline["during"].sends_ok > 0, summary["load"]["timeline"]
    assert run.health_during and set(run.health_during) == {"SERVING"}, run.health_during
    assert run.registration_during == "OK", run.registration_during  # SERIAL with 2 of 3
    assert run.error_codes() <= {grpc.StatusCode.UNAVAILABLE}, summary

    # And with the node back: the witness's Sends succeed again, and every
    # witness message ever acknowledged is delivered, once.
    assert any(c.ok for c in run.witness_window("after")), summary["witness"]
    assert not run.witness_lost, sorted(run.witness_lost)[:5]
    assert not run.witness_doubled, run.witness_doubled


async def _refused(device: Device, box: uuid.UUID, mid: uuid.UUID) -> str:
    """Send one message while the store has no quorum: it must be refused,
    typed; answers how."""
    try:
        reply = await device.send((box, b"during", mid))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, (exc.code(), exc.details())
        return f"UNAVAILABLE/{reason(exc)}"
    result = reply.results[0]
    assert result.outcome not in QUEUED, "a Send was acknowledged without a quorum"
    assert result.code == UNAVAILABLE_CODE, result
    return f"REJECTED UNAVAILABLE/{result.reason}"


async def _until_queued(device: Device, box: uuid.UUID, mid: uuid.UUID, seconds: float) -> None:
    """Retry a refused Send with its id until acknowledged (the driver needs a
    moment to see the nodes back)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(grpc.aio.AioRpcError):
            reply = await device.send((box, b"during", mid))
            if reply.results[0].outcome in QUEUED:
                return
        assert time.monotonic() < deadline, f"{mid} still refused {seconds}s after the restart"
        await asyncio.sleep(0.5)


@pytest.mark.timeout(600)
async def test_two_nodes_down_send_is_unavailable_and_nothing_acknowledged_is_lost(
    rig: Rig,
) -> None:
    api = ProcessApi(rig.server)
    try:
        alice = await Device(api, email("alice")).join()
        bob = await Device(api, email("bob")).join()
        assert bob.box_id is not None
        before = [uuid.uuid4() for _ in range(5)]
        for mid in before:
            reply = await alice.send((bob.box_id, b"before", mid))
            assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED

        refused: list[uuid.UUID] = []
        answers: list[str] = []
        stopped: list[int] = []
        try:
            for node in (OTHER, VICTIM):
                await asyncio.to_thread(rig.launcher.stop_node, rig.directory, node, log=log)
                stopped.append(node)
            for _ in range(3):
                mid = uuid.uuid4()
                answers.append(await _refused(alice, bob.box_id, mid))
                refused.append(mid)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await bob.fetch()
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            answers.append(f"Fetch {failed.value.code().name}/{reason(failed.value)}")
        finally:
            for node in stopped:
                await asyncio.to_thread(rig.launcher.start_node, rig.directory, node, log=log)
        log(f"with two of three nodes down: {answers}")
        assert all(a.endswith("/STORE_UNAVAILABLE") for a in answers), answers

        back = time.monotonic()
        for mid in refused:
            await _until_queued(alice, bob.box_id, mid, 60.0)
        log(f"refused Sends acknowledged {time.monotonic() - back:.1f}s after the restart")
        # One pass through bob's queue: a message queued twice would show twice.
        held: list[str] = []
        after = 0
        while True:
            page = await bob.fetch(after=after, limit=500)
            held += [m.message_id for m in page.messages]
            after = page.next_after
            if not page.more:
                break
        assert sorted(held) == sorted(str(m) for m in before + refused)
    finally:
        await api.close()
