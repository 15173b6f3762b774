"""What this server can push through, read once from the settings (the VAPID
key file included) at start-up.

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
from rossby.server.push.vapid import VapidKey, load_vapid_key
from rossby.store.pushtargets import PushKind


@dataclass(frozen=True, slots=True)
class PushConfig:
    #: The loaded VAPID key; None: Web Push off.
    vapid_key: VapidKey | None
    #: app id -> that gateway's notify URL.
    gateways: dict[str, str]
    #: ``push_webpush_allowed_hosts``, parsed.
    allowed_hosts: tuple[str, ...]

    @property
    def vapid_public_key(self) -> bytes:
        """What GetPushConfig hands to browsers (65-byte uncompressed point),
        or ``b""`` when Web Push is off."""
        return b"" if self.vapid_key is None else self.vapid_key.public_key

    def enabled(self, kind: PushKind) -> bool:
        if kind is PushKind.WEB_PUSH:
            return self.vapid_key is not None
        return bool(self.gateways)


def push_config(settings: Settings) -> PushConfig:
    s = settings
    key_file = s.push_vapid_private_key_file
    return PushConfig(
        vapid_key=load_vapid_key(key_file) if key_file else None,
        gateways=parse_gateways("push_gateways", s.push_gateways),
        allowed_hosts=parse_allowed_hosts(
            "push_webpush_allowed_hosts", s.push_webpush_allowed_hosts
        ),
    )


__all__ = ["PushConfig", "push_config"]
