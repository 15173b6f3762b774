"""Web Push end to end: a real ``rossby serve`` process, real gRPC channels,
and a push service on loopback that speaks HTTPS. docs/realtime.md "Push".

A device registers a subscription it made as a browser does (its own P-256
key and auth secret) with SetPushTarget; another box Sends to it; the push
service checks the VAPID JWT against the key GetPushConfig handed out and
decrypts the body with ``http_ece`` (the receiver of tests/test_webpush.py,
written from the RFCs, not from our code).

Why a subprocess: SetPushTarget takes https endpoints only, so the server
must trust the push service's test CA. aiohttp builds its verifying SSL
context once, when it is imported, from the default verify paths; those
honour ``SSL_CERT_FILE``, but only if it is set before the import, which a
server in the test process cannot have. A server process started with
``SSL_CERT_FILE`` is also exactly how an operator points the server at a
private CA, so no product setting is needed for it.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from rossby.store import open_store
from rossby.store.pushtargets import PushTarget
from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email
from tests.api.test_accounts import link
from tests.api.test_push_gateway import eventually, send, set_target, vapid_key_file
from tests.api.test_realtime import Subscription
from tests.api.test_realtime import subs as subs  # the fixture
from tests.certs import CertificateAuthority
from tests.ops.helpers import ProcessApi, metric, migrated_sqlite, scrape
from tests.serverproc import ServerProcess
from tests.support.grpc_errors import expect
from tests.test_webpush import SUBJECT, TTL, PushService, open_push, push_service, verify_vapid
from tests.test_webpush import Subscription as Browser

C = grpc.StatusCode


@dataclass
class Server:
    process: ServerProcess
    store_url: str
    vapid_public_key: bytes  # of the configured key file, read by the test itself
    tls: ssl.SSLContext  # the push service's side, a certificate of the CA the server trusts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: each test uses boxes of its own."""
    workdir = tmp_path_factory.mktemp("webpush")
    ca = CertificateAuthority("Rossby test push CA")
    ca_file = workdir / "push-ca.pem"
    ca_file.write_bytes(ca.pem)
    cert, key = ca.issue("127.0.0.1", server=True).write(workdir, "push-service")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    key_path, public = vapid_key_file(workdir)
    url = migrated_sqlite(workdir)
    process = ServerProcess(
        workdir,
        url,
        "--push-vapid-private-key-file",
        key_path,
        "--push-vapid-subject",
        SUBJECT,
        "--push-webpush-ttl",
        str(TTL),
        "--push-webpush-allowed-hosts",
        "127.0.0.1",
        # No coalescing to speak of: a device not woken is then one the
        # dispatcher decided not to wake, never one owed a later wake-up.
        "--push-coalesce-seconds",
        "0.001",
        env={"SSL_CERT_FILE": str(ca_file)},
    )
    with process:
        yield Server(process, url, public, tls)


@pytest.fixture
async def api(server: Server) -> AsyncIterator[ProcessApi]:
    remote = ProcessApi(server.process)
    yield remote
    await remote.close()


@pytest.fixture
async def service(server: Server) -> AsyncIterator[PushService]:
    async with push_service(server.tls) as svc:
        yield svc


# -- helpers ----------------------------------------------------------------------------


async def join(api: ProcessApi, name: str) -> Device:
    return await Device(api, email(name)).join()


def web_push(browser: Browser, endpoint: str, hint: str = "") -> pb.SetPushTargetRequest:
    return pb.SetPushTargetRequest(
        web_push=pb.WebPushTarget(endpoint=endpoint, p256dh=browser.p256dh, auth=browser.auth),
        hint=hint,
    )


async def subscribe(dev: Device, browser: Browser, endpoint: str, hint: str = "") -> None:
    await set_target(dev, web_push(browser, endpoint, hint))


async def targets(server: Server, box_id: uuid.UUID) -> list[PushTarget]:
    """Read from the store file itself, as a second process would."""
    async with open_store(server.store_url) as store:
        return list(await store.list_push_targets(box_id))


async def samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return await asyncio.to_thread(scrape, server.process.metrics_port)


async def counter(server: Server, name: str, **labels: str) -> float:
    return metric(await samples(server), name, **labels)


async def settled(server: Server) -> bool:
    """No wake-up being sent: every request the dispatcher started has had
    its answer (the push service records a request before answering it)."""
    return await counter(server, "rossby_push_in_flight") == 0


def to(service: PushService, token: str) -> Callable[[], int]:
    """How many requests the push service got for ``token``'s endpoint."""
    return lambda: sum(r.path == f"/push/{token}" for r in service.received)


# -- wake-ups --------------------------------------------------------------------------


async def test_a_send_wakes_a_web_push_subscriber_with_a_signed_encrypted_count_and_hint(
    server: Server, api: ProcessApi, service: PushService
) -> None:
    alice, bob = await join(api, "alice"), await join(api, "bob")
    config = await alice.call("GetPushConfig", pb.GetPushConfigRequest(), pb.GetPushConfigResponse)
    assert config.vapid_public_key == server.vapid_public_key
    # Queued before she subscribed: they count as pending, but woke nobody.
    await send(bob, alice)
    await send(bob, alice)
    browser = Browser.new()
    endpoint = service.endpoint("alice-" + uuid.uuid4().hex)
    await subscribe(alice, browser, endpoint, hint="inbox-7")
    await send(bob, alice)
    token = endpoint.rsplit("/", 1)[-1]
    await eventually(lambda: to(service, token)() == 1, "alice's wake-up")
    (received,) = service.received
    # Signed by the key GetPushConfig gave the browser, for this origin.
    verify_vapid(received.headers, endpoint, config.vapid_public_key, SUBJECT)
    assert open_push(received, browser) == {"pending": 3, "hint": "inbox-7"}
    delivered = await counter(
        server, "rossby_push_wakeups_total", kind="web_push", result="delivered"
    )
    assert delivered >= 1


async def test_no_wake_up_while_the_device_streams_and_one_after_it_stops(
    server: Server,
    api: ProcessApi,
    service: PushService,
    subs: Callable[..., Subscription],
) -> None:
    """Alice's phone streams, her laptop sleeps: one Send wakes the laptop
    only. Both wake-ups would come from the same read of the box's targets,
    so once the laptop's is done the phone's silence is a decision."""
    alice, bob = await join(api, "alice"), await join(api, "bob")
    laptop = await link(api, alice, "laptop")
    browser, other = Browser.new(), Browser.new()
    phone, desk = "streaming-" + uuid.uuid4().hex, "sleeping-" + uuid.uuid4().hex
    await subscribe(alice, browser, service.endpoint(phone), hint="h")
    await subscribe(laptop, other, service.endpoint(desk))
    awake = await counter(server, "rossby_push_awake_total")
    sub = subs(alice)
    await sub.until("live")
    await send(bob, alice)
    await sub.messages(1)
    await eventually(lambda: to(service, desk)() == 1, "the sleeping laptop woken")
    await eventually(lambda: settled(server), "no wake-up in flight")
    assert to(service, phone)() == 0
    assert await counter(server, "rossby_push_awake_total") == awake + 1
    await sub.close()

    async def stream_gone() -> bool:
        return await counter(server, "rossby_streams_open") == 0

    await eventually(stream_gone, "the server saw the stream end")
    # Asleep again: the next message wakes the phone too.
    await send(bob, alice)
    await eventually(lambda: to(service, phone)() == 1, "a wake-up after the stream")
    (received,) = [r for r in service.received if r.path == f"/push/{phone}"]
    assert open_push(received, browser) == {"pending": 2, "hint": "h"}


async def test_a_subscription_the_push_service_calls_gone_is_removed(
    server: Server, api: ProcessApi, service: PushService
) -> None:
    alice, bob = await join(api, "alice"), await join(api, "bob")
    phone = "gone-" + uuid.uuid4().hex
    service.answers[phone] = (410, {})
    await subscribe(alice, Browser.new(), service.endpoint(phone))
    await send(bob, alice)
    await eventually(lambda: to(service, phone)() == 1, "the push the service refuses")

    async def removed() -> bool:
        return await targets(server, alice.box_id) == []

    await eventually(removed, "the gone target deleted from the store")
    # A second device of the box with a live subscription: its wake-up
    # comes from the same read of the box's targets that would have woken
    # the phone again, so the phone's silence below is a decision, not a delay.
    laptop = await link(api, alice, "laptop")
    browser = Browser.new()
    desk = "laptop-" + uuid.uuid4().hex
    await subscribe(laptop, browser, service.endpoint(desk))
    await send(bob, alice)
    await eventually(lambda: to(service, desk)() == 1, "the laptop woken")

    await eventually(lambda: settled(server), "no wake-up in flight")
    assert to(service, phone)() == 1
    (left,) = await targets(server, alice.box_id)
    assert left.device_id == laptop.device_id
    (woke,) = [r for r in service.received if r.path == f"/push/{desk}"]
    assert open_push(woke, browser)["pending"] == 2


# -- refusals ----------------------------------------------------------------------------


async def test_an_endpoint_on_a_host_not_allowed_is_refused(
    server: Server, api: ProcessApi, service: PushService
) -> None:
    """``localhost`` reaches the very same push service (its certificate
    names it too), but only 127.0.0.1 is allowed: nothing is stored, so no
    Send can make the server POST there."""
    alice = await join(api, "alice")
    port = service.origin.rsplit(":", 1)[-1]
    for endpoint in (
        f"https://localhost:{port}/push/elsewhere",
        f"https://127.0.0.2:{port}/push/elsewhere",
    ):
        refused = set_target(alice, web_push(Browser.new(), endpoint))
        await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", refused)
    assert await targets(server, alice.box_id) == []
    # Plain http to an allowed host is refused too: push goes over TLS only.
    plain = set_target(alice, web_push(Browser.new(), f"http://127.0.0.1:{port}/push/plain"))
    await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", plain)
    assert await targets(server, alice.box_id) == []
