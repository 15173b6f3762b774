"""``rossby client`` as a user runs it: subprocesses against a real ``rossby serve``.

SQLite only: the CLI adds nothing backend-specific on top of the SDK, which
tests/api/test_client_sdk.py runs on both backends.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import FAST_KEYFILE, ServerProcess, rossby

PASS = "correct horse battery staple"


@pytest.fixture
def server(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    with ServerProcess(tmp_path, url) as proc:
        yield proc


def client(
    home: Path, *args: str, passphrase: str = PASS, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = rossby(
        "client",
        "--home",
        str(home),
        *args,
        "--json",
        env={"ROSSBY_PASSPHRASE": passphrase, **FAST_KEYFILE},
    )
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def doc(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_two_people_register_talk_and_compare_safety_numbers(
    server: ServerProcess, tmp_path: Path
) -> None:
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    contacts = {name: f"{name}@example.com" for name in homes}
    for name, home in homes.items():
        init = doc(
            client(
                home,
                "init",
                "--server",
                server.target,
                "--contact",
                contacts[name],
                "--device",
                f"{name}-laptop",
            )
        )
        assert init["code_sent_to"] == [contacts[name]]
        assert init["identity"]["verified"] is False
        code = doc(
            rossby(
                "client", "dev-code", "--outbox", str(tmp_path / "outbox"), contacts[name], "--json"
            )
        )["codes"]
        verified = doc(client(home, "verify", *code))["identity"]
        assert verified["verified"] is True and verified["box_id"]
    assert (homes["alice"] / "device.key").stat().st_mode & 0o777 == 0o600

    sent = doc(client(homes["alice"], "send", contacts["bob"], "hello bob"))
    assert sent["ok"] and [r["outcome"] for r in sent["results"]] == ["queued"]

    # Bob resolves Alice first, so fetch can name her contact.
    client(homes["bob"], "resolve", contacts["alice"])
    second = doc(client(homes["bob"], "fetch"))
    assert second["held"] == []
    (msg,) = second["messages"]
    assert (msg["text"], msg["sender_contact"], msg["message_id"]) == (
        "hello bob",
        contacts["alice"],
        sent["message_id"],
    )
    assert msg["sent_at_ms"] > 0 and msg["received_at_ms"] >= msg["sent_at_ms"] - 60_000
    assert doc(client(homes["bob"], "fetch"))["messages"] == []

    client(homes["bob"], "send", contacts["alice"], "hi alice")
    (reply,) = doc(client(homes["alice"], "fetch"))["messages"]
    assert (reply["text"], reply["sender_contact"]) == ("hi alice", contacts["bob"])

    # Disappearing messages: the server learns the timer and reports it back.
    brief = doc(client(homes["alice"], "send", "--expire-after", "1h", contacts["bob"], "brief"))
    assert [r["outcome"] for r in brief["results"]] == ["queued"]
    (got,) = doc(client(homes["bob"], "fetch"))["messages"]
    assert got["text"] == "brief"
    assert abs(got["expires_at_ms"] - (got["received_at_ms"] + 3_600_000)) <= 5
    too_long = client(
        homes["alice"], "send", "--expire-after", "31d", contacts["bob"], "no", check=False
    )
    assert too_long.returncode == 1
    assert [r["reason"] for r in doc(too_long)["results"]] == ["EXPIRE_AFTER_INVALID"]
    bad = client(
        homes["alice"], "send", "--expire-after", "soon", contacts["bob"], "x", check=False
    )
    assert bad.returncode == 2 and "not a duration" in bad.stderr

    alice_sn = doc(client(homes["alice"], "safety-number", contacts["bob"]))
    bob_sn = doc(client(homes["bob"], "safety-number", contacts["alice"]))
    assert alice_sn["safety_number"] == bob_sn["safety_number"]
    assert len(alice_sn["safety_number"].split()) == 12
    assert alice_sn["qr_payload_hex"] == bob_sn["qr_payload_hex"]
    assert len(bytes.fromhex(alice_sn["qr_payload_hex"])) == 65

    who = doc(client(homes["alice"], "whoami"))["identity"]
    assert who["contacts"] == [contacts["alice"]] and who["server"] == server.target
    (device,) = doc(client(homes["alice"], "devices"))["devices"]
    assert device["this_device"] and device["device_id"] == who["device_id"]

    # Alice's first contact claimed one prekey of each kind of Bob's; Bob
    # answered on that session, so none of Alice's were claimed.
    assert doc(client(homes["alice"], "prekeys"))["one_time_prekeys"] == 100
    prekeys = doc(client(homes["bob"], "prekeys"))
    assert (prekeys["one_time_prekeys"], prekeys["one_time_kem_prekeys"]) == (99, 99)
    assert prekeys["signed_prekey_id"] and prekeys["low"] is False
    rotated = doc(client(homes["bob"], "prekeys", "--rotate"))
    assert rotated["signed_prekey_id"] not in (0, prekeys["signed_prekey_id"])
    refilled = doc(client(homes["bob"], "prekeys", "--refill"))
    assert (refilled["one_time_prekeys"], refilled["one_time_kem_prekeys"]) == (100, 100)

    wrong = client(homes["alice"], "whoami", passphrase="nope", check=False)
    assert wrong.returncode == 1
    assert doc(wrong)["error"]["type"] == "WrongPassphrase"

    # Human-readable output, as a person sees it.
    client(homes["alice"], "send", contacts["bob"], "plain text please")
    human = rossby(
        "client",
        "--home",
        str(homes["bob"]),
        "fetch",
        env={"ROSSBY_PASSPHRASE": PASS, **FAST_KEYFILE},
    )
    assert human.returncode == 0, human.stderr
    assert f"{contacts['alice']}: plain text please" in human.stdout


def test_unknown_contact_fails_with_its_reason(server: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "carol"
    client(
        home,
        "init",
        "--server",
        server.target,
        "--contact",
        "carol@example.com",
        "--device",
        "phone",
    )
    early = client(home, "send", "bob@example.com", "hi", check=False)
    assert early.returncode == 1 and doc(early)["error"]["type"] == "NotAuthorized"
    code = doc(
        rossby(
            "client",
            "dev-code",
            "--outbox",
            str(tmp_path / "outbox"),
            "carol@example.com",
            "--json",
        )
    )["codes"]
    client(home, "verify", *code)
    missing = client(home, "send", "nobody@example.com", "hi", check=False)
    assert missing.returncode == 1
    assert doc(missing)["error"] == {
        "type": "NotFound",
        "reason": "NOT_FOUND",
        "message": "no such user",
    }
