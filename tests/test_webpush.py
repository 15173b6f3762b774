"""The Web Push pusher against a push service on loopback.

The receiver is written from the RFCs, not from our code: it verifies the
VAPID JWT (RFC 8292) with ``cryptography`` alone, and decrypts the body with
``http_ece`` (the reference implementation of RFC 8188/8291) using the
subscription's private key, which the test makes itself, as a browser does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import http_ece
import pytest
import structlog
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from rossby.commands import main as rossby_main
from rossby.config import load_settings
from rossby.errors import ConfigError
from rossby.server.push import webpush as webpush_module
from rossby.server.push.base import Pusher, PushOutcome, PushResult, WakeUp
from rossby.server.push.config import push_config
from rossby.server.push.vapid import (
    generate_vapid_key_file,
    load_vapid_key,
)
from rossby.server.push.webpush import WebPusher, retry_after, web_pusher
from rossby.settings import MAX_WEBPUSH_TTL
from rossby.store.pushtargets import PushKind, PushTarget

SUBJECT = "mailto:ops@rossby.test"
TTL = 3600
Logs = list[MutableMapping[str, Any]]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- a browser's subscription ---------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """What a browser keeps (the private key) and what it registers."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @staticmethod
    def new() -> Subscription:
        return Subscription(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def target(self, endpoint: str, hint: str = "") -> PushTarget:
        return PushTarget(
            box_id=uuid.uuid4(),
            device_id=uuid.uuid4(),
            kind=PushKind.WEB_PUSH,
            registered_at=time.time(),
            endpoint=endpoint,
            p256dh=self.p256dh,
            auth=self.auth,
            hint=hint,
        )


# -- the push service ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushService:
    """Answers ``/push/<token>`` as ``answers[token]`` says (default 201)."""

    origin: str
    received: list[Received] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)

    def endpoint(self, token: str) -> str:
        return f"{self.origin}/push/{token}"


@asynccontextmanager
async def push_service(tls: ssl.SSLContext | None = None) -> AsyncIterator[PushService]:
    """On loopback; over HTTPS when given a server context (its certificate
    must name 127.0.0.1, as ``tests.certs`` server certificates do)."""
    service = PushService(origin="")

    async def push(request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        service.received.append(Received(request.path, dict(request.headers), await request.read()))
        if token == "slow":
            await asyncio.sleep(30)
        if token == "moved":
            raise web.HTTPTemporaryRedirect("/push/elsewhere")
        status, headers = service.answers.get(token, (201, {}))
        return web.Response(status=status, headers=headers, text="answer naming the endpoint")

    app = web.Application()
    app.router.add_post("/push/{token}", push)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    host, port = runner.addresses[0][:2]
    service.origin = f"{'http' if tls is None else 'https'}://{host}:{port}"
    try:
        yield service
    finally:
        await runner.cleanup()


def verify_vapid(headers: dict[str, str], endpoint: str, public_key: bytes, subject: str) -> None:
    """RFC 8292: ``Authorization: vapid t=<JWT>, k=<key>``, an ES256 JWT
    whose ``aud`` is the endpoint's origin, signed by the key ``k``."""
    scheme, _, params = headers["Authorization"].partition(" ")
    assert scheme.lower() == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert set(fields) == {"t", "k"}
    assert b64url_decode(fields["k"]) == public_key
    signing_input, _, signature = fields["t"].rpartition(".")
    head_b64, _, claims_b64 = signing_input.partition(".")
    assert json.loads(b64url_decode(head_b64)) == {"typ": "JWT", "alg": "ES256"}
    raw = b64url_decode(signature)
    assert len(raw) == 64  # JWS ES256: r || s, 32 bytes each
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    claims = json.loads(b64url_decode(claims_b64))
    parts = urlsplit(endpoint)
    assert claims["aud"] == f"{parts.scheme}://{parts.netloc}"
    assert claims["sub"] == subject
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


def open_push(received: Received, subscription: Subscription) -> dict[str, Any]:
    """The checks a browser's push service and the browser make; the plaintext."""
    headers = received.headers
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["TTL"] == str(TTL)
    assert headers["Urgency"] == "high"
    plain = http_ece.decrypt(
        received.body,
        private_key=subscription.private_key,
        auth_secret=subscription.auth,
        version="aes128gcm",
    )
    payload = json.loads(plain)
    assert isinstance(payload, dict)
    return payload


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "vapid.pem"
    generate_vapid_key_file(str(path))
    return path


def pusher_for(key_file: Path, *, timeout: float = 5.0, subject: str = SUBJECT) -> WebPusher:
    return WebPusher(load_vapid_key(str(key_file)), subject, ttl=TTL, timeout=timeout)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    with structlog.testing.capture_logs() as captured:
        monkeypatch.setattr(webpush_module, "log", structlog.get_logger(webpush_module.__name__))
        yield captured


@contextmanager
def refused_port() -> Iterator[int]:
    """Bound, never listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def push_once(pusher: WebPusher, target: PushTarget, wake: WakeUp) -> PushResult:
    try:
        return await asyncio.wait_for(pusher.push(target, wake), 20)
    finally:
        await pusher.close()


def assert_nothing_secret_logged(logs: Logs, target: PushTarget) -> None:
    text = repr(logs)
    token = urlsplit(target.endpoint).path.rsplit("/", 1)[-1]
    for secret in (
        token,
        target.endpoint,
        b64url_encode(target.p256dh),
        b64url_encode(target.auth),
    ):
        assert secret not in text
    assert "127.0.0.1" in text  # the host is what an operator needs


# -- delivery --------------------------------------------------------------------------


async def test_a_wake_up_is_signed_encrypted_and_holds_only_the_count_and_hint(
    key_file: Path,
) -> None:
    browser = Subscription.new()
    pusher = pusher_for(key_file)
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"), hint="inbox-7")
        result = await push_once(pusher, target, WakeUp(pending=3, hint="inbox-7"))
    assert result == PushResult(PushOutcome.DELIVERED)
    (received,) = service.received
    assert received.path == "/push/sub-1"
    verify_vapid(
        received.headers, target.endpoint, load_vapid_key(str(key_file)).public_key, SUBJECT
    )
    assert open_push(received, browser) == {"pending": 3, "hint": "inbox-7"}


async def test_each_wake_up_is_encrypted_afresh(key_file: Path) -> None:
    browser = Subscription.new()
    pusher = pusher_for(key_file)
    wake = WakeUp(pending=1, hint="")
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"))
        try:
            for _ in range(3):
                assert (await pusher.push(target, wake)).outcome is PushOutcome.DELIVERED
        finally:
            await pusher.close()
    bodies = [r.body for r in service.received]
    # aes128gcm header: salt (16) | rs (4) | idlen (1) | keyid (the sender's one-time key)
    salts = {b[:16] for b in bodies}
    sender_keys = {b[21 : 21 + b[20]] for b in bodies}
    assert len(set(bodies)) == len(salts) == len(sender_keys) == 3
    assert all(open_push(r, browser) == {"pending": 1, "hint": ""} for r in service.received)


async def test_another_subscriptions_keys_cannot_open_it(key_file: Path) -> None:
    browser, stranger = Subscription.new(), Subscription.new()
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"))
        await push_once(pusher_for(key_file), target, WakeUp(pending=2))
    with pytest.raises(Exception):  # noqa: B017 (http_ece raises InvalidTag or ECEException)
        open_push(service.received[0], Subscription(stranger.private_key, browser.auth))
    with pytest.raises(Exception):  # noqa: B017
        open_push(service.received[0], Subscription(browser.private_key, stranger.auth))


# -- the push service's answers --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (201, {}, PushResult(PushOutcome.DELIVERED)),
        (202, {}, PushResult(PushOutcome.DELIVERED)),
        (200, {}, PushResult(PushOutcome.DELIVERED)),
        (410, {}, PushResult(PushOutcome.GONE)),
        (404, {}, PushResult(PushOutcome.GONE)),
        (429, {"Retry-After": "7"}, PushResult(PushOutcome.RETRY, 7.0)),
        (429, {}, PushResult(PushOutcome.RETRY)),
        (503, {}, PushResult(PushOutcome.RETRY)),
        (500, {"Retry-After": "120"}, PushResult(PushOutcome.RETRY, 120.0)),
        (400, {}, PushResult(PushOutcome.FAILED)),
        (401, {}, PushResult(PushOutcome.FAILED)),
        (413, {}, PushResult(PushOutcome.FAILED)),
    ],
)
async def test_answers_map_to_outcomes(
    key_file: Path, logs: Logs, status: int, headers: dict[str, str], expected: PushResult
) -> None:
    browser = Subscription.new()
    async with push_service() as service:
        service.answers["sub-9f8e7d6c"] = (status, headers)
        target = browser.target(service.endpoint("sub-9f8e7d6c"))
        assert await push_once(pusher_for(key_file), target, WakeUp(pending=1)) == expected
    assert len(service.received) == 1
    if expected.outcome is not PushOutcome.DELIVERED:
        assert_nothing_secret_logged(logs, target)


async def test_retry_after_as_an_http_date(key_file: Path) -> None:
    browser = Subscription.new()
    async with push_service() as service:
        later = formatdate(time.time() + 600, usegmt=True)
        service.answers["busy"] = (429, {"Retry-After": later})
        target = browser.target(service.endpoint("busy"))
        result = await push_once(pusher_for(key_file), target, WakeUp(pending=1))
    assert result.outcome is PushOutcome.RETRY
    assert result.retry_after is not None and 590 <= result.retry_after <= 600


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert retry_after("30", now=now) == 30.0
    assert retry_after(" 0 ", now=now) == 0.0
    assert retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0  # past: now
    assert retry_after("soon", now=now) is None
    assert retry_after("-5", now=now) is None
    assert retry_after(None, now=now) is None


async def test_a_redirect_is_not_followed(key_file: Path, logs: Logs) -> None:
    """The VAPID token is for the endpoint's origin only."""
    browser = Subscription.new()
    async with push_service() as service:
        target = browser.target(service.endpoint("moved"))
        result = await push_once(pusher_for(key_file), target, WakeUp(pending=1))
    assert result == PushResult(PushOutcome.FAILED)
    assert [r.path for r in service.received] == ["/push/moved"]


async def test_connection_refused_is_retry(key_file: Path, logs: Logs) -> None:
    browser = Subscription.new()
    with refused_port() as port:
        target = browser.target(f"http://127.0.0.1:{port}/push/sub-5a4b3c2d")
        result = await push_once(pusher_for(key_file), target, WakeUp(pending=1))
    assert result == PushResult(PushOutcome.RETRY)
    assert_nothing_secret_logged(logs, target)


async def test_timeout_is_retry(key_file: Path, logs: Logs) -> None:
    browser = Subscription.new()
    async with push_service() as service:
        target = browser.target(service.endpoint("slow"))
        result = await push_once(pusher_for(key_file, timeout=0.3), target, WakeUp(pending=1))
    assert result == PushResult(PushOutcome.RETRY)
    assert len(service.received) == 1
    assert any(e["event"] == "push_failed" and e["error"] == "TimeoutError" for e in logs)


async def test_a_target_that_cannot_be_encrypted_to_fails_without_a_request(
    key_file: Path, logs: Logs
) -> None:
    browser = Subscription.new()
    async with push_service() as service:
        good = browser.target(service.endpoint("sub-1"))
        broken = PushTarget(
            box_id=good.box_id,
            device_id=good.device_id,
            kind=PushKind.WEB_PUSH,
            registered_at=good.registered_at,
            endpoint=good.endpoint,
            p256dh=b"\x04" + b"\x01" * 64,  # not a point on P-256
            auth=good.auth,
        )
        result = await push_once(pusher_for(key_file), broken, WakeUp(pending=1))
    assert result == PushResult(PushOutcome.FAILED)
    assert service.received == []
    assert any(e["event"] == "push_unsendable" for e in logs)


async def test_a_closed_pusher_reopens_on_its_next_push(key_file: Path) -> None:
    browser = Subscription.new()
    pusher = pusher_for(key_file)
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"))
        await pusher.push(target, WakeUp(pending=1))
        await pusher.push(target, WakeUp(pending=2))
        await pusher.close()
        assert (await pusher.push(target, WakeUp(pending=3))).outcome is PushOutcome.DELIVERED
        await pusher.close()
    assert [open_push(r, browser)["pending"] for r in service.received] == [1, 2, 3]


# -- keys, settings and the keygen command ----------------------------------------------


def test_keygen_writes_an_owner_only_key_and_prints_its_public_half(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vapid.pem"
    assert rossby_main(["admin", "vapid-keygen", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    public = b64url_decode(printed)
    assert len(public) == 65 and public[0] == 4
    assert "=" not in printed
    assert load_vapid_key(str(path)).public_key == public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert rossby_main(["admin", "vapid-keygen", str(path)]) == 1
    assert "not overwritten" in capsys.readouterr().err
    assert path.read_bytes() == before


async def test_keygen_key_configured_by_settings_signs_the_pushes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vapid.pem"
    assert rossby_main(["admin", "vapid-keygen", str(path)]) == 0
    printed = b64url_decode(capsys.readouterr().out.strip())
    settings = load_settings(
        {
            "push_vapid_private_key_file": str(path),
            "push_vapid_subject": "https://ops.rossby.test",
            "push_webpush_ttl": str(TTL),
        },
        environ={},
    )
    assert push_config(settings).vapid_public_key == printed
    pusher = web_pusher(settings, push_config(settings))
    assert pusher is not None and pusher.kind is PushKind.WEB_PUSH
    as_protocol: Pusher = pusher  # mypy: WebPusher is a Pusher
    assert as_protocol is pusher
    browser = Subscription.new()
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"), hint="x")
        assert (await push_once(pusher, target, WakeUp(pending=5, hint="x"))).outcome is (
            PushOutcome.DELIVERED
        )
    verify_vapid(service.received[0].headers, target.endpoint, printed, "https://ops.rossby.test")
    assert open_push(service.received[0], browser) == {"pending": 5, "hint": "x"}


def test_web_push_is_off_without_a_key() -> None:
    settings = load_settings({}, environ={})
    assert settings.push_vapid_private_key_file == ""
    assert settings.push_webpush_ttl == 86400
    assert web_pusher(settings, push_config(settings)) is None
    assert push_config(settings).vapid_public_key == b""


def test_key_file_formats(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    forms = {
        "pkcs8.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "sec1.pem": key.private_bytes(  # what `openssl ecparam -genkey -noout` writes
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        # py_vapid's raw form: the 32-byte scalar, base64url (what `vapid --gen` prints)
        "raw.txt": b64url_encode(key.private_numbers().private_value.to_bytes(32, "big")).encode()
        + b"\n",
    }
    for name, data in forms.items():
        (tmp_path / name).write_bytes(data)
        assert load_vapid_key(str(tmp_path / name)).public_key == public, name


@pytest.mark.parametrize(
    "content",
    [
        b"not a key at all",
        b"",
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n",
        b"\xff\xfe binary",
    ],
    ids=["garbage", "empty", "rsa", "p384", "broken-pem", "binary"],
)
def test_a_file_that_is_not_a_p256_key_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "vapid.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_vapid_key(str(path))
    message = str(info.value)
    assert message.startswith("invalid setting push_vapid_private_key_file:")
    assert "QUJD" not in message and "BEGIN" not in message


def test_a_missing_key_file_is_a_config_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(ConfigError, match="push_vapid_private_key_file"):
        load_vapid_key(str(path))
    assert not path.exists()


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        ({"push_vapid_private_key_file": "{key}"}, "push_vapid_subject"),
        (
            {"push_vapid_private_key_file": "{key}", "push_vapid_subject": "ops@example.com"},
            "push_vapid_subject",
        ),
        (
            {
                "push_vapid_private_key_file": "{key}",
                "push_vapid_subject": "https://example.com/contact",
            },
            "push_vapid_subject",
        ),
        (
            {"push_vapid_private_key_file": "{key}", "push_vapid_subject": "http://example.com"},
            "push_vapid_subject",
        ),
        (
            {"push_vapid_private_key_file": "{missing}", "push_vapid_subject": SUBJECT},
            "push_vapid_private_key_file",
        ),
        ({"push_webpush_ttl": "-1"}, "push_webpush_ttl"),
        ({"push_webpush_ttl": str(MAX_WEBPUSH_TTL + 1)}, "push_webpush_ttl"),
        ({"push_webpush_ttl": "a day"}, "push_webpush_ttl"),
    ],
)
def test_settings_errors(
    key_file: Path, tmp_path: Path, flags: dict[str, str], setting: str
) -> None:
    filled = {k: v.format(key=key_file, missing=tmp_path / "absent.pem") for k, v in flags.items()}
    with pytest.raises(ConfigError, match=f"^invalid setting {setting}:"):
        load_settings(filled, environ={})


@pytest.mark.parametrize(
    "subject",
    [SUBJECT, "MAILTO:Ops+push@Mail.Example.org", "https://example.com", "mailto:a@localhost"],
)
async def test_every_subject_the_settings_accept_is_signed(key_file: Path, subject: str) -> None:
    """configcheck's rule and py_vapid's agree: an accepted subject never
    turns every push into FAILED at run time."""
    settings = load_settings(
        {"push_vapid_private_key_file": str(key_file), "push_vapid_subject": subject},
        environ={},
    )
    pusher = web_pusher(settings, push_config(settings))
    assert pusher is not None
    browser = Subscription.new()
    async with push_service() as service:
        target = browser.target(service.endpoint("sub-1"))
        assert (await push_once(pusher, target, WakeUp(pending=1))).outcome is (
            PushOutcome.DELIVERED
        )
    verify_vapid(
        service.received[0].headers,
        target.endpoint,
        push_config(settings).vapid_public_key,
        subject,
    )
    assert service.received[0].headers["TTL"] == "86400"
