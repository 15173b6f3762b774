"""How push-service answers are read (``rossby.server.push.gateway``):
Retry-After in both of its forms, and what each HTTP status means."""

from __future__ import annotations

import email.utils

import pytest

from rossby.server.push.base import PushOutcome
from rossby.server.push.gateway import MAX_RETRY_AFTER, outcome_of, retry_after


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after("120", now) == 120.0
    assert retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after("99999999", now) == MAX_RETRY_AFTER
    for bad in (None, "", "soon", "-5", "1.5"):
        assert retry_after(bad, now) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, PushOutcome.DELIVERED),
        (201, PushOutcome.DELIVERED),
        (404, PushOutcome.GONE),
        (410, PushOutcome.GONE),
        (429, PushOutcome.RETRY),
        (500, PushOutcome.RETRY),
        (503, PushOutcome.RETRY),
        (400, PushOutcome.FAILED),
        (401, PushOutcome.FAILED),
        (413, PushOutcome.FAILED),
        (302, PushOutcome.FAILED),  # redirects are not followed
    ],
)
def test_status_outcomes(status: int, outcome: PushOutcome) -> None:
    assert outcome_of(status) is outcome
