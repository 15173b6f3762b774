"""``rossby client listen`` and ``rossby client typing`` as a user runs them:
subprocesses against a real ``rossby serve`` (SQLite; the SDK tests cover
both backends)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_client_cli import PASS, client, doc
from tests.serverproc import FAST_KEYFILE, ServerProcess, rossby


@pytest.fixture
def server(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'rossby.db'}"
    done = rossby("migrate", "--store", url, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    with ServerProcess(tmp_path, url, "--stream-poll", "600") as proc:
        yield proc


class Lines:
    """A long-running ``rossby client ...`` whose stdout is read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rossby", "client", "--home", str(home), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ROSSBY_PASSPHRASE": PASS, **FAST_KEYFILE},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, event: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"exited before {event!r}: {out} {stderr}")
            item = json.loads(line)
            out.append(item)
            if item["event"] == event:
                return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_listen_shows_messages_typing_and_receipts(server: ServerProcess, tmp_path: Path) -> None:
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    contacts = {name: f"{name}@example.com" for name in homes}
    for name, home in homes.items():
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
        code = doc(
            rossby(
                "client", "dev-code", "--outbox", str(tmp_path / "outbox"), contacts[name], "--json"
            )
        )["codes"]
        client(home, "verify", *code)
    client(homes["bob"], "resolve", contacts["alice"])
    client(homes["alice"], "resolve", contacts["bob"])

    bob = Lines(homes["bob"], "listen", "--json", "--receipts", "--count", "2")
    try:
        bob.until("up_to_date")
        typing = doc(client(homes["alice"], "typing", contacts["bob"]))
        assert typing["ok"] and [r["outcome"] for r in typing["results"]] == ["ephemeral"]
        shown = bob.until("typing")[-1]
        assert (shown["sender_contact"], shown["active"]) == (contacts["alice"], True)
        first = doc(client(homes["alice"], "send", contacts["bob"], "hello bob"))
        message = bob.until("message")[-1]
        assert (message["text"], message["sender_contact"]) == ("hello bob", contacts["alice"])
        second = doc(client(homes["alice"], "send", contacts["bob"], "second"))
        end = bob.until("end")
        assert [m["text"] for m in end if m["event"] == "message"] == ["second"]
        assert end[-1]["received"] == 2 and end[-1]["acked_through"] > 0
        assert bob.proc.wait(30) == 0
    finally:
        bob.close()

    # Everything shown was acked; alice finds bob's read receipts waiting.
    assert doc(client(homes["bob"], "fetch"))["messages"] == []
    alice = Lines(homes["alice"], "listen", "--json", "--for", "3")
    try:
        events = alice.until("end")
    finally:
        alice.close()
    read = [m for e in events if e["event"] == "receipt" for m in e["message_ids"]]
    assert sorted(read) == sorted([first["message_id"], second["message_id"]])
    assert all(e["reader_contact"] == contacts["bob"] for e in events if e["event"] == "receipt")
