"""Rate-limit settings: the syntax ``"20/hour"``, ``"100 per minute"``, ``"0"`` (off).

Below both the configuration (which refuses a bad limit before any port is
bound) and the server's limiters (which parse the same text again), so the
configuration does not import the server to check a setting.
"""

from __future__ import annotations

from typing import Final

from limits import RateLimitItem, parse_many

from rossby import errors

OFF: Final = frozenset({"", "0", "off", "none"})


def parse_limit(name: str, spec: str) -> RateLimitItem | None:
    """The parsed limit, None when off; ConfigError names the setting otherwise."""
    if spec.strip().lower() in OFF:
        return None
    try:
        items = parse_many(spec)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise errors.ConfigError(
            f"invalid setting {name}: {spec!r} is not a rate like '20/hour' or '0' (off)"
        )
    return items[0]


__all__ = ["OFF", "parse_limit"]
