"""Delivery of one-time codes to contacts (e-mail, phone).

``build_notifier(NotifierConfig(...))`` picks the implementation:
``OutboxNotifier`` (dev only: files + log), ``SmtpNotifier`` (e-mail),
``WebhookNotifier`` (an operator's HTTP endpoint, usually an SMS gateway)
or ``RoutingNotifier`` (one of those per contact kind). See ``base`` for
the error contract.
"""

from rossby.server.notify.base import Notifier
from rossby.server.notify.factory import NotifierConfig, build_notifier
from rossby.server.notify.outbox import OutboxNotifier, outbox_path, read_outbox_code
from rossby.server.notify.routing import RoutingNotifier
from rossby.server.notify.smtp import SmtpNotifier
from rossby.server.notify.webhook import WebhookNotifier

__all__ = [
    "Notifier",
    "NotifierConfig",
    "OutboxNotifier",
    "RoutingNotifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "build_notifier",
    "outbox_path",
    "read_outbox_code",
]
