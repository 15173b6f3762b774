"""Wake-ups through a Matrix-style push gateway (Matrix Push Gateway API).

An operator who wants APNs or FCM runs a gateway that holds those
credentials (Sygnal, or their own) and lists it in ``push_gateways``
under the app id its devices register with. Per wake-up::

    POST <base>/_matrix/push/v1/notify
    Content-Type: application/json

    {"notification": {"prio": "high", "counts": {"unread": <pending>},
      "devices": [{"app_id": "...", "pushkey": "...", "pushkey_ts": <s>,
                   "data": {"hint": "..."}}]}}

The notification has none of the API's event fields (``event_id``,
``room_id``, ``type``, ``sender``, ``content`` ...): Rossby has no rooms,
and the message's sender and content are not the gateway's business, so
it is the API's counts-only form ("the number of unread notifications
changed"). ``data.hint`` is the device's own opaque hint, left out when
empty.

The gateway answers 200 ``{"rejected": [pushkeys]}``; a rejected pushkey is
gone (the API says to stop using it). Other answers: 404/410 gone, 429 and
5xx retry (honouring Retry-After), other codes failed, a redirect failed
(not followed: the gateway's address is configuration, not something an
answer may move). The gateway URL and the pushkey are never logged: the
URL may carry a credential, the pushkey identifies a device.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rossby.logging import get_logger
from rossby.server.httpsession import LazySession
from rossby.server.push.base import PushOutcome, PushResult, WakeUp
from rossby.store.pushtargets import PushKind, PushTarget

log = get_logger(__name__)

#: Bytes of a gateway's answer read at most (a list of rejected pushkeys).
MAX_ANSWER = 64 * 1024
#: Retry-After beyond this is capped: a wake-up that late is useless.
MAX_RETRY_AFTER = 3600.0


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def outcome_of(status: int) -> PushOutcome:
    """The outcome an HTTP status means for a push request (not 200)."""
    if 200 <= status < 300:
        return PushOutcome.DELIVERED
    if status in (404, 410):
        return PushOutcome.GONE
    if status == 429 or 500 <= status < 600:
        return PushOutcome.RETRY
    return PushOutcome.FAILED


def notification(target: PushTarget, wake: WakeUp) -> dict[str, Any]:
    device: dict[str, Any] = {
        "app_id": target.app_id,
        "pushkey": target.pushkey,
        "pushkey_ts": int(target.registered_at),
        "data": {"hint": wake.hint} if wake.hint else {},
    }
    return {
        "notification": {
            "prio": "high",
            "counts": {"unread": max(0, wake.pending)},
            "devices": [device],
        }
    }


def _rejected(body: bytes, pushkey: str) -> bool:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False  # a 200 we cannot read: accepted, nothing rejected
    rejected = answer.get("rejected") if isinstance(answer, dict) else None
    return isinstance(rejected, list) and pushkey in rejected


class GatewayPusher:
    """``Pusher`` for ``PushKind.GATEWAY``, through one ``LazySession``."""

    kind = PushKind.GATEWAY

    def __init__(self, gateways: Mapping[str, str], *, timeout: float) -> None:
        #: app id -> notify URL (``rossby.pushspec.parse_gateways``).
        self._urls = dict(gateways)
        self.timeout = timeout
        self._http = LazySession(timeout=timeout, user_agent="rossby-push")

    def __repr__(self) -> str:
        return f"GatewayPusher(app_ids={sorted(self._urls)}, timeout={self.timeout})"

    async def push(self, target: PushTarget, wake: WakeUp) -> PushResult:
        url = self._urls.get(target.app_id)
        if url is None:
            # The operator removed the gateway since the device registered.
            log.warning("push_failed", kind="gateway", app_id=target.app_id, error="no gateway")
            return PushResult(PushOutcome.FAILED)
        host = urlsplit(url).hostname
        try:
            async with self._http.get().post(
                url, json=notification(target, wake), allow_redirects=False
            ) as response:
                status = response.status
                body = await response.content.read(MAX_ANSWER)
                after = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(exc) can carry the URL: the type only.
            log.info("push_failed", kind="gateway", host=host, error=type(exc).__name__)
            return PushResult(PushOutcome.RETRY)
        if status == 200:
            if _rejected(body, target.pushkey):
                log.info("push_gone", kind="gateway", host=host, app_id=target.app_id)
                return PushResult(PushOutcome.GONE)
            return PushResult(PushOutcome.DELIVERED)
        outcome = outcome_of(status)
        log.info("push_refused", kind="gateway", host=host, status=status, outcome=outcome.value)
        return PushResult(outcome, retry_after=after if outcome is PushOutcome.RETRY else None)

    async def close(self) -> None:
        await self._http.close()


__all__ = ["GatewayPusher", "notification", "outcome_of", "retry_after"]
