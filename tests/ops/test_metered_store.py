"""``MeteredStore`` passes every Store call through, including ones added later."""

from __future__ import annotations

import inspect
import uuid

import pytest

from rossby.server.metrics import MeteredStore, Metrics, metered_store
from rossby.store import Store, StoreOptions, open_store
from rossby.store.prekeys import PoolFull, Prekey, PrekeyUpload


def test_every_store_coroutine_is_delegated() -> None:
    assert not MeteredStore.__abstractmethods__
    for name in dir(Store):
        if not name.startswith("_") and inspect.iscoroutinefunction(getattr(Store, name)):
            assert getattr(MeteredStore, name) is not getattr(Store, name), name


async def test_a_pass_through_times_and_forwards() -> None:
    metrics = Metrics()
    inner = open_store("sqlite://:memory:", StoreOptions())
    store = metered_store(inner, metrics, clock=lambda: 0.0)
    try:
        assert await store.migrate() >= 1
        assert await store.pending_count(uuid.uuid4()) == 0
        sample = metrics.registry.get_sample_value(
            "rossby_store_request_duration_seconds_count",
            {"operation": "pending_count", "outcome": "ok"},
        )
        assert sample == 1
    finally:
        await store.close()


async def test_account_and_presence_calls_are_timed_too() -> None:
    """Accounts were a second contract found by unwrapping ``inner``, so
    their calls skipped the wrapper and were never timed."""
    metrics = Metrics()
    inner = open_store("sqlite://:memory:", StoreOptions())
    store = metered_store(inner, metrics, lambda: 0.0)
    try:
        await store.migrate()
        assert await store.key_log_head(uuid.uuid4()) is None
        assert await store.list_presence(uuid.uuid4()) == []
        for operation in ("key_log_head", "list_presence"):
            sample = metrics.registry.get_sample_value(
                "rossby_store_request_duration_seconds_count",
                {"operation": operation, "outcome": "ok"},
            )
            assert sample == 1, operation
        assert store.capabilities is inner.capabilities
    finally:
        await store.close()


async def test_prekey_calls_are_timed_and_pool_full_passes_through() -> None:
    """The prekey part of the contract (issue 18) goes through the same
    generic wrapper: timed by name, its own exception (``PoolFull``, which
    the server maps) reaching the caller unchanged."""
    metrics = Metrics()
    inner = open_store("sqlite://:memory:", StoreOptions())
    store = metered_store(inner, metrics, lambda: 0.0)
    box, device = uuid.uuid4(), uuid.uuid4()
    try:
        await store.migrate()
        upload = PrekeyUpload(one_time_prekeys=[Prekey(i, bytes(32)) for i in range(3)])
        assert (await store.put_prekeys(box, device, upload, pool_max=3)).one_time_prekeys == 3
        with pytest.raises(PoolFull):
            await store.put_prekeys(
                box, device, PrekeyUpload(one_time_prekeys=[Prekey(9, bytes(32))]), pool_max=3
            )
        assert await store.claim_prekeys(box, [device]) == []  # no signed prekey
        assert (await store.prekey_counts(box, device)).one_time_prekeys == 3
        await store.delete_prekeys(box, device)
        for operation, outcome in (
            ("put_prekeys", "ok"),
            ("put_prekeys", "PoolFull"),
            ("claim_prekeys", "ok"),
            ("prekey_counts", "ok"),
            ("delete_prekeys", "ok"),
        ):
            sample = metrics.registry.get_sample_value(
                "rossby_store_request_duration_seconds_count",
                {"operation": operation, "outcome": outcome},
            )
            assert sample == 1, (operation, outcome)
    finally:
        await store.close()
