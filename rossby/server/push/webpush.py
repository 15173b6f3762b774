"""Wake-ups over Web Push: RFC 8030 delivery, RFC 8292 VAPID, RFC 8291 encryption.

One POST per wake-up to the subscription's endpoint::

    POST <endpoint>
    Authorization: vapid t=<ES256 JWT {aud: endpoint origin, exp, sub}>, k=<public key>
    Content-Encoding: aes128gcm
    TTL: <push_webpush_ttl>
    Urgency: high

    <aes128gcm of {"pending": N, "hint": "..."}>

How the work is split, and why: the encryption is ``pywebpush.WebPusher.encode``
(which calls ``http_ece``, a fresh ephemeral key and salt per push) and the
JWT is ``py_vapid``, so no crypto is written here; the POST is our own
``aiohttp`` session in the serving loop. pywebpush's ``webpush``/``send`` are
synchronous (requests), and its ``send_async`` follows redirects (carrying the
VAPID token to wherever the redirect points), reads the whole answer and
puts the answer and URL in its exceptions; sending ourselves gives no
redirects, a bounded read, our timeout and an outcome instead of an
exception. The encryption itself is one ECDH and one AES-GCM block, well under
a millisecond, so it runs on the loop rather than in a thread.

The push service's answer maps to an outcome (``rossby.server.push.base``):
2xx delivered; 404/410 gone (the subscription expired or was unsubscribed);
429, 5xx, a timeout or a connection error retry (with the Retry-After);
anything else failed. Logs name the endpoint's host only: the endpoint's
path is the subscription's capability, and the keys are the device's.
"""

from __future__ import annotations

import json
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import http_ece
from py_vapid import VapidException
from pywebpush import WebPusher as _Encoder
from pywebpush import WebPushException

from rossby.errors import ConfigError
from rossby.logging import get_logger
from rossby.server.httpsession import LazySession
from rossby.server.push.base import PushOutcome, PushResult, WakeUp
from rossby.server.push.config import PushConfig
from rossby.server.push.vapid import VapidKey, b64url
from rossby.store.pushtargets import PushKind, PushTarget

if TYPE_CHECKING:
    from rossby.settings import Settings

log = get_logger(__name__)

#: RFC 8292 allows a JWT to live 24 h; half that leaves room for a push
#: service whose clock is ahead of ours.
JWT_LIFETIME = 12 * 3600
#: Bytes of a push service's answer read before the connection is dropped:
#: the body is never used, and a push service has no reason to send more.
MAX_ANSWER = 16 * 1024
DEFAULT_TIMEOUT = 10.0


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP-date), or
    None when absent or unparseable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def wake_payload(wake: WakeUp) -> bytes:
    """The plaintext: the pending count and the device's own hint, nothing else."""
    return json.dumps({"pending": wake.pending, "hint": wake.hint}, separators=(",", ":")).encode()


def _origin(endpoint: str) -> tuple[str, str]:
    """(JWT audience = scheme://host[:port], host for the logs)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}", host


def outcome_of(status: int, retry_after_header: str | None) -> PushResult:
    if 200 <= status < 300:
        return PushResult(PushOutcome.DELIVERED)
    if status in (404, 410):
        return PushResult(PushOutcome.GONE)
    if status == 429 or status >= 500:
        return PushResult(PushOutcome.RETRY, retry_after(retry_after_header))
    return PushResult(PushOutcome.FAILED)


class WebPusher:
    """Delivers wake-ups to Web Push subscriptions through one ``LazySession``."""

    kind = PushKind.WEB_PUSH

    def __init__(
        self, key: VapidKey, subject: str, *, ttl: int, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if not subject:
            raise ConfigError("invalid setting push_vapid_subject: needed with a VAPID key")
        if ttl < 0:
            raise ConfigError("invalid setting push_webpush_ttl: must not be negative")
        if timeout <= 0:
            raise ConfigError("invalid setting push timeout: must be positive")
        self._key = key
        self._subject = subject
        self.ttl = ttl
        self.timeout = timeout
        self._http = LazySession(timeout=timeout, user_agent="rossby-push")

    def __repr__(self) -> str:
        return f"WebPusher(subject={self._subject!r}, ttl={self.ttl}, timeout={self.timeout})"

    def _request(
        self, target: PushTarget, wake: WakeUp, audience: str
    ) -> tuple[bytes, dict[str, str]]:
        """The encrypted body and the headers; raises for a target or an
        audience that cannot be encrypted to or signed for."""
        subscription = {
            "endpoint": target.endpoint,
            "keys": {"p256dh": b64url(target.p256dh), "auth": b64url(target.auth)},
        }
        body = _Encoder(subscription).encode(wake_payload(wake), "aes128gcm")["body"]
        claims = {"aud": audience, "sub": self._subject, "exp": int(time.time()) + JWT_LIFETIME}
        headers: dict[str, str] = dict(self._key.signer.sign(claims))
        headers.update(
            {
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "TTL": str(self.ttl),
                "Urgency": "high",
            }
        )
        return bytes(body), headers

    async def push(self, target: PushTarget, wake: WakeUp) -> PushResult:
        audience, host = _origin(target.endpoint)
        try:
            body, headers = self._request(target, wake, audience)
        except (WebPushException, VapidException, http_ece.ECEException, ValueError) as exc:
            # A stored target the server validated should never get here;
            # the exception's text can hold key material: its type only.
            log.warning("push_unsendable", kind="web_push", host=host, error=type(exc).__name__)
            return PushResult(PushOutcome.FAILED)
        try:
            async with self._http.get().post(
                target.endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                after = response.headers.get("Retry-After")
                await response.content.read(MAX_ANSWER)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # str(exc) can carry the endpoint URL: the type only.
            log.info("push_failed", kind="web_push", host=host, error=type(exc).__name__)
            return PushResult(PushOutcome.RETRY)
        result = outcome_of(status, after)
        if result.outcome is PushOutcome.DELIVERED:
            log.debug("push_delivered", kind="web_push", host=host, status=status)
        else:
            log.info(
                "push_refused",
                kind="web_push",
                host=host,
                status=status,
                outcome=result.outcome.value,
                retry_after=result.retry_after,
            )
        return result

    async def close(self) -> None:
        await self._http.close()


def web_pusher(
    settings: Settings, config: PushConfig, *, timeout: float = DEFAULT_TIMEOUT
) -> WebPusher | None:
    """The Web Push pusher the settings ask for, or None when Web Push is off
    (no VAPID key file)."""
    if config.vapid_key is None:
        return None
    return WebPusher(
        config.vapid_key,
        settings.push_vapid_subject,
        ttl=settings.push_webpush_ttl,
        timeout=timeout,
    )


__all__ = ["WebPusher", "outcome_of", "retry_after", "wake_payload", "web_pusher"]
