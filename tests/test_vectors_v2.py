"""The committed v2 vectors (tests/vectors/envelope_v2.json), recomputed byte for byte.

Inputs come from the JSON only, so another implementation can run the same
steps; the ML-KEM ciphertexts and shared secrets are inputs (encapsulation
randomness cannot be injected), and decapsulation, which is deterministic,
is checked against them. docs/envelope.md must quote the same bytes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from rossby.crypto import (
    Bundle,
    DeviceEntry,
    DeviceKeyPair,
    IdentityKeys,
    InitialHeader,
    PrekeyKind,
    RatchetSession,
    SenderIdentity,
    draft_envelope,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    initiate,
    open_body,
    parse_envelope,
    respond,
    seal_draft,
    verify_envelope,
    verify_prekey_signature,
)
from rossby.crypto.prekeys import kem_private_key
from tests.support.sessions import ScriptedRng

ROOT = Path(__file__).resolve().parent.parent
V2 = json.loads((ROOT / "tests" / "vectors" / "envelope_v2.json").read_text())


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def keys(name: str) -> DeviceKeyPair:
    d = V2["devices"][name]
    return DeviceKeyPair.from_private_bytes(h(d["encryption_private"]), h(d["signing_private"]))


def device_id(name: str) -> uuid.UUID:
    return uuid.UUID(V2["devices"][name]["device_id"])


def identity(name: str) -> IdentityKeys:
    return IdentityKeys.of(device_id(name), keys(name))


def prekey(name: str, which: str) -> dict[str, Any]:
    out: dict[str, Any] = V2["prekeys"][name][which]
    return out


def bundle(name: str) -> Bundle:
    spk, opk, kem = prekey(name, "signed"), prekey(name, "one_time"), prekey(name, "kem")
    return Bundle(
        identity=identity(name),
        signed_prekey_id=spk["key_id"],
        signed_prekey=h(spk["public"]),
        signed_prekey_signature=h(spk["signature"]),
        one_time_prekey_id=opk["key_id"],
        one_time_prekey=h(opk["public"]),
        kem_prekey_id=kem["key_id"],
        kem_prekey=h(kem["public"]),
        kem_prekey_signature=h(kem["signature"]),
        kem_last_resort=False,
    )


def test_vectors_v2_prekeys() -> None:
    for name in ("a2", "b1"):
        sign, dev = keys(name).signing_private, device_id(name)
        spk, opk = prekey(name, "signed"), prekey(name, "one_time")
        kem, last = prekey(name, "kem"), prekey(name, "last_resort")
        got = generate_signed_prekey(sign, dev, spk["key_id"], rng=ScriptedRng(h(spk["private"])))
        assert (got.public.hex(), got.signature.hex()) == (spk["public"], spk["signature"])
        got = generate_one_time_prekeys(opk["key_id"], 1, rng=ScriptedRng(h(opk["private"])))[0]
        assert got.public.hex() == opk["public"] and opk["signature"] == ""
        for vec, last_resort, kind in (
            (kem, False, PrekeyKind.ONE_TIME_KEM),
            (last, True, PrekeyKind.LAST_RESORT_KEM),
        ):
            got = generate_kem_prekeys(
                sign,
                dev,
                vec["key_id"],
                1,
                last_resort=last_resort,
                rng=ScriptedRng(h(vec["private"])),
            )[0]
            assert (got.public.hex(), got.signature.hex()) == (vec["public"], vec["signature"])
            assert verify_prekey_signature(
                keys(name).signing_public_bytes,
                kind,
                dev,
                vec["key_id"],
                h(vec["public"]),
                h(vec["signature"]),
            )


def test_vectors_v2_kem_inputs_decapsulate() -> None:
    by_public = {prekey(n, "kem")["public"]: prekey(n, "kem")["private"] for n in V2["prekeys"]}
    assert len(V2["kem_inputs"]) == 2
    for vec in V2["kem_inputs"].values():
        seed = h(by_public[vec["kem_public"]])
        assert kem_private_key(seed).decapsulate(h(vec["ciphertext"])).hex() == vec["shared_secret"]


def _pqxdh(vec: dict[str, Any]) -> tuple[InitialHeader, bytes, bytes]:
    kem = V2["kem_inputs"][vec["kem_label"]]
    header, sk, ad = initiate(
        keys("a1").encryption_private,
        identity("a1"),
        bundle(vec["responder"]),
        rng=ScriptedRng(h(vec["ephemeral_private"])),
        encapsulate=lambda _public: (h(kem["shared_secret"]), h(kem["ciphertext"])),
    )
    assert header.encode().hex() == vec["header"]
    assert (sk.hex(), ad.hex()) == (vec["shared_secret"], vec["associated_data"])
    to = vec["responder"]
    sk_b, ad_b = respond(
        keys(to).encryption_private,
        identity(to),
        identity("a1"),
        InitialHeader.decode(h(vec["header"])),
        signed_prekey_private=h(prekey(to, "signed")["private"]),
        one_time_prekey_private=h(prekey(to, "one_time")["private"]),
        kem_private=h(prekey(to, "kem")["private"]),
    )
    assert (sk_b, ad_b) == (sk, ad)
    return header, sk, ad


async def _first_message(vec: dict[str, Any]) -> RatchetSession:
    _, sk, ad = _pqxdh(vec)
    session, message = await RatchetSession.initiate(
        sk,
        h(prekey(vec["responder"], "signed")["public"]),
        h(vec["plaintext"]),
        h(vec["ratchet_ad"]),
        session_ad=ad,
        rng=ScriptedRng(h(vec["a1_ratchet_private"])),
    )
    assert message.hex() == vec["first_message"]
    return session


async def test_vectors_v2_pqxdh_and_first_ratchet_messages() -> None:
    await _first_message(V2["pqxdh"])
    sync = V2["sync_session"]
    a1 = await _first_message(sync)
    a2, plain = await RatchetSession.respond(
        h(sync["shared_secret"]),
        h(prekey("a2", "signed")["private"]),
        h(sync["first_message"]),
        h(sync["ratchet_ad"]),
        session_ad=h(sync["associated_data"]),
        rng=ScriptedRng(h(sync["a2_ratchet_private"])),
    )
    assert plain.hex() == sync["plaintext"]
    reply = await a2.encrypt(h(sync["reply_plaintext"]), b"")
    assert reply.hex() == sync["reply"]
    got = await a1.decrypt(reply, b"", rng=ScriptedRng(h(sync["a1_second_ratchet_private"])))
    assert got.hex() == sync["reply_plaintext"]


async def test_vectors_v2_envelope() -> None:
    env, sync, p = V2["envelope"], V2["sync_session"], V2["pqxdh"]
    a1_to_a2 = await _first_message(sync)
    a2, _ = await RatchetSession.respond(
        h(sync["shared_secret"]),
        h(prekey("a2", "signed")["private"]),
        h(sync["first_message"]),
        b"",
        session_ad=h(sync["associated_data"]),
        rng=ScriptedRng(h(sync["a2_ratchet_private"])),
    )
    await a1_to_a2.decrypt(
        h(sync["reply"]), b"", rng=ScriptedRng(h(sync["a1_second_ratchet_private"]))
    )
    draft = draft_envelope(
        SenderIdentity(uuid.UUID(env["sender_box"]), device_id("a1"), keys("a1").signing_private),
        uuid.UUID(env["recipient_box"]),
        [device_id(n) for n in env["readers"]],
        uuid.UUID(env["message_id"]),
        now_ms=env["now_ms"],
        rng=ScriptedRng(h(env["content_key"])),
    )
    assert draft.associated_data.hex() == env["key_associated_data"] == p["ratchet_ad"]
    assert draft.content_key.hex() == p["plaintext"]
    to_a2 = await a1_to_a2.encrypt(draft.content_key, draft.associated_data)
    assert to_a2.hex() == env["a2_entry_message"]
    entries = {
        device_id("b1"): DeviceEntry(InitialHeader.decode(h(p["header"])), h(p["first_message"])),
        device_id("a2"): DeviceEntry(None, to_a2),
    }
    data = seal_draft(draft, entries, env["kind"], h(env["body"]))
    assert data.hex() == env["envelope"]

    # Both readers open it: b1 by creating its session, a2 with the one it has.
    for name, box, session in (("b1", env["recipient_box"], None), ("a2", env["sender_box"], a2)):
        parsed = parse_envelope(
            data, my_device_id=device_id(name), expected_recipient_box=uuid.UUID(box)
        )
        verify_envelope(parsed, keys("a1").signing_public_bytes)
        if session is None:
            assert parsed.entry.initial is not None
            _, key = await RatchetSession.respond(
                h(p["shared_secret"]),
                h(prekey("b1", "signed")["private"]),
                parsed.entry.ratchet_message,
                parsed.associated_data,
                session_ad=h(p["associated_data"]),
            )
        else:
            key = await session.decrypt(parsed.entry.ratchet_message, parsed.associated_data)
        assert open_body(parsed, key) == (env["kind"], h(env["body"]))


def test_docs_carry_the_committed_v2_vectors() -> None:
    """docs/envelope.md quotes the same bytes, so the prose cannot drift from the code."""
    doc = (ROOT / "docs" / "envelope.md").read_text()
    b1 = V2["prekeys"]["b1"]
    quoted = [
        b1["signed"]["private"],
        b1["signed"]["public"],
        b1["signed"]["signature"],
        b1["one_time"]["private"],
        b1["kem"]["private"],
        b1["kem"]["signature"],
        V2["pqxdh"]["ephemeral_private"],
        V2["pqxdh"]["shared_secret"],
        V2["pqxdh"]["associated_data"],
        V2["pqxdh"]["a1_ratchet_private"],
        V2["pqxdh"]["first_message"],
        V2["kem_inputs"][V2["pqxdh"]["kem_label"]]["shared_secret"],
        V2["envelope"]["content_key"],
        V2["envelope"]["envelope"],
    ]
    for value in quoted:
        assert value in doc, value[:32]
