"""``MeteredStore`` passes every Store call through, including ones added later."""

from __future__ import annotations

import inspect
import uuid

from rossby.server.metrics import MeteredStore, Metrics, metered_store
from rossby.store import Store, StoreOptions, open_store


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
