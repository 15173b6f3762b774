"""Delivery of one-time codes by POSTing them to an operator's HTTP endpoint.

The usual target is a small SMS gateway the operator runs (Rossby does not
talk to SMS providers itself). Contract, per code::

    POST <url>
    Authorization: Bearer <token>        (when a token is configured)
    Content-Type: application/json

    {"contact_kind": "phone", "contact": "+14155550100", "code": "123456",
     "ttl_seconds": 600, "device_name": "Alice's phone"}

Any 2xx answer means "accepted"; anything else, a connection error or the
timeout means NOTIFIER_FAILED. Redirects are not followed: the bearer
token is for this URL only, and a redirect is a misconfiguration to fix,
not to paper over.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from rossby.contacts import NormalizedContact, mask
from rossby.errors import ConfigError
from rossby.logging import get_logger
from rossby.server.httpsession import LazySession
from rossby.server.notify.base import Notifier, clean_device_name, delivery_failed

log = get_logger(__name__)


class WebhookNotifier(Notifier):
    """Posts each code to the operator's webhook through one ``LazySession``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is not echoed: it may embed credentials.
            raise ConfigError("invalid setting webhook_url: needs an http(s) URL with a host")
        if timeout <= 0:
            raise ConfigError("invalid setting notifier timeout: must be positive")
        self.url = url
        self._token = token or None
        self.timeout = timeout
        # For logs: scheme://host:port only, never a path, query or userinfo.
        self._endpoint = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        self._http = LazySession(timeout=timeout, user_agent="rossby-notifier")
        if parts.scheme == "http" and self._token is not None:
            log.warning(
                "webhook_token_without_tls",
                endpoint=self._endpoint,
                hint="the bearer token crosses the network in clear text",
            )

    def __repr__(self) -> str:
        token = "<set>" if self._token else None
        return f"WebhookNotifier({self._endpoint!r}, token={token}, timeout={self.timeout})"

    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        payload = {
            "contact_kind": contact.kind.value,
            "contact": contact.value,
            "code": code,
            "ttl_seconds": ttl_seconds,
            "device_name": clean_device_name(device_name),
        }
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        session = self._http.get()
        try:
            async with session.post(
                self.url, json=payload, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()  # drain so the connection can be reused
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(exc) can carry the URL (and any secret in it): type only.
            log.warning(
                "notifier_failed",
                channel="webhook",
                contact=mask(contact),
                endpoint=self._endpoint,
                error=type(exc).__name__,
            )
            raise delivery_failed() from None
        if not 200 <= status < 300:
            log.warning(
                "notifier_failed",
                channel="webhook",
                contact=mask(contact),
                endpoint=self._endpoint,
                status=status,
            )
            raise delivery_failed()

    async def close(self) -> None:
        await self._http.close()


__all__ = ["WebhookNotifier"]
