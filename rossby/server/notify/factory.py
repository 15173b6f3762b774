"""Settings -> notifier. Misconfiguration fails here, before any port is bound."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Literal, get_args

from rossby.errors import ConfigError
from rossby.server.notify.base import Notifier
from rossby.server.notify.outbox import OutboxNotifier
from rossby.server.notify.routing import RoutingNotifier
from rossby.server.notify.smtp import SmtpNotifier, SmtpSecurity
from rossby.server.notify.webhook import WebhookNotifier

NotifierKind = Literal["outbox", "smtp", "webhook", "route"]
PhoneVia = Literal["webhook", "outbox"]

_DEFAULT_SMTP_PORT: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """The notifier settings, as loaded from configuration.

    Empty strings count as unset so the config loader can pass its fields
    through unchanged. ``smtp_port`` None means the usual port for
    ``smtp_security`` (25, 587, 465). Secrets are left out of ``repr``.

    ``kind`` "route" sends e-mail through SMTP and phone numbers through
    ``phone_via``; "smtp" alone cannot reach phone numbers; "webhook" and
    "outbox" take both kinds.
    """

    kind: NotifierKind = "outbox"
    outbox_dir: str = "var/outbox"
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: SmtpSecurity = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    webhook_url: str | None = field(default=None, repr=False)
    webhook_token: str | None = field(default=None, repr=False)
    phone_via: PhoneVia = "webhook"
    timeout_seconds: float = 10.0


def build_notifier(
    config: NotifierConfig, *, smtp_ssl_context: ssl.SSLContext | None = None
) -> Notifier:
    """The notifier ``config`` describes; raises ``ConfigError`` when it is incomplete.

    ``smtp_ssl_context`` replaces the system trust store for the SMTP
    relay (a private CA, or tests).
    """
    if config.kind not in get_args(NotifierKind):
        raise ConfigError(
            f"invalid setting notifier: {config.kind!r} (outbox | smtp | webhook | route)"
        )
    if config.timeout_seconds <= 0:
        raise ConfigError("invalid setting notifier_timeout: must be positive")
    if config.kind == "outbox":
        return OutboxNotifier(_required(config.outbox_dir, "outbox_dir"))
    if config.kind == "smtp":
        return _smtp(config, smtp_ssl_context)
    if config.kind == "webhook":
        return _webhook(config)
    if config.phone_via not in get_args(PhoneVia):
        raise ConfigError(f"invalid setting phone_via: {config.phone_via!r} (webhook | outbox)")
    phone: Notifier = (
        _webhook(config)
        if config.phone_via == "webhook"
        else OutboxNotifier(_required(config.outbox_dir, "outbox_dir"))
    )
    return RoutingNotifier(email=_smtp(config, smtp_ssl_context), phone=phone)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(f"invalid setting {name}: required by the configured notifier")
    return value


def _smtp(config: NotifierConfig, ssl_context: ssl.SSLContext | None) -> SmtpNotifier:
    if config.smtp_security not in _DEFAULT_SMTP_PORT:
        raise ConfigError(
            f"invalid setting smtp_security: {config.smtp_security!r} (none | starttls | tls)"
        )
    username = config.smtp_username or None
    password = config.smtp_password or None
    if username is not None and password is None:
        raise ConfigError("invalid setting smtp_password: required with smtp_username")
    if password is not None and username is None:
        raise ConfigError("invalid setting smtp_username: required with smtp_password")
    return SmtpNotifier(
        host=_required(config.smtp_host, "smtp_host"),
        port=config.smtp_port or _DEFAULT_SMTP_PORT[config.smtp_security],
        security=config.smtp_security,
        username=username,
        password=password,
        from_addr=_required(config.smtp_from, "smtp_from"),
        timeout=config.timeout_seconds,
        ssl_context=ssl_context,
    )


def _webhook(config: NotifierConfig) -> WebhookNotifier:
    return WebhookNotifier(
        _required(config.webhook_url, "webhook_url"),
        token=config.webhook_token or None,
        timeout=config.timeout_seconds,
    )


__all__ = ["NotifierConfig", "NotifierKind", "PhoneVia", "build_notifier"]
