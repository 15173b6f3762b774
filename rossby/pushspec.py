"""Push settings: the syntax of ``push_gateways`` and ``push_webpush_allowed_hosts``.

Below both the configuration (which refuses a bad value before any port is
bound) and the server's push code (which parses the same text again), like
``rossby.ratespec``, so the configuration does not import the server.

``push_gateways`` is ``app_id=https://base,other=https://base2``: each app
id names the Matrix-style push gateway (Sygnal or the operator's own) its
devices are reached through. The gateways are the operator's own choice,
so any http(s) URL is accepted; Web Push endpoints come from clients and
are held to ``push_webpush_allowed_hosts`` (``host_allowed``).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from rossby import errors

#: The Matrix Push Gateway API's notify path, below each gateway's base URL.
NOTIFY_PATH: Final = "/_matrix/push/v1/notify"
#: Matrix app ids are reverse-DNS names; a bound keeps one sane.
MAX_APP_ID: Final = 64


def parse_gateways(name: str, spec: str) -> dict[str, str]:
    """app id -> the gateway's notify URL; ConfigError names the setting.

    The URL itself is never echoed in an error: it may carry a credential.
    """
    out: dict[str, str] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        app_id, sep, base = entry.partition("=")
        app_id, base = app_id.strip(), base.strip()
        if not sep or not app_id or len(app_id) > MAX_APP_ID or not app_id.isprintable():
            raise errors.ConfigError(
                f"invalid setting {name}: entries are app_id=https://gateway, comma separated"
            )
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise errors.ConfigError(
                f"invalid setting {name}: the gateway of {app_id!r} needs an http(s) base URL "
                "with a host and no query"
            )
        if app_id in out:
            raise errors.ConfigError(f"invalid setting {name}: {app_id!r} is listed twice")
        out[app_id] = base.rstrip("/") + NOTIFY_PATH
    return out


def parse_allowed_hosts(name: str, spec: str) -> tuple[str, ...]:
    """The host patterns, lower case: ``host`` (exactly) or ``*.domain``
    (any name below ``domain``, not ``domain`` itself)."""
    out: list[str] = []
    for raw in spec.split(","):
        pattern = raw.strip().lower()
        if not pattern:
            continue
        bare = pattern[2:] if pattern.startswith("*.") else pattern
        if not bare or "*" in bare or "/" in bare or ":" in bare or not bare.isprintable():
            raise errors.ConfigError(
                f"invalid setting {name}: {raw.strip()!r} is not a host or *.domain"
            )
        out.append(pattern)
    return tuple(out)


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` (a URL's hostname) matches one of ``patterns``."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


__all__ = ["MAX_APP_ID", "NOTIFY_PATH", "host_allowed", "parse_allowed_hosts", "parse_gateways"]
