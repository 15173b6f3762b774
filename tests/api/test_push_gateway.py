"""Push wake-ups through a Matrix-style push gateway, end to end: real
server, real gRPC channel, and a gateway receiver on loopback (an aiohttp
web server) that checks every request against the Matrix Push Gateway API
on its own, without our client or pusher code. docs/api.md "Push",
docs/realtime.md "Push".

Plus the push RPCs' typed refusals (Web Push validation included) and the
target's lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rossby.store.pushtargets import PushKind
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email
from tests.api.test_realtime import Subscription
from tests.api.test_realtime import subs as subs  # the fixture
from tests.support.grpc_errors import expect

C = grpc.StatusCode
APP = "com.example.rossby"
NOTIFY = "/_matrix/push/v1/notify"
#: Bound on every "eventually" below (polled, never slept as an assertion).
DEADLINE = 20.0

#: The notification fields of the Matrix API that describe an event; a
#: Rossby wake-up must carry none of them (no content, no sender).
EVENT_FIELDS = frozenset(
    {
        "event_id",
        "room_id",
        "type",
        "sender",
        "sender_display_name",
        "room_name",
        "room_alias",
        "user_is_target",
        "content",
    }
)


# -- the gateway receiver ----------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def api_problems(request_path: str, method: str, content_type: str, payload: Any) -> list[str]:
    """What is wrong with a request by the Matrix Push Gateway API (v1
    notify), and by Rossby's rule that a wake-up names no sender or content."""
    problems = []
    if method != "POST" or request_path != NOTIFY:
        problems.append(f"{method} {request_path}")
    if content_type != "application/json":
        problems.append(f"content type {content_type}")
    if not isinstance(payload, dict) or set(payload) != {"notification"}:
        return [*problems, "body is not {'notification': ...}"]
    n = payload["notification"]
    if not isinstance(n, dict):
        return [*problems, "notification is not an object"]
    if EVENT_FIELDS & set(n):
        problems.append(f"event fields {sorted(EVENT_FIELDS & set(n))}")
    unknown = set(n) - EVENT_FIELDS - {"prio", "counts", "devices"}
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)}")
    if n.get("prio", "high") not in ("high", "low"):
        problems.append("prio")
    counts = n.get("counts", {})
    if not isinstance(counts, dict) or set(counts) - {"unread", "missed_calls"}:
        problems.append("counts")
    elif not all(type(v) is int and v >= 0 for v in counts.values()):
        problems.append("counts values")
    devices = n.get("devices")
    if not isinstance(devices, list) or not devices:
        return [*problems, "devices"]
    for d in devices:
        if not isinstance(d, dict) or not {"app_id", "pushkey"} <= set(d):
            problems.append("device lacks app_id/pushkey")
            continue
        if set(d) - {"app_id", "pushkey", "pushkey_ts", "data", "tweaks"}:
            problems.append("device has unknown fields")
        if not isinstance(d["app_id"], str) or not isinstance(d["pushkey"], str):
            problems.append("app_id/pushkey not strings")
        if "pushkey_ts" in d and type(d["pushkey_ts"]) is not int:
            problems.append("pushkey_ts not an integer")
        if not isinstance(d.get("data", {}), dict) or not isinstance(d.get("tweaks", {}), dict):
            problems.append("data/tweaks not objects")
        if set(d.get("data", {})) - {"hint"}:
            problems.append("data carries more than the hint")
    return problems


class Gateway:
    """A Matrix push gateway on loopback: records valid notifications,
    answers 400 (and records the problem) for invalid ones, and answers as
    scripted (``answers``, then 200 with no rejected pushkeys)."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.answers: list[Answer] = []
        #: When set, requests wait for it before answering (a hung gateway).
        self.hold: asyncio.Event | None = None
        self.arrived = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        problems = api_problems(request.path, request.method, request.content_type, payload)
        if problems:
            self.problems.extend(problems)
            return web.json_response({"errcode": "M_BAD_JSON"}, status=400)
        if self.hold is not None:
            await self.hold.wait()
        self.notifications.append(payload["notification"])
        answer = self.answers.pop(0) if self.answers else Answer()
        body = {"rejected": []} if answer.body is None else answer.body
        return web.json_response(body, status=answer.status, headers=answer.headers)

    async def start(self) -> Gateway:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def setting(self) -> str:
        return f"{APP}=http://127.0.0.1:{self.port}"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = await Gateway().start()
    yield gw
    await gw.close()


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE}s: {what}")
        await asyncio.sleep(0.02)


def counter(api: Api, name: str, **labels: str) -> float:
    value = api.server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


# -- helpers ----------------------------------------------------------------------------


async def start(make_api: Callable[..., Any], gw: Gateway, **settings: Any) -> Api:
    api: Api = await make_api(push_gateways=gw.setting, **settings)
    return api


async def pair(api: Api) -> tuple[Device, Device]:
    return await Device(api, email("alice")).join(), await Device(api, email("bob")).join()


async def set_gateway(dev: Device, pushkey: str, hint: str = "", app_id: str = APP) -> None:
    await dev.call(
        "SetPushTarget",
        pb.SetPushTargetRequest(
            gateway=pb.GatewayPushTarget(app_id=app_id, pushkey=pushkey), hint=hint
        ),
        pb.SetPushTargetResponse,
    )


async def send(sender: Device, to: Device) -> pb.SendResult:
    reply = await sender.send((to.box_id, os.urandom(16), None))
    (result,) = reply.results
    assert result.outcome == pb.SEND_OUTCOME_QUEUED, result
    return result


async def woken_by_gateway(
    make_api: Callable[..., Any], gw: Gateway, **settings: Any
) -> tuple[Api, Device, Device]:
    """The usual scene: a server pushing through ``gw``, and alice (who
    registered "alice-token") and bob, who writes to her."""
    api = await start(make_api, gw, **settings)
    alice, bob = await pair(api)
    await set_gateway(alice, "alice-token")
    return api, alice, bob


def wakeups(api: Api, result: str) -> float:
    return counter(api, "rossby_push_wakeups_total", kind="gateway", result=result)


def pushkeys(gw: Gateway) -> list[str]:
    return [d["pushkey"] for n in gw.notifications for d in n["devices"]]


# -- wake-ups ------------------------------------------------------------------------------


async def test_a_message_for_a_sleeping_device_wakes_it_through_the_gateway(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    api = await start(make_api, gateway)
    alice, bob = await pair(api)
    before = int(time.time())
    await set_gateway(alice, "alice-token", hint="account-7")
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 1, "one notification")
    (n,) = gateway.notifications
    assert gateway.problems == []
    assert n["prio"] == "high" and n["counts"] == {"unread": 1}
    (device,) = n["devices"]
    assert (device["app_id"], device["pushkey"]) == (APP, "alice-token")
    assert device["data"] == {"hint": "account-7"}
    assert before - 1 <= device["pushkey_ts"] <= int(time.time())
    # Nothing of the message: no ids, no sender, no body anywhere in it.
    text = repr(n)
    assert str(bob.box_id) not in text and str(bob.device_id) not in text
    assert str(alice.box_id) not in text
    await eventually(
        lambda: wakeups(api, "delivered") == 1,
        "the delivery counted",
    )


async def test_several_messages_within_the_interval_wake_once(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    api, alice, bob = await woken_by_gateway(make_api, gateway, push_coalesce_seconds=60)
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 1, "the first wake-up")

    def held(n: int) -> Callable[[], bool]:
        return lambda: counter(api, "rossby_push_coalesced_total") == n

    for i in range(1, 4):
        await send(bob, alice)
        # One decision at a time, so none can still be on its way below.
        await eventually(held(i), f"{i} held back")
    assert pushkeys(gateway) == ["alice-token"]
    assert gateway.arrived == 1


async def test_a_coalesced_device_gets_one_more_wake_up_at_the_end_of_the_interval(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    """A message that came just after the device was woken (it may have
    fetched already) must not wait for the next message."""
    api, alice, bob = await woken_by_gateway(make_api, gateway, push_coalesce_seconds=1)
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 1, "the first wake-up")
    await send(bob, alice)
    await eventually(lambda: counter(api, "rossby_push_coalesced_total") == 1, "held back")
    assert len(gateway.notifications) == 1
    await eventually(lambda: len(gateway.notifications) == 2, "the trailing wake-up")
    assert gateway.notifications[1]["counts"] == {"unread": 2}
    assert gateway.arrived == 2


async def test_no_wake_up_while_the_device_streams_and_one_after_the_stream_drops(
    make_api: Callable[..., Any],
    gateway: Gateway,
    subs: Callable[..., Subscription],
) -> None:
    api, alice, bob = await woken_by_gateway(make_api, gateway, push_coalesce_seconds=60)
    # Woken once: within the next 60 s it would be coalesced...
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 1, "the first wake-up")
    sub = subs(alice)
    await sub.until("live")
    await send(bob, alice)
    await sub.messages(1)
    await eventually(lambda: counter(api, "rossby_push_awake_total") == 1, "seen streaming")
    assert len(gateway.notifications) == 1
    # ... but it opened a stream, which dropped: its next message wakes it.
    await sub.close()
    assert api.server.service is not None
    hub = api.server.service.realtime.hub
    await eventually(lambda: hub.streams_of(alice.box_id, alice.device_id) == 0, "stream gone")
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 2, "a fresh wake-up")
    assert gateway.problems == []


async def test_a_stream_on_another_process_keeps_the_device_from_being_woken(
    make_api: Callable[..., Any], gateway: Gateway, subs: Callable[..., Subscription]
) -> None:
    """Presence: alice streams from one server, bob sends through another
    over the same database; that one must see her stream and not wake her."""
    here = await start(make_api, gateway)
    there = await start(make_api, gateway, presence_cache_ttl=0)
    alice = await Device(here, email("alice")).join()
    bob = await Device(there, email("bob")).join()
    await set_gateway(alice, "alice-token")
    sub = subs(alice)
    await sub.until("live")
    await send(bob, alice)
    await sub.messages(1)
    await eventually(lambda: counter(there, "rossby_push_awake_total") == 1, "seen elsewhere")
    assert gateway.arrived == 0
    await sub.close()

    async def no_presence() -> bool:
        rows = await there.store.list_presence(alice.box_id)
        return len(rows) == 0

    await eventually(no_presence, "alice's presence row gone")
    await send(bob, alice)
    await eventually(lambda: pushkeys(gateway) == ["alice-token"], "alice woken from there")
    assert gateway.problems == []


async def test_only_the_sleeping_devices_of_a_box_are_woken(
    make_api: Callable[..., Any], gateway: Gateway, subs: Callable[..., Subscription]
) -> None:
    api = await start(make_api, gateway)
    alice, bob = await pair(api)
    carol = await Device(api, email("carol")).join()
    await set_gateway(alice, "alice-token")
    await set_gateway(carol, "carol-token")
    sub = subs(alice)
    await sub.until("live")
    await send(bob, alice)
    await send(bob, carol)
    await eventually(lambda: len(gateway.notifications) == 1, "carol woken")
    await eventually(lambda: counter(api, "rossby_push_awake_total") == 1, "alice seen awake")
    assert pushkeys(gateway) == ["carol-token"]


# -- the push service's answers -------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [Answer(200, {"rejected": ["alice-token"]}), Answer(410, {}), Answer(404, {})],
    ids=["rejected", "410", "404"],
)
async def test_a_target_the_gateway_calls_gone_is_removed(
    make_api: Callable[..., Any], gateway: Gateway, answer: Answer
) -> None:
    api, alice, bob = await woken_by_gateway(make_api, gateway)
    gateway.answers = [answer]
    await send(bob, alice)

    async def removed() -> bool:
        targets = await api.store.list_push_targets(alice.box_id)
        return len(targets) == 0

    await eventually(removed, "the target removed")
    assert wakeups(api, "removed") == 1


async def test_a_gone_answer_for_an_old_registration_keeps_the_new_one(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    api = await start(make_api, gateway)
    alice, bob = await pair(api)
    await set_gateway(alice, "old-token")
    gateway.hold = asyncio.Event()
    gateway.answers = [Answer(410, {})]
    await send(bob, alice)
    await eventually(lambda: gateway.arrived == 1, "the push in flight")
    await set_gateway(alice, "new-token")  # re-registered while the old push is out
    gateway.hold.set()
    await eventually(
        lambda: wakeups(api, "removed") == 1,
        "the gone answer handled",
    )
    (target,) = await api.store.list_push_targets(alice.box_id)
    assert target.pushkey == "new-token"


async def test_a_503_is_retried_after_its_retry_after(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    api, alice, bob = await woken_by_gateway(make_api, gateway, push_retry_base=0.05)
    gateway.answers = [Answer(503, {}, {"Retry-After": "1"}), Answer(429, {})]
    began = time.monotonic()
    await send(bob, alice)
    await eventually(lambda: len(gateway.notifications) == 3, "two retries")
    # Retry-After was honoured: the second attempt waited at least 1 s, far
    # above the 0.05 s back-off (a bound from below, not a speed claim).
    assert time.monotonic() - began >= 1.0
    await eventually(
        lambda: wakeups(api, "delivered") == 1,
        "delivered in the end",
    )
    assert counter(api, "rossby_push_attempts_total", kind="gateway", outcome="retry") == 2
    assert len(await api.store.list_push_targets(alice.box_id)) == 1


async def test_retries_are_bounded(make_api: Callable[..., Any], gateway: Gateway) -> None:
    api, alice, bob = await woken_by_gateway(
        make_api, gateway, push_retry_base=0.01, push_retry_attempts=3
    )
    gateway.answers = [Answer(500, {}) for _ in range(10)]
    await send(bob, alice)
    await eventually(
        lambda: wakeups(api, "gave_up") == 1,
        "given up",
    )
    assert gateway.arrived == 3
    assert len(await api.store.list_push_targets(alice.box_id)) == 1  # not gone, only down


async def test_a_send_answers_while_the_gateway_hangs(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    _, alice, bob = await woken_by_gateway(make_api, gateway, push_timeout=60)
    gateway.hold = asyncio.Event()  # the gateway never answers
    await send(bob, alice)
    await eventually(lambda: gateway.arrived == 1, "the push in flight")
    await send(bob, alice)  # answered while the first push still hangs
    assert [m.position for m in await alice.drain()] != []
    assert gateway.notifications == []


async def test_a_send_succeeds_while_the_gateway_is_down(make_api: Callable[..., Any]) -> None:
    down = await Gateway().start()
    setting = down.setting
    await down.close()  # nothing listens on its port any more
    api: Api = await make_api(push_gateways=setting, push_retry_base=0.01, push_retry_attempts=2)
    alice, bob = await pair(api)
    await set_gateway(alice, "alice-token")
    await send(bob, alice)
    await eventually(
        lambda: wakeups(api, "gave_up") == 1,
        "the push given up",
    )
    assert counter(api, "rossby_push_attempts_total", kind="gateway", outcome="retry") == 2
    assert len(await alice.drain()) == 1  # the message is there all the same


# -- the RPCs ------------------------------------------------------------------------------


def vapid_key_file(tmp_path: Path) -> tuple[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "vapid.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return str(path), public


def subscription_key() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def web_target(endpoint: str = "https://127.0.0.1:8443/push/abc", **changes: Any) -> Any:
    fields: dict[str, Any] = {
        "endpoint": endpoint,
        "p256dh": subscription_key(),
        "auth": os.urandom(16),
        **changes,
    }
    return pb.SetPushTargetRequest(web_push=pb.WebPushTarget(**fields))


async def set_target(dev: Device, request: pb.SetPushTargetRequest) -> object:
    return await dev.call("SetPushTarget", request, pb.SetPushTargetResponse)


async def test_get_push_config_says_what_the_server_pushes_through(
    make_api: Callable[..., Any], tmp_path: Path
) -> None:
    path, public = vapid_key_file(tmp_path)
    api: Api = await make_api(
        push_gateways=f"{APP}=https://push.example.com,org.other=https://p.example.org/base",
        push_vapid_private_key_file=path,
        push_vapid_subject="mailto:ops@example.com",
    )
    alice = await Device(api, email("alice")).join()
    got = await alice.call("GetPushConfig", pb.GetPushConfigRequest(), pb.GetPushConfigResponse)
    assert got.vapid_public_key == public and len(public) == 65
    assert list(got.gateway_app_ids) == sorted([APP, "org.other"])
    bare: Api = await make_api()
    bob = await Device(bare, email("bob")).join()
    none = await bob.call("GetPushConfig", pb.GetPushConfigRequest(), pb.GetPushConfigResponse)
    assert none == pb.GetPushConfigResponse()


async def test_push_kinds_not_configured_are_refused(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api()
    alice = await Device(api, email("alice")).join()
    await expect(C.FAILED_PRECONDITION, "PUSH_DISABLED", set_target(alice, web_target()))
    gw = pb.SetPushTargetRequest(gateway=pb.GatewayPushTarget(app_id=APP, pushkey="k"))
    await expect(C.FAILED_PRECONDITION, "PUSH_DISABLED", set_target(alice, gw))
    assert await api.store.list_push_targets(alice.box_id) == []


async def test_gateway_targets_are_checked(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(push_gateways=f"{APP}=https://push.example.com")
    alice = await Device(api, email("alice")).join()

    def gw(app_id: str = APP, pushkey: str = "k", hint: str = "") -> pb.SetPushTargetRequest:
        return pb.SetPushTargetRequest(
            gateway=pb.GatewayPushTarget(app_id=app_id, pushkey=pushkey), hint=hint
        )

    await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", set_target(alice, gw(pushkey="")))
    long_key = gw(pushkey="k" * 513)
    await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", set_target(alice, long_key))
    await expect(C.INVALID_ARGUMENT, "PUSH_GATEWAY_UNKNOWN", set_target(alice, gw("org.nope")))
    await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", set_target(alice, gw(hint="h" * 65)))
    no_target = pb.SetPushTargetRequest(hint="x")
    await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", set_target(alice, no_target))
    assert await api.store.list_push_targets(alice.box_id) == []
    await set_target(alice, gw(pushkey="k" * 512, hint="h" * 64))  # the limits themselves
    (stored,) = await api.store.list_push_targets(alice.box_id)
    assert (stored.kind, stored.device_id, stored.hint) == (
        PushKind.GATEWAY,
        alice.device_id,
        "h" * 64,
    )


async def test_web_push_targets_are_checked(make_api: Callable[..., Any], tmp_path: Path) -> None:
    path, _ = vapid_key_file(tmp_path)
    api: Api = await make_api(
        push_vapid_private_key_file=path,
        push_vapid_subject="mailto:ops@example.com",
        push_webpush_allowed_hosts="127.0.0.1,*.push.example.net",
    )
    alice = await Device(api, email("alice")).join()
    off_curve = b"\x04" + b"\x01" * 64
    bad = [
        web_target("http://127.0.0.1:8443/push"),  # not https
        web_target("https://127.0.0.1/" + "a" * 1024),  # too long
        web_target(""),
        web_target("https:///no-host"),
        web_target("https://10.0.0.1/push"),  # not an allowed host (SSRF)
        web_target("https://push.example.net/x"),  # *.domain is below it, not it
        web_target("https://user:pw@127.0.0.1/push"),  # credentials
        web_target("https://127.0.0.1:99999/push"),  # a bad port
        web_target("https://127.0.0.1/a b"),
        web_target(p256dh=b"\x04" + os.urandom(10)),
        web_target(p256dh=b"\x02" + os.urandom(64)),  # compressed-point prefix
        web_target(p256dh=off_curve),
        web_target(auth=os.urandom(15)),
        web_target(auth=b""),
    ]
    for request in bad:
        await expect(C.INVALID_ARGUMENT, "PUSH_TARGET_INVALID", set_target(alice, request))
    assert await api.store.list_push_targets(alice.box_id) == []
    gw = pb.SetPushTargetRequest(gateway=pb.GatewayPushTarget(app_id=APP, pushkey="k"))
    await expect(C.FAILED_PRECONDITION, "PUSH_DISABLED", set_target(alice, gw))
    good = web_target("https://fcm.push.example.net/send/abc")
    await set_target(alice, good)
    (stored,) = await api.store.list_push_targets(alice.box_id)
    assert stored.kind is PushKind.WEB_PUSH
    assert (stored.endpoint, stored.p256dh, stored.auth) == (
        good.web_push.endpoint,
        good.web_push.p256dh,
        good.web_push.auth,
    )


async def test_setting_again_replaces_and_clear_removes(
    make_api: Callable[..., Any], gateway: Gateway
) -> None:
    api = await start(make_api, gateway)
    alice, bob = await pair(api)
    await set_gateway(bob, "bob-token")
    await set_gateway(alice, "first")
    await set_gateway(alice, "second")
    (target,) = await api.store.list_push_targets(alice.box_id)
    assert target.pushkey == "second"
    for _ in range(2):  # idempotent
        await alice.call("ClearPushTarget", pb.ClearPushTargetRequest(), pb.ClearPushTargetResponse)
    assert await api.store.list_push_targets(alice.box_id) == []
    # Cleared: a message no longer wakes the device (bob's wake-up is the
    # proof the dispatcher ran after alice's message).
    await send(bob, alice)
    await send(alice, bob)
    await eventually(lambda: pushkeys(gateway) == ["bob-token"], "bob woken")


async def test_an_unsigned_call_is_refused(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(push_gateways=f"{APP}=https://push.example.com")
    alice = Device(api, email("alice"))
    request = pb.SetPushTargetRequest(gateway=pb.GatewayPushTarget(app_id=APP, pushkey="k"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.public("SetPushTarget", request, pb.SetPushTargetResponse)
    assert caught.value.code() == C.UNAUTHENTICATED
