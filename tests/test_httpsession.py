"""LazySession: the notifier's and the pushers' one outbound session."""

from __future__ import annotations

from rossby.server.httpsession import LazySession


async def test_one_session_is_reused_until_closed_then_reopened() -> None:
    lazy = LazySession(timeout=5, user_agent="rossby-test")
    first = lazy.get()
    assert lazy.get() is first
    assert first.timeout.total == 5
    assert first.headers["User-Agent"] == "rossby-test"
    await lazy.close()
    assert first.closed
    second = lazy.get()
    assert second is not first and not second.closed
    await lazy.close()


async def test_a_session_closed_elsewhere_is_replaced() -> None:
    lazy = LazySession(timeout=5, user_agent="rossby-test")
    first = lazy.get()
    await first.close()
    assert lazy.get() is not first
    await lazy.close()


async def test_closing_a_session_never_opened_is_harmless() -> None:
    lazy = LazySession(timeout=5, user_agent="rossby-test")
    await lazy.close()
    await lazy.close()
