"""The Prometheus endpoint, scraped over HTTP after real calls on both backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import SERVICE, Device, email
from tests.api.prekeys import claim, full_upload, status, upload
from tests.ops.helpers import metric, scrape_registry
from tests.serverproc import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(api: Api) -> Samples:
    return scrape_registry(api.server.metrics.registry)


async def test_rpc_store_queue_and_compaction_metrics(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(pending_cap=2)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    first = uuid.uuid4()
    assert (await alice.send((bob.box_id, b"m0", first))).results[0].outcome == (
        pb.SEND_OUTCOME_QUEUED
    )
    await alice.send((bob.box_id, b"m1", None))
    again = await alice.send((bob.box_id, b"m0", first))
    assert again.results[0].outcome == pb.SEND_OUTCOME_DUPLICATE
    over = await alice.send((bob.box_id, b"m2", None))
    assert over.results[0].reason == "PENDING_CAP"
    page = await bob.fetch()
    await bob.ack(page.messages[-1].position)
    # An unsigned call to a signed method: refused by Hawk, still counted.
    unsigned = api.channel.unary_unary(
        SERVICE + "Fetch",
        request_serializer=pb.FetchRequest.SerializeToString,
        response_deserializer=pb.FetchResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await unsigned(pb.FetchRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    s = _scrape(api)
    rpc = "rossby_rpc_requests_total"
    assert metric(s, rpc, method="Register", code="OK") == 2
    assert metric(s, rpc, method="Authorize", code="OK") == 2
    assert metric(s, rpc, method="Send", code="OK") == 4  # per-item rejections are OK calls
    assert metric(s, rpc, method="Fetch", code="UNAUTHENTICATED") == 1
    assert metric(s, "rossby_rpc_duration_seconds_count", method="Send", code="OK") == 4
    assert metric(s, "rossby_rpc_in_flight", method="Send") == 0

    assert metric(s, "rossby_messages_enqueued_total", outcome="queued") == 2
    assert metric(s, "rossby_messages_enqueued_total", outcome="duplicate") == 1
    assert metric(s, "rossby_pending_cap_rejections_total") == 1

    store = "rossby_store_request_duration_seconds_count"
    assert metric(s, store, operation="enqueue", outcome="ok") == 3
    assert metric(s, store, operation="enqueue", outcome="PendingCapExceeded") == 1
    assert metric(s, store, operation="get_device") >= 5  # the Hawk key lookups
    assert metric(s, store, operation="check_schema", outcome="ok") == 1

    assert metric(s, "rossby_queue_depth_messages_count") == 1
    assert metric(s, "rossby_queue_depth_messages_sum") == 2
    assert metric(s, "rossby_cursor_lag_seconds_count") == 1
    assert metric(s, "rossby_compaction_runs_total") == 1
    if api.store.capabilities.counts_compacted_rows.supported:
        assert metric(s, "rossby_compaction_runs_total", result="deleted") == 1
        assert metric(s, "rossby_compaction_rows_removed_total") == 2
    assert metric(s, "rossby_notifier_deliveries_total", kind="email", outcome="ok") == 2
    assert metric(s, "rossby_notifier_failures_total") == 0


async def test_notifier_failures_are_counted(make_api: Callable[..., Any]) -> None:
    closed = free_port()  # nothing listens there: every delivery fails
    api: Api = await make_api(notifier="webhook", webhook_url=f"http://127.0.0.1:{closed}/hook")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await Device(api, email("alice")).register()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    # The call's own counter is bumped as its handler finishes, which can be just
    # after the client has the status: wait (bounded) for it, then read everything.
    for _ in range(100):
        s = _scrape(api)
        if metric(s, "rossby_rpc_requests_total", method="Register", code="UNAVAILABLE"):
            break
        await asyncio.sleep(0.05)
    assert metric(s, "rossby_notifier_failures_total", kind="email") == 1
    assert metric(s, "rossby_notifier_deliveries_total", kind="email", outcome="failed") == 1
    assert metric(s, "rossby_rpc_requests_total", method="Register", code="UNAVAILABLE") == 1


async def test_the_prekey_calls_are_counted_and_timed(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(prekey_claim_rate_per_box="1/hour")
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    await upload(alice, full_upload(alice, one_time_count=1, kem_count=1))
    await status(alice)
    await claim(bob, alice.box_id)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await claim(bob, alice.box_id)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    rpc = "rossby_rpc_requests_total"
    for _ in range(100):  # the last call's counter may trail its status (above)
        s = _scrape(api)
        if metric(s, rpc, method="ClaimPrekeys", code="RESOURCE_EXHAUSTED"):
            break
        await asyncio.sleep(0.05)
    assert metric(s, rpc, method="UploadPrekeys", code="OK") == 1
    assert metric(s, rpc, method="GetPrekeyStatus", code="OK") == 1
    assert metric(s, rpc, method="ClaimPrekeys", code="OK") == 1
    assert metric(s, rpc, method="ClaimPrekeys", code="RESOURCE_EXHAUSTED") == 1
    store = "rossby_store_request_duration_seconds_count"
    assert metric(s, store, operation="put_prekeys", outcome="ok") == 1
    assert metric(s, store, operation="claim_prekeys", outcome="ok") == 1
    assert metric(s, store, operation="prekey_counts", outcome="ok") >= 1
