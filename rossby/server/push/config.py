"""What this server can push through, read once from the settings.

``GetPushConfig`` answers from it, ``SetPushTarget`` validates against it
and the pusher factory (``rossby.server.push.factory``) builds from it, so
the three never disagree about whether a kind of push is on.

Web Push is on exactly when ``push_vapid_private_key_file`` is set: the
browser's subscription is bound to the VAPID public key
(``applicationServerKey``), so without a key no subscription could be
used. The gateway kind is on when ``push_gateways`` names at least one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rossby.config import Settings
from rossby.pushspec import parse_allowed_hosts, parse_gateways
from rossby.server.push.vapid import vapid_public_key
from rossby.store.pushtargets import PushKind


@dataclass(frozen=True, slots=True)
class PushConfig:
    #: The VAPID public key, an uncompressed P-256 point; empty: Web Push off.
    vapid_public_key: bytes
    #: app id -> that gateway's notify URL.
    gateways: dict[str, str]
    #: ``push_webpush_allowed_hosts``, parsed.
    allowed_hosts: tuple[str, ...]

    def enabled(self, kind: PushKind) -> bool:
        if kind is PushKind.WEB_PUSH:
            return bool(self.vapid_public_key)
        return bool(self.gateways)


def push_config(settings: Settings) -> PushConfig:
    s = settings
    return PushConfig(
        vapid_public_key=vapid_public_key(s),
        gateways=parse_gateways("push_gateways", s.push_gateways),
        allowed_hosts=parse_allowed_hosts(
            "push_webpush_allowed_hosts", s.push_webpush_allowed_hosts
        ),
    )


__all__ = ["PushConfig", "push_config"]
