"""Notifiers against real servers on loopback: aiosmtpd for SMTP, aiohttp for webhooks."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rossby.contacts import ContactKind, NormalizedContact, normalize
from rossby.errors import ConfigError, InvalidArgument, Unavailable
from rossby.server.notify import (
    NotifierConfig,
    OutboxNotifier,
    RoutingNotifier,
    SmtpNotifier,
    WebhookNotifier,
    build_notifier,
    outbox_path,
    read_outbox_code,
)
from rossby.server.notify import outbox as outbox_module
from rossby.server.notify import smtp as smtp_module
from rossby.server.notify import webhook as webhook_module

EMAIL = normalize(ContactKind.EMAIL, "Alice@Example.com")
PHONE = normalize(ContactKind.PHONE, "+1 415 555 0100")
CODE = "482913"
USERNAME = "rossby-relay"
PASSWORD = "s3cret-Pa55word!"
TOKEN = "tok-9f8e7d6c5b4a"
FROM = "Rossby <no-reply@rossby.test>"

Logs = list[MutableMapping[str, Any]]


# -- shared helpers ----------------------------------------------------------


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    """Every structlog event the notifiers emit during the test.

    The modules' loggers are swapped for fresh ones inside ``capture_logs``
    so a logger cached by an earlier ``configure_logging`` cannot bypass it.
    """
    with structlog.testing.capture_logs() as captured:
        for module in (outbox_module, smtp_module, webhook_module):
            monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield captured


def files_in(directory: Path) -> int:
    return len(list(directory.iterdir()))


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening.

    Holding the socket keeps the port from being reused while the test runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP (kernel backlog) but never speaks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1/localhost, made at test time."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rossby-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Tls(server=server, client=client)


# -- outbox ------------------------------------------------------------------


async def test_outbox_writes_one_file_per_contact(tmp_path: Path, logs: Logs) -> None:
    notifier = OutboxNotifier(tmp_path / "outbox", clock=lambda: 1_700_000_000.0)
    await notifier.send_code(EMAIL, CODE, 600, device_name="Alice's\nlaptop")
    path = outbox_path(tmp_path / "outbox", EMAIL)
    assert path.parent == tmp_path / "outbox"
    record = json.loads(path.read_text())
    assert record == {
        "contact_kind": "email",
        "contact": "alice@example.com",
        "code": CODE,
        "ttl_seconds": 600,
        "expires_at": "2023-11-14T22:23:20Z",
        "device_name": "Alice's laptop",
        "sent_at": "2023-11-14T22:13:20Z",
    }
    assert read_outbox_code(tmp_path / "outbox", EMAIL) == CODE
    # no temp files left behind
    assert files_in(path.parent) == 1
    # dev mode: the code is logged, the contact is masked
    (event,) = [e for e in logs if e["event"] == "outbox_code"]
    assert event["code"] == CODE
    assert event["contact"] == "a***@example.com"
    await notifier.close()


async def test_outbox_overwrites_on_resend_and_keeps_contacts_apart(tmp_path: Path) -> None:
    notifier = OutboxNotifier(tmp_path)
    await notifier.send_code(PHONE, "111111", 600, device_name="phone")
    await notifier.send_code(EMAIL, "222222", 600, device_name="laptop")
    await notifier.send_code(PHONE, "333333", 600, device_name="phone")
    assert read_outbox_code(tmp_path, PHONE) == "333333"
    assert read_outbox_code(tmp_path, EMAIL) == "222222"
    assert files_in(tmp_path) == 2


async def test_outbox_read_helper_answers_none_for_unknown_contact(tmp_path: Path) -> None:
    assert read_outbox_code(tmp_path, EMAIL) is None
    assert read_outbox_code(tmp_path / "missing", EMAIL) is None


async def test_outbox_file_names_are_safe_and_distinct(tmp_path: Path) -> None:
    tricky = [
        normalize("email", "a/b@example.com"),
        normalize("email", "a_b@example.com"),
        normalize("email", "a%2fb@example.com"),
        normalize("email", "..@example.com"),
        normalize("email", "ü@example.com"),
        normalize("email", "x" * 64 + "@" + "y" * 180 + ".com"),
        NormalizedContact(ContactKind.EMAIL, "+14155550100"),
        PHONE,
    ]
    notifier = OutboxNotifier(tmp_path)
    for i, contact in enumerate(tricky):
        path = outbox_path(tmp_path, contact)
        assert path.parent == tmp_path
        assert len(path.name) < 255
        await notifier.send_code(contact, f"{i:06d}", 60, device_name="d")
    assert files_in(tmp_path) == len(tricky)
    for i, contact in enumerate(tricky):
        assert read_outbox_code(tmp_path, contact) == f"{i:06d}"


async def test_outbox_write_failure_is_unavailable(tmp_path: Path, logs: Logs) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    notifier = OutboxNotifier(blocker)
    with pytest.raises(Unavailable) as info:
        await notifier.send_code(EMAIL, CODE, 600, device_name="d")
    assert info.value.reason == "NOTIFIER_FAILED"
    assert CODE not in str(info.value)
    assert any(e["event"] == "notifier_failed" for e in logs)


# -- SMTP server on loopback -------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps every accepted message."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 Message accepted for delivery"


@dataclass
class Authenticator:
    """Accepts exactly USERNAME/PASSWORD; records the mechanisms tried."""

    mechanisms: list[str] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        # handled=False: let aiosmtpd answer 535 on failure
        return AuthResult(success=ok, handled=False)


class LoopbackController(Controller):
    """aiosmtpd on 127.0.0.1 with a kernel-chosen port (no probing for a free one)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd is untyped


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[LoopbackController, Mailbox]]:
    mailbox = Mailbox()
    controller = LoopbackController(mailbox, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def smtp_notifier(port: int, security: smtp_module.SmtpSecurity, **kwargs: Any) -> SmtpNotifier:
    options: dict[str, Any] = {
        "username": None,
        "password": None,
        "from_addr": FROM,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return SmtpNotifier("127.0.0.1", port, security, **options)


def assert_code_mail(received: Received, contact: NormalizedContact = EMAIL) -> None:
    assert received.rcpt_tos == [contact.value]
    assert received.mail_from == "no-reply@rossby.test"
    message = received.message
    assert message["To"] == contact.value
    assert message["From"] == FROM
    assert message["Subject"] == "Your Rossby code"
    assert message["Message-ID"]
    assert message["Date"]
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert CODE in body
    assert "10 minutes" in body


async def test_smtp_plain(logs: Logs) -> None:
    with smtp_server() as (server, mailbox):
        notifier = smtp_notifier(server.port, "none")
        await notifier.send_code(EMAIL, CODE, 600, device_name="Alice's laptop")
        await notifier.close()
    (received,) = mailbox.received
    assert_code_mail(received)
    assert not received.tls
    assert 'setting up "Alice\'s laptop"' in received.message.get_content()
    assert_no_secrets(repr(logs), CODE)


async def test_smtp_starttls(tls: Tls) -> None:
    with smtp_server(tls_context=tls.server, require_starttls=True) as (server, mailbox):
        notifier = smtp_notifier(server.port, "starttls", ssl_context=tls.client)
        await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    (received,) = mailbox.received
    assert_code_mail(received)
    assert received.tls


async def test_smtp_implicit_tls(tls: Tls) -> None:
    with smtp_server(ssl_context=tls.server) as (server, mailbox):
        notifier = smtp_notifier(server.port, "tls", ssl_context=tls.client)
        await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    (received,) = mailbox.received
    assert_code_mail(received)
    assert received.tls


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_smtp_auth_over_starttls(tls: Tls, mechanism: str) -> None:
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    authenticator = Authenticator()
    with smtp_server(
        tls_context=tls.server,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_exclude_mechanism=[other],
    ) as (server, mailbox):
        notifier = smtp_notifier(
            server.port, "starttls", ssl_context=tls.client, username=USERNAME, password=PASSWORD
        )
        await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    assert authenticator.mechanisms == [mechanism]
    (received,) = mailbox.received
    assert_code_mail(received)
    assert received.tls and received.authenticated


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth_over_implicit_tls(tls: Tls) -> None:
    # aiosmtpd only counts STARTTLS as TLS for AUTH; implicit TLS needs the flag.
    authenticator = Authenticator()
    with smtp_server(
        ssl_context=tls.server,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    ) as (server, mailbox):
        notifier = smtp_notifier(
            server.port, "tls", ssl_context=tls.client, username=USERNAME, password=PASSWORD
        )
        await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    assert authenticator.mechanisms
    (received,) = mailbox.received
    assert_code_mail(received)
    assert received.authenticated


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth_plain_text_server() -> None:
    authenticator = Authenticator()
    with smtp_server(authenticator=authenticator, auth_required=True, auth_require_tls=False) as (
        server,
        mailbox,
    ):
        notifier = smtp_notifier(server.port, "none", username=USERNAME, password=PASSWORD)
        await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    (received,) = mailbox.received
    assert received.authenticated


async def test_smtp_non_ascii_address() -> None:
    contact = normalize("email", "JOSÉ@example.com")
    with smtp_server() as (server, mailbox):
        notifier = smtp_notifier(server.port, "none")
        await notifier.send_code(contact, CODE, 600, device_name="laptop")
        await notifier.close()
    (received,) = mailbox.received
    assert received.rcpt_tos == ["josé@example.com"]
    assert CODE in received.message.get_content()


async def test_smtp_concurrent_sends() -> None:
    contacts = [normalize("email", f"user{i}@example.com") for i in range(10)]
    with smtp_server() as (server, mailbox):
        notifier = smtp_notifier(server.port, "none", max_workers=3)
        await asyncio.gather(*(notifier.send_code(c, CODE, 600, device_name="d") for c in contacts))
        await notifier.close()
    assert sorted(r.rcpt_tos[0] for r in mailbox.received) == sorted(c.value for c in contacts)


def _assert_failed(info: pytest.ExceptionInfo[Unavailable], logs: Logs) -> None:
    assert info.value.reason == "NOTIFIER_FAILED"
    assert info.value.code == "UNAVAILABLE"
    assert info.value.__cause__ is None
    text = f"{info.value} {info.value!r} {info.value.metadata}"
    assert_no_secrets(text, PASSWORD, CODE, TOKEN, EMAIL.value, PHONE.value)
    assert_no_secrets(repr(logs), PASSWORD, CODE, TOKEN, EMAIL.value, PHONE.value)
    assert any(e["event"] == "notifier_failed" for e in logs)


async def test_smtp_server_down(logs: Logs) -> None:
    with refused_port() as port:
        notifier = smtp_notifier(port, "starttls", username=USERNAME, password=PASSWORD)
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    _assert_failed(info, logs)


async def test_smtp_server_silent_times_out(logs: Logs) -> None:
    with silent_port() as port:
        notifier = smtp_notifier(port, "none", timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        assert loop.time() - started < 3
        await notifier.close()
    _assert_failed(info, logs)


async def test_smtp_auth_rejected(tls: Tls, logs: Logs) -> None:
    authenticator = Authenticator()
    with smtp_server(
        tls_context=tls.server,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as (server, mailbox):
        notifier = smtp_notifier(
            server.port, "starttls", ssl_context=tls.client, username=USERNAME, password="wrong"
        )
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    assert authenticator.mechanisms
    assert mailbox.received == []
    _assert_failed(info, logs)
    failed = next(e for e in logs if e["event"] == "notifier_failed")
    assert failed["error"] == "SMTPAuthenticationError"
    assert failed["smtp_code"] == 535


async def test_smtp_starttls_never_downgrades(logs: Logs) -> None:
    with smtp_server() as (server, mailbox):  # offers no STARTTLS
        notifier = smtp_notifier(server.port, "starttls", username=USERNAME, password=PASSWORD)
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    assert mailbox.received == []
    _assert_failed(info, logs)


async def test_smtp_untrusted_certificate(tls: Tls, logs: Logs) -> None:
    with smtp_server(ssl_context=tls.server) as (server, mailbox):
        notifier = smtp_notifier(server.port, "tls")  # system trust store only
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    assert mailbox.received == []
    _assert_failed(info, logs)


async def test_smtp_recipient_refused(logs: Logs) -> None:
    class Refusing(Mailbox):
        async def handle_RCPT(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            address: str,
            rcpt_options: list[str],
        ) -> str:
            return "550 5.1.1 no such user"

    mailbox = Refusing()
    controller = LoopbackController(mailbox, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        notifier = smtp_notifier(controller.port, "none")
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(EMAIL, CODE, 600, device_name="laptop")
        await notifier.close()
    finally:
        controller.stop()
    _assert_failed(info, logs)


async def test_smtp_is_email_only() -> None:
    notifier = smtp_notifier(25, "none")
    assert notifier.supports(ContactKind.EMAIL)
    assert not notifier.supports(ContactKind.PHONE)
    with pytest.raises(InvalidArgument) as info:
        await notifier.send_code(PHONE, CODE, 600, device_name="phone")
    assert info.value.reason == "CONTACT_KIND_UNSUPPORTED"


def test_smtp_repr_hides_password() -> None:
    notifier = smtp_notifier(25, "none", username=USERNAME, password=PASSWORD)
    assert PASSWORD not in repr(notifier)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"security": "ssl"},
        {"port": 0},
        {"port": 70000},
        {"from_addr": "nobody"},
        {"username": USERNAME},
        {"timeout": 0},
    ],
)
def test_smtp_config_errors(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"port": 587, "security": "starttls"} | kwargs
    port, security = options.pop("port"), options.pop("security")
    with pytest.raises(ConfigError):
        smtp_notifier(port, security, **options)


# -- webhook server on loopback ----------------------------------------------


@dataclass
class Hook:
    url: str
    requests: list[tuple[dict[str, str], Any]]


@asynccontextmanager
async def webhook_server() -> AsyncIterator[Hook]:
    requests: list[tuple[dict[str, str], Any]] = []

    async def ok(request: web.Request) -> web.Response:
        requests.append((dict(request.headers), await request.json()))
        return web.Response(status=204)

    async def fail(request: web.Request) -> web.Response:
        requests.append((dict(request.headers), await request.json()))
        return web.Response(status=500, text="provider exploded")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=200)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/ok")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    app.router.add_post("/slow", slow)
    app.router.add_post("/redirect", redirect)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Hook(url=f"http://{host}:{port}", requests=requests)
    finally:
        await runner.cleanup()


async def test_webhook_posts_json_with_bearer_token() -> None:
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/ok", token=TOKEN, timeout=5)
        await notifier.send_code(PHONE, CODE, 600, device_name="Alice's\tphone")
        await notifier.send_code(EMAIL, "777777", 300, device_name="laptop")
        await notifier.close()
    (headers, body), (_, second) = hook.requests
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"].startswith("application/json")
    assert body == {
        "contact_kind": "phone",
        "contact": "+14155550100",
        "code": CODE,
        "ttl_seconds": 600,
        "device_name": "Alice's phone",
    }
    assert second["contact_kind"] == "email"
    assert second["contact"] == "alice@example.com"
    assert second["code"] == "777777"


async def test_webhook_without_token_sends_no_authorization() -> None:
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/ok", timeout=5)
        await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
    ((headers, _),) = hook.requests
    assert "Authorization" not in headers


async def test_webhook_sends_again_after_close() -> None:
    # LazySession's reuse is tested in tests/test_httpsession.py; here, that
    # the notifier goes through it: a closed notifier reopens on its next code.
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/ok", timeout=5)
        await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
        await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
    assert len(hook.requests) == 2


async def test_webhook_server_error(logs: Logs) -> None:
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/fail", token=TOKEN, timeout=5)
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
    assert len(hook.requests) == 1
    _assert_failed(info, logs)
    assert next(e for e in logs if e["event"] == "notifier_failed")["status"] == 500


async def test_webhook_redirect_is_not_followed(logs: Logs) -> None:
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/redirect", token=TOKEN, timeout=5)
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
    assert hook.requests == []  # the token never reached /ok
    _assert_failed(info, logs)


async def test_webhook_connection_refused(logs: Logs) -> None:
    with refused_port() as port:
        notifier = WebhookNotifier(f"http://127.0.0.1:{port}/hook?key={TOKEN}", token=TOKEN)
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        await notifier.close()
    _assert_failed(info, logs)


async def test_webhook_timeout(logs: Logs) -> None:
    async with webhook_server() as hook:
        notifier = WebhookNotifier(f"{hook.url}/slow", token=TOKEN, timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable) as info:
            await notifier.send_code(PHONE, CODE, 600, device_name="phone")
        assert loop.time() - started < 3
        await notifier.close()
    _assert_failed(info, logs)


def test_webhook_config_errors_and_repr() -> None:
    for url in ["", "ftp://example.com/x", "http://", "example.com/hook"]:
        with pytest.raises(ConfigError):
            WebhookNotifier(url)
    with pytest.raises(ConfigError):
        WebhookNotifier("https://example.com/hook", timeout=0)
    notifier = WebhookNotifier(f"https://user:pw@sms.example.com/hook?key={TOKEN}", token=TOKEN)
    assert TOKEN not in repr(notifier)
    assert "pw" not in repr(notifier)


# -- routing and configuration -----------------------------------------------


async def test_routing_by_kind(tmp_path: Path) -> None:
    email_box, phone_box = tmp_path / "email", tmp_path / "phone"
    router = RoutingNotifier(email=OutboxNotifier(email_box), phone=OutboxNotifier(phone_box))
    assert router.supports(ContactKind.EMAIL) and router.supports(ContactKind.PHONE)
    await router.send_code(EMAIL, "111111", 600, device_name="d")
    await router.send_code(PHONE, "222222", 600, device_name="d")
    assert read_outbox_code(email_box, EMAIL) == "111111"
    assert read_outbox_code(phone_box, PHONE) == "222222"
    assert read_outbox_code(email_box, PHONE) is None
    assert read_outbox_code(phone_box, EMAIL) is None
    await router.close()


async def test_routing_smtp_for_email_webhook_for_phone() -> None:
    async with webhook_server() as hook:
        with smtp_server() as (server, mailbox):
            router = RoutingNotifier(
                email=smtp_notifier(server.port, "none"),
                phone=WebhookNotifier(f"{hook.url}/ok", token=TOKEN, timeout=5),
            )
            await router.send_code(EMAIL, CODE, 600, device_name="laptop")
            await router.send_code(PHONE, CODE, 600, device_name="phone")
            await router.close()
    (received,) = mailbox.received
    assert_code_mail(received)
    ((_, body),) = hook.requests
    assert body["contact"] == PHONE.value


async def test_routing_without_a_route_is_unsupported(tmp_path: Path) -> None:
    router = RoutingNotifier(email=OutboxNotifier(tmp_path))
    assert not router.supports(ContactKind.PHONE)
    with pytest.raises(InvalidArgument) as info:
        await router.send_code(PHONE, CODE, 600, device_name="d")
    assert info.value.reason == "CONTACT_KIND_UNSUPPORTED"
    # a route that cannot serve its kind does not count either
    smtp_for_phone = RoutingNotifier(phone=smtp_notifier(25, "none"))
    assert not smtp_for_phone.supports(ContactKind.PHONE)


def test_build_notifier_kinds(tmp_path: Path) -> None:
    smtp = NotifierConfig(kind="smtp", smtp_host="smtp.example.com", smtp_from=FROM)
    outbox = build_notifier(NotifierConfig(kind="outbox", outbox_dir=str(tmp_path)))
    assert isinstance(outbox, OutboxNotifier) and outbox.directory == tmp_path

    mail = build_notifier(replace(smtp, smtp_security="tls"))
    assert isinstance(mail, SmtpNotifier) and mail.port == 465 and mail.username is None
    assert not mail.supports(ContactKind.PHONE)
    plain = build_notifier(replace(smtp, smtp_security="none"))
    assert isinstance(plain, SmtpNotifier) and plain.port == 25
    submission = build_notifier(smtp)
    assert isinstance(submission, SmtpNotifier) and submission.port == 587
    explicit = build_notifier(replace(smtp, smtp_port=2525))
    assert isinstance(explicit, SmtpNotifier) and explicit.port == 2525

    hook = build_notifier(
        NotifierConfig(kind="webhook", webhook_url="https://sms.example.com/x", timeout_seconds=3)
    )
    assert isinstance(hook, WebhookNotifier) and hook.timeout == 3

    routed = build_notifier(
        replace(
            smtp,
            kind="route",
            webhook_url="https://sms.example.com/x",
            smtp_username=USERNAME,
            smtp_password=PASSWORD,
        )
    )
    assert isinstance(routed, RoutingNotifier)
    assert isinstance(routed.route(ContactKind.EMAIL), SmtpNotifier)
    assert isinstance(routed.route(ContactKind.PHONE), WebhookNotifier)

    via_outbox = build_notifier(
        replace(smtp, kind="route", phone_via="outbox", outbox_dir=str(tmp_path))
    )
    assert isinstance(via_outbox, RoutingNotifier)
    assert isinstance(via_outbox.route(ContactKind.PHONE), OutboxNotifier)


SMTP_OK = NotifierConfig(kind="smtp", smtp_host="smtp.example.com", smtp_from=FROM)
BAD: Any = "ssl"


@pytest.mark.parametrize(
    "config",
    [
        NotifierConfig(kind=BAD),
        NotifierConfig(kind="outbox", outbox_dir=""),
        NotifierConfig(kind="smtp"),
        NotifierConfig(kind="smtp", smtp_host="smtp.example.com"),
        replace(SMTP_OK, smtp_username=USERNAME),
        replace(SMTP_OK, smtp_password=PASSWORD),
        replace(SMTP_OK, smtp_security=BAD),
        NotifierConfig(kind="webhook"),
        NotifierConfig(kind="webhook", webhook_url="", webhook_token=TOKEN),
        replace(SMTP_OK, kind="route"),
        NotifierConfig(kind="route", webhook_url="https://sms.example.com/x"),
        replace(SMTP_OK, kind="route", phone_via=BAD),
        NotifierConfig(kind="outbox", timeout_seconds=0),
    ],
)
def test_build_notifier_rejects_incomplete_config(config: NotifierConfig) -> None:
    with pytest.raises(ConfigError) as info:
        build_notifier(config)
    assert_no_secrets(str(info.value), PASSWORD, TOKEN)


def test_config_repr_hides_secrets() -> None:
    config = NotifierConfig(
        kind="route",
        smtp_password=PASSWORD,
        webhook_token=TOKEN,
        webhook_url=f"https://sms.example.com/x?key={TOKEN}",
    )
    assert_no_secrets(repr(config), PASSWORD, TOKEN)
