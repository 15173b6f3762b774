"""The pushers of one process, keyed by the kind of target they reach.

One small function so that each kind plugs in with one line: the
dispatcher only ever looks a target's kind up in the dict it gets, and a
kind that is not configured has no pusher (``SetPushTarget`` refuses it
with PUSH_DISABLED, so no such target is stored).
"""

from __future__ import annotations

from rossby.config import Settings
from rossby.server.push.base import Pusher
from rossby.server.push.config import PushConfig
from rossby.server.push.gateway import GatewayPusher
from rossby.server.push.webpush import web_pusher
from rossby.store.pushtargets import PushKind


def build_pushers(settings: Settings, config: PushConfig) -> dict[PushKind, Pusher]:
    pushers: dict[PushKind, Pusher] = {}
    if config.enabled(PushKind.GATEWAY):
        pushers[PushKind.GATEWAY] = GatewayPusher(config.gateways, timeout=settings.push_timeout)
    if (web := web_pusher(settings, config, timeout=settings.push_timeout)) is not None:
        pushers[PushKind.WEB_PUSH] = web
    return pushers


__all__ = ["build_pushers"]
