"""What a server's log may and may not contain, read from a real process.

One structured line per RPC (method, status, duration, a box tag for signed
calls), and never a ciphertext, a contact, a one-time code, a key or a
configured secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device, email
from tests.api.test_accounts import link, revoke_request
from tests.ops.helpers import ProcessApi, log_events, migrated_sqlite
from tests.serverproc import ServerProcess, free_port

PHONE = "+14155550123"


@contextmanager
def code_catcher() -> Iterator[tuple[str, dict[str, str]]]:
    """A webhook endpoint that keeps the codes the server POSTs: (url, {contact: code})."""
    codes: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            codes[body["contact"]] = body["code"]
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/sms", codes
    finally:
        httpd.shutdown()
        httpd.server_close()


def _forms(secret: bytes) -> list[str]:
    """The ways a byte string could show up in a text log."""
    return [
        secret.hex(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]


async def test_rpc_lines_carry_a_box_tag_and_nothing_private(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with code_catcher() as (hook, codes):
        server = ServerProcess(tmp_path, url, "--notifier", "webhook", "--webhook-url", hook)
        server.start()
        api = ProcessApi(server)
        try:
            alice = Device(api, email("alice"), PHONE)
            bob = Device(api, email("bob"))
            for device in (alice, bob):
                await device.register()
                await device.authorize([codes[c] for c in device.contacts])
            with pytest.raises(grpc.aio.AioRpcError):  # a wrong code: logged, not echoed
                stranger = Device(api, email("eve"))
                await stranger.register()
                await stranger.authorize(["000000"])
            found = await alice.request_key(bob.contacts[0])
            secret_text = os.urandom(48)
            await alice.send((found.box_id, secret_text, uuid.uuid4()))
            page = await bob.fetch()
            assert page.messages[0].ciphertext == secret_text
            await bob.ack(page.messages[0].position)
            # Linking and revoking: the account changes log events of their own.
            # A ProcessApi has what link's Device uses of an Api: target, outbox, server.port.
            tablet = await link(api, alice)
            await alice.call("RevokeDevice", revoke_request(alice, tablet), pb.RevokeDeviceResponse)
        finally:
            await api.close()
            assert server.stop(signal.SIGTERM) == 0

    events = log_events(server.log)
    rpcs = [e for e in events if e["event"] == "rpc"]
    methods = {e["method"] for e in rpcs}
    assert {"Register", "Authorize", "RequestKey", "Send", "Fetch", "Ack", "ApproveLink"} <= methods
    assert {"registration_started", "device_authorized", "device_linked"} <= {
        e["event"] for e in events
    }
    for e in rpcs:
        assert set(e) <= {"event", "level", "timestamp", "method", "status", "reason", "ms", "box"}
        assert isinstance(e["ms"], float | int)
        if e["method"] in ("Register", "Authorize", "JoinLink", "CompleteLink"):
            assert "box" not in e
        else:
            assert re.fullmatch(r"[0-9a-f]{12}", e["box"])
    failed = [(e["method"], e["status"], e["reason"]) for e in rpcs if e["status"] != "OK"]
    assert failed == [("Authorize", "PERMISSION_DENIED", "CODE_INVALID")]
    tag = {e["method"]: e["box"] for e in rpcs if "box" in e}
    assert tag["Send"] == tag["RequestKey"]  # alice's calls
    assert tag["Fetch"] == tag["Ack"] != tag["Send"]  # bob's

    text = server.log.read_text()
    never: list[str] = [*codes.values(), PHONE, PHONE[1:]]
    for device in (alice, bob, tablet):
        never += [*device.contacts, str(device.box_id), str(device.device_id)]
        never += [device.device_id.hex, *_forms(device.device_id.bytes)]
        never += _forms(device.hawk_key)
    never += _forms(secret_text)
    leaked = [value for value in never if value in text]
    assert not leaked, f"in the log: {leaked}"


def test_start_up_log_never_shows_a_secret(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    secrets = {
        "ROSSBY_CONTACT_HASH_KEY": os.urandom(32).hex(),
        "ROSSBY_SERVER_SECRET": os.urandom(32).hex(),
        "ROSSBY_WEBHOOK_TOKEN": "tok-" + os.urandom(12).hex(),
        "ROSSBY_HAWK_KEYS": f"7:{os.urandom(32).hex()}",
    }
    password_file = tmp_path / "smtp-password"
    password = "pw-" + os.urandom(12).hex()
    password_file.write_text(password + "\n")
    path_secret = "key-" + os.urandom(8).hex()
    env = {**secrets, "ROSSBY_SMTP_PASSWORD_FILE": str(password_file)}
    flags = (
        "--notifier",
        "route",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(free_port()),  # nothing there: the code e-mail fails
        "--smtp-security",
        "none",
        "--smtp-username",
        "rossby",
        "--smtp-from",
        "codes@example.org",
        "--webhook-url",
        f"https://sms.example.org/{path_secret}?auth={path_secret}",
        "--log-level",
        "debug",
    )
    with ServerProcess(tmp_path, url, *flags, env=env) as server:

        async def register() -> None:
            api = ProcessApi(server)
            try:
                with pytest.raises(grpc.aio.AioRpcError):
                    await Device(api, email("alice")).register()
            finally:
                await api.close()

        asyncio.run(register())
        assert server.stop(signal.SIGTERM) == 0
    text = server.log.read_text()
    config = next(e for e in log_events(server.log) if e["event"] == "config")["settings"]
    for key in ("contact_hash_key", "server_secret", "smtp_password", "webhook_token"):
        assert config[key] == "***"
    assert config["webhook_url"] == "https://sms.example.org/***"
    leaked = [v for v in [*secrets.values(), password, path_secret] if v in text]
    assert not leaked, f"in the log: {leaked}"
