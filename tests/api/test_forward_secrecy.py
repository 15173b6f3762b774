"""Issue 18's acceptance test: forward secrecy and post-compromise security, end to end.

Alice and Bob talk through a real server. Every ciphertext queued for Bob
is captured from the server's store (what someone recording the traffic or
dumping the database holds). After N more messages, the attacker steals
Bob's device: its keyfile (the long-term identity keys, with the
passphrase) and its ``state.bin`` (prekey privates and ratchet sessions),
copied into a home of its own, and runs the real client code on it.

* Forward secrecy: none of the captured messages opens with the stolen
  device, though Bob read every one of them.
* The theft is real: the next message Alice sends on the same chain DOES
  open for the attacker (without this check the two below could pass for
  a broken attacker).
* Post-compromise security: once Bob has written again (a DH ratchet step
  with a key pair made after the theft), Alice's later messages do not
  open with the stolen state, and Bob reads them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rossby.client import InvalidMessage, RossbyClient
from rossby.client.state import KEYFILE, STATE
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import FAST, PASS, Api, Join
from tests.api.sessions_support import captured, contact_of, drain, texts

N_MORE = 4


async def talk(
    api: Api, alice: RossbyClient, bob: RossbyClient, label: str, rounds: int
) -> list[tuple[pb.QueuedMessage, str]]:
    """``rounds`` exchanges: two messages Alice -> Bob, then Bob's reply.
    Answers what was captured for Bob, with the text Bob read for each."""
    out = []
    for i in range(rounds):
        for j in range(2):
            text = f"{label} {i}.{j}"
            report = await alice.send([contact_of(bob)], text)
            out.append((await captured(api, bob, report.message_id), text))
            assert texts(await drain(bob)) == [text]  # the legitimate device reads it
        await bob.send([contact_of(alice)], f"{label} reply {i}")
        assert texts(await drain(alice)) == [f"{label} reply {i}"]
    return out


def steal(bob: RossbyClient, into: Path) -> None:
    """The attacker's copy of Bob's device: keyfile and state, as on disk now."""
    into.mkdir(mode=0o700)
    for name in (KEYFILE, STATE):
        shutil.copy2(bob.home / name, into / name)


async def test_stolen_keys_and_state_read_neither_the_past_nor_the_healed_future(
    api: Api, people: Join, tmp_path: Path
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(contact_of(alice))
    past = await talk(api, alice, bob, "past", 3)
    past += await talk(api, alice, bob, "more", N_MORE)
    assert len(past) == 2 * (3 + N_MORE)

    steal(bob, tmp_path / "attacker")
    async with RossbyClient.open(tmp_path / "attacker", PASS, scrypt_n=FAST) as attacker:
        # The long-term keys are really Bob's.
        assert attacker._keyfile.keys.encryption_private_bytes() == (
            bob._keyfile.keys.encryption_private_bytes()
        )
        # Forward secrecy: every earlier message stays shut, the first-contact
        # ones (one-time prekey privates deleted) and the ratcheted ones alike.
        for message, _text in past:
            with pytest.raises(InvalidMessage):
                await attacker.open_message(message)

        # The theft is real: Alice's next message, on the chain the stolen
        # state knows, opens for the attacker too.
        report = await alice.send([contact_of(bob)], "after the theft")
        exposed = await captured(api, bob, report.message_id)
        assert (await attacker.open_message(exposed)).text == "after the theft"
        assert texts(await drain(bob)) == ["after the theft"]

        # Bob writes: a DH ratchet step with a key pair the attacker never saw.
        await bob.send([contact_of(alice)], "healing")
        assert texts(await drain(alice)) == ["healing"]
        for i in range(3):
            text = f"healed {i}"
            report = await alice.send([contact_of(bob)], text)
            message = await captured(api, bob, report.message_id)
            with pytest.raises(InvalidMessage):
                await attacker.open_message(message)
            assert texts(await drain(bob)) == [text]
