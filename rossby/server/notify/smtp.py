"""E-mail delivery of one-time codes through an SMTP relay.

stdlib ``smtplib`` runs on a small executor owned by this notifier rather
than the loop's default one: a slow or hung relay then ties up at most
``max_workers`` threads of its own instead of starving everything else
that uses ``asyncio.to_thread`` (e.g. a SQLite store). Codes are rare
(one per Register), so a connection per message is simpler than pooling
and never leaves a half-dead session behind.

Security: "starttls" never falls back to plain text when the relay does
not offer STARTTLS, and both TLS modes verify the certificate (system
trust store unless an ``ssl_context`` is given). The password is kept out
of ``repr``, errors and logs.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Literal, get_args

from rossby.contacts import ContactKind, NormalizedContact, mask
from rossby.errors import ConfigError
from rossby.logging import get_logger
from rossby.server.notify.base import (
    Notifier,
    clean_device_name,
    delivery_failed,
    describe_ttl,
    unsupported_kind,
)

log = get_logger(__name__)

SmtpSecurity = Literal["none", "starttls", "tls"]
SUBJECT = "Your Rossby code"

# Every network step (connect, EHLO, STARTTLS, AUTH, DATA, QUIT) gets the
# socket timeout; this bounds the whole exchange.
_TOTAL_TIMEOUT_FACTOR = 4


class SmtpNotifier(Notifier):
    """Sends each code as a plain-text e-mail; e-mail contacts only."""

    def __init__(
        self,
        host: str,
        port: int,
        security: SmtpSecurity,
        username: str | None,
        password: str | None,
        from_addr: str,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        local_hostname: str | None = None,
        max_workers: int = 4,
    ) -> None:
        if security not in get_args(SmtpSecurity):
            raise ConfigError(
                f"invalid setting smtp_security: {security!r} (none | starttls | tls)"
            )
        if not host:
            raise ConfigError("invalid setting smtp_host: empty")
        if not 0 < port < 65536:
            raise ConfigError(f"invalid setting smtp_port: {port}")
        if timeout <= 0:
            raise ConfigError("invalid setting notifier timeout: must be positive")
        if (username is None) != (password is None):
            raise ConfigError("invalid setting smtp_username: username and password go together")
        envelope_from = parseaddr(from_addr)[1]
        if "@" not in envelope_from:
            raise ConfigError("invalid setting smtp_from: needs an e-mail address")
        self.host = host
        self.port = port
        self.security: SmtpSecurity = security
        self.username = username
        self._password = password
        self.from_addr = from_addr
        self._envelope_from = envelope_from
        self._msgid_domain = envelope_from.rpartition("@")[2]
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        if security == "none" and username is not None:
            log.warning(
                "smtp_auth_without_tls",
                host=host,
                port=port,
                hint="the SMTP password crosses the network in clear text",
            )

    def __repr__(self) -> str:
        return (
            f"SmtpNotifier(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, from_addr={self.from_addr!r})"
        )

    def supports(self, kind: ContactKind) -> bool:
        return kind is ContactKind.EMAIL

    def build_message(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> EmailMessage:
        """The exact message that ``send_code`` sends (public for tests and previews)."""
        msg = EmailMessage()
        msg["Subject"] = SUBJECT
        msg["From"] = self.from_addr
        msg["To"] = contact.value
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._msgid_domain)
        # RFC 3834: keeps vacation responders from answering the relay.
        msg["Auto-Submitted"] = "auto-generated"
        name = clean_device_name(device_name)
        device = f' "{name}"' if name else " a new device"
        msg.set_content(
            f"Your Rossby code is: {code}\n"
            "\n"
            f"Enter it in Rossby to finish setting up{device}.\n"
            f"The code expires in {describe_ttl(ttl_seconds)}.\n"
            "\n"
            "If you did not ask for this code, ignore this message:\n"
            "nothing happens without it.\n"
        )
        return msg

    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        if contact.kind is not ContactKind.EMAIL:
            raise unsupported_kind(contact.kind)
        msg = self.build_message(contact, code, ttl_seconds, device_name=device_name)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="rossby-smtp"
            )
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout * _TOTAL_TIMEOUT_FACTOR):
                await loop.run_in_executor(self._executor, self._deliver, msg, contact.value)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            # OSError covers refused connections, socket timeouts, TLS
            # failures; ValueError covers text smtplib cannot encode.
            log.warning(
                "notifier_failed",
                channel="smtp",
                contact=mask(contact),
                host=self.host,
                port=self.port,
                error=type(exc).__name__,
                smtp_code=getattr(exc, "smtp_code", None),
            )
            raise delivery_failed() from None

    def _deliver(self, msg: EmailMessage, to_addr: str) -> None:
        context = self._ssl_context or ssl.create_default_context()
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
            )
        with client:
            client.ehlo()
            if self.security == "starttls":
                # Raises SMTPNotSupportedError when not offered: no downgrade.
                client.starttls(context=context)
                client.ehlo()
            if self.username is not None and self._password is not None:
                client.login(self.username, self._password)
            # Explicit recipients: never derived from headers.
            client.send_message(msg, from_addr=self._envelope_from, to_addrs=[to_addr])

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Do not wait for a hung relay; its socket timeout ends the thread.
            executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["SUBJECT", "SmtpNotifier", "SmtpSecurity"]
