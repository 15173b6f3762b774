"""The account commands of ``rossby client`` as a user runs them:
subprocesses against a real ``rossby serve`` (SQLite; the SDK underneath
runs on both backends in test_accounts.py and test_client_sdk.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.api.test_client_cli import PASS, client, doc, server  # noqa: F401 - fixture
from tests.serverproc import FAST_KEYFILE, ServerProcess, rossby


def code_for(tmp_path: Path, contact: str) -> str:
    out = rossby("client", "dev-code", "--outbox", str(tmp_path / "outbox"), contact, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["codes"][0])


def person(srv: ServerProcess, tmp_path: Path, name: str) -> tuple[Path, str]:
    home, contact = tmp_path / name, f"{name}@example.com"
    client(home, "init", "--server", srv.target, "--contact", contact, "--device", f"{name}-laptop")
    client(home, "verify", code_for(tmp_path, contact))
    return home, contact


def error(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 1, (done.stdout, done.stderr)
    return json.loads(done.stdout)["error"]


def test_link_keylog_profile_rules_contacts_revoke(
    server: ServerProcess,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    alice, alice_contact = person(server, tmp_path, "alice")
    bob, bob_contact = person(server, tmp_path, "bob")
    tablet = tmp_path / "tablet"

    # Link: the laptop shows a code and waits; the tablet joins with it.
    code_file = tmp_path / "link-code"
    env = {**os.environ, "ROSSBY_PASSPHRASE": PASS, **FAST_KEYFILE}
    linking = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rossby",
            "client",
            "--home",
            str(alice),
            "link",
            "--yes",
            "--timeout",
            "60",
            "--code-file",
            str(code_file),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not code_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        code = code_file.read_text().strip()
        assert code.startswith("rossby://link?")
        joined = doc(client(tablet, "join", code, "--device", "tablet", "--timeout", "60"))
        out, err = linking.communicate(timeout=60)
    finally:
        if linking.poll() is None:
            linking.kill()
    assert linking.returncode == 0, (out, err)
    linked = json.loads(out)["linked_device"]
    assert joined["identity"]["verified"] and linked["name"] == "tablet"
    assert linked["device_id"] == joined["identity"]["device_id"]
    box = joined["identity"]["box_id"]
    devices = doc(client(alice, "devices"))["devices"]
    assert len(devices) == 2 and linked["device_id"] in {d["device_id"] for d in devices}
    # The laptop's contacts reach the tablet end to end.
    client(tablet, "fetch")
    assert doc(client(tablet, "contacts", "list"))["contacts"] == [alice_contact]

    # The key log, verified by Bob's client.
    log = doc(client(bob, "keylog", alice_contact))
    assert log["verified"] and log["box_id"] == box
    assert [e["kind"] for e in log["entries"]] == ["register", "link"]

    # Profile and accept-from.
    shown = doc(client(alice, "profile", "--name", "Alice", "--accept-from", "contacts-only"))
    assert shown["profile"]["display_name"] == "Alice"
    assert error(client(bob, "send", alice_contact, "hi", check=False))["reason"] == "NOT_FOUND"
    client(alice, "accept", bob_contact)
    assert doc(client(bob, "profile", alice_contact))["profile"]["accept_from"] == "contacts-only"
    assert doc(client(bob, "send", alice_contact, "hi"))["ok"]

    # Blocking looks like an unknown box to Bob.
    client(alice, "block", bob_contact)
    assert doc(client(alice, "blocked"))["boxes"][0]["contact"] == bob_contact
    assert error(client(bob, "send", alice_contact, "again", check=False))["reason"] == "NOT_FOUND"
    client(alice, "unblock", bob_contact)
    assert doc(client(alice, "blocked"))["boxes"] == []

    # Contacts: add a second one, verify it, drop the first; the last stays.
    work = "alice-work@example.com"
    client(alice, "contacts", "add", work)
    client(alice, "contacts", "verify", work, code_for(tmp_path, work))
    client(alice, "contacts", "remove", alice_contact)
    assert doc(client(alice, "contacts", "list"))["contacts"] == [work]
    last = error(client(alice, "contacts", "remove", work, check=False))
    assert last["reason"] == "LAST_CONTACT"

    # Rotation and revocation show up in the key log.
    client(bob, "rotate-keys")
    assert [e["kind"] for e in doc(client(alice, "keylog", bob_contact))["entries"]] == [
        "register",
        "rotate",
    ]
    client(alice, "revoke", linked["device_id"])
    assert error(client(tablet, "fetch", check=False))["reason"] == "HAWK_UNKNOWN_ID"
    own = doc(client(alice, "keylog"))
    assert [e["kind"] for e in own["entries"]] == ["register", "link", "revoke"]
