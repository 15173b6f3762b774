"""Generate ``envelope_v1.json`` and ``envelope_v2.json``: fixed inputs -> exact outputs.

Run once when a format is introduced, then commit the JSON; the test suite
only CHECKS the committed file (tests/test_crypto.py::test_vectors_*), so a
change that alters any output byte fails loudly instead of quietly
regenerating. Another implementation (a mobile client, say) can be checked
against the same file.

    .venv/bin/python tests/vectors/make_vectors.py            # writes both JSON files
    .venv/bin/python tests/vectors/make_vectors.py --markdown  # prints docs/envelope.md's sections

All "random" inputs are fixed: private keys and nonces are SHA-256 of a
readable label, so they look like real keys yet are reproducible, and the
JSON stores them in hex so a reader needs no code to reuse them.

One v2 input cannot be derived that way: ML-KEM-768 encapsulation draws its
own randomness inside ``cryptography``, so each KEM ciphertext and shared
secret is drawn once by a real encapsulation and then kept as an INPUT (read
back from the committed envelope_v2.json when it is there, so a rerun is
byte-stable). Decapsulation is deterministic, and the test checks that the
recipient's seed decapsulates the ciphertext to exactly that secret.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey

from rossby.crypto import (
    Bundle,
    DeviceEntry,
    DeviceKeyfile,
    DeviceKeyPair,
    HawkCredentials,
    IdentityKeys,
    PrekeySecret,
    PublicDeviceKeys,
    RatchetSession,
    RecipientDevice,
    SenderIdentity,
    authorize_signature,
    credentials_aad,
    draft_envelope,
    encode_keyfile,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    initiate,
    key_signature,
    respond,
    safety_number,
    seal,
    seal_draft,
    seal_envelope,
)
from rossby.v1 import rossby_pb2
from tests.support.sessions import ScriptedRng

OUT = Path(__file__).with_name("envelope_v1.json")
OUT_V2 = Path(__file__).with_name("envelope_v2.json")


def fixed(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(b"rossby/v1 test vector: " + label.encode()).digest()[:n]


def fixed64(label: str) -> bytes:
    """64 fixed bytes (an ML-KEM-768 seed): the two halves are labelled apart."""
    return fixed(label + " (d)") + fixed(label + " (z)")


def device(label: str) -> dict[str, str]:
    keys = DeviceKeyPair.from_private_bytes(fixed(label + " x25519"), fixed(label + " ed25519"))
    return {
        "encryption_private": keys.encryption_private_bytes().hex(),
        "encryption_public": keys.encryption_public_bytes.hex(),
        "signing_private": keys.signing_private_bytes().hex(),
        "signing_public": keys.signing_public_bytes.hex(),
    }


def keypair(d: dict[str, Any]) -> DeviceKeyPair:
    return DeviceKeyPair.from_private_bytes(
        bytes.fromhex(d["encryption_private"]), bytes.fromhex(d["signing_private"])
    )


def build() -> dict[str, Any]:
    box_a = uuid.UUID("0b3e6c1e-4a55-4c1b-9f49-3f2f9f3f2a10")
    box_b = uuid.UUID("5d6f1b2a-8c3e-4f71-a2d4-6e9b0c1d2e3f")
    ids = {
        "a1": uuid.UUID("a1a1a1a1-0000-4000-8000-000000000001"),
        "a2": uuid.UUID("a2a2a2a2-0000-4000-8000-000000000002"),
        "b1": uuid.UUID("b1b1b1b1-0000-4000-8000-000000000003"),
        "b2": uuid.UUID("b2b2b2b2-0000-4000-8000-000000000004"),
    }
    devices = {name: {"device_id": str(i), **device(name)} for name, i in ids.items()}
    a1 = keypair(devices["a1"])

    # Signatures the server checks.
    codes = ["123456", "654321"]
    signatures = {
        "device": "a1",
        "device_id": str(ids["a1"]),
        "codes": codes,
        "key_signature": key_signature(
            a1.signing_private, ids["a1"], a1.encryption_public_bytes
        ).hex(),
        "authorize_signature": authorize_signature(a1.signing_private, ids["a1"], codes).hex(),
    }

    # Sealed Hawk credentials, as the server answers Authorize: the plaintext
    # is the serialized HawkCredentials message.
    hawk_key = fixed("hawk key")
    hawk_id = f"{box_a}.{ids['a1']}"
    credentials = rossby_pb2.HawkCredentials(
        id=hawk_id, key=hawk_key, algorithm="sha256"
    ).SerializeToString()
    sealed_eph = fixed("sealed ephemeral")
    sealed_vec = {
        "recipient": "a1",
        "ephemeral_private": sealed_eph.hex(),
        "plaintext": credentials.hex(),
        "aad": credentials_aad(ids["a1"]).hex(),
        "sealed": seal(
            a1.encryption_public_bytes,
            credentials,
            aad=credentials_aad(ids["a1"]),
            rng=ScriptedRng(sealed_eph),
        ).hex(),
    }

    # A text from a1 to box B, readable by b1, b2 and the sender's other device a2.
    env_eph, content_key = fixed("envelope ephemeral"), fixed("envelope content key")
    message_id = uuid.UUID("3c3c3c3c-1111-4222-8333-444444444444")
    now_ms = 1767225600000  # 2026-01-01T00:00:00Z
    body = "hello, rossby \N{GLOBE WITH MERIDIANS}".encode()
    recipients = ["b1", "b2", "a2"]
    envelope = seal_envelope(
        SenderIdentity(box_a, ids["a1"], a1.signing_private),
        box_b,
        [
            RecipientDevice(ids[n], bytes.fromhex(devices[n]["encryption_public"]))
            for n in recipients
        ],
        message_id,
        "text",
        body,
        now_ms=now_ms,
        rng=ScriptedRng(env_eph, content_key),
    )
    envelope_vec = {
        "sender_box": str(box_a),
        "sender": "a1",
        "recipient_box": str(box_b),
        "recipients": recipients,
        "message_id": str(message_id),
        "now_ms": now_ms,
        "kind": "text",
        "body": body.hex(),
        "ephemeral_private": env_eph.hex(),
        "content_key": content_key.hex(),
        "envelope": envelope.hex(),
    }

    # a1's keyfile after authorization, at a test-sized scrypt cost.
    salt, nonce = fixed("keyfile salt", 16), fixed("keyfile nonce", 12)
    keyfile = DeviceKeyfile(
        device_id=ids["a1"],
        keys=a1,
        box_id=box_a,
        hawk=HawkCredentials(hawk_id, hawk_key, "sha256"),
        server="rossby.example:1205",
        home_region="dc1",
    )
    keyfile_vec = {
        "device": "a1",
        "box_id": str(box_a),
        "hawk_id": hawk_id,
        "hawk_key": hawk_key.hex(),
        "server": keyfile.server,
        "home_region": keyfile.home_region,
        "passphrase": "correct horse battery staple",
        "scrypt_n": 2**10,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "keyfile": encode_keyfile(
            keyfile,
            "correct horse battery staple",
            scrypt_n=2**10,
            rng=ScriptedRng(salt, nonce),
        ).hex(),
    }

    def pub(name: str) -> PublicDeviceKeys:
        d = devices[name]
        return PublicDeviceKeys(
            bytes.fromhex(d["encryption_public"]), bytes.fromhex(d["signing_public"])
        )

    number = safety_number(box_a, [pub("a1"), pub("a2")], box_b, [pub("b1"), pub("b2")])
    safety_vec = {
        "box_a": str(box_a),
        "devices_a": ["a1", "a2"],
        "box_b": str(box_b),
        "devices_b": ["b1", "b2"],
        "digits": number.digits,
        "groups": str(number),
        "qr_payload": number.qr_payload.hex(),
    }

    return {
        "format": "rossby crypto test vectors, v1",
        "devices": devices,
        "signatures": signatures,
        "sealed": sealed_vec,
        "envelope": envelope_vec,
        "keyfile": keyfile_vec,
        "safety": safety_vec,
    }


def markdown(v: dict[str, Any]) -> str:
    lines = ["Devices (private keys are SHA-256 of a label; see make_vectors.py):", ""]
    lines.append("| device | id | X25519 private | Ed25519 private |")
    lines.append("| --- | --- | --- | --- |")
    for name, d in v["devices"].items():
        lines.append(
            f"| {name} | `{d['device_id']}` | `{d['encryption_private']}` "
            f"| `{d['signing_private']}` |"
        )
    s, sealed, env = v["signatures"], v["sealed"], v["envelope"]
    kf, sn = v["keyfile"], v["safety"]
    lines += [
        "",
        f"Signatures by a1 (device id `{s['device_id']}`), codes `{s['codes']}`:",
        "",
        "```",
        f"key_signature       {s['key_signature']}",
        f"authorize_signature {s['authorize_signature']}",
        "```",
        "",
        "Sealed credentials to a1; ephemeral private key, plaintext, aad, result:",
        "",
        "```",
        sealed["ephemeral_private"],
        sealed["plaintext"],
        sealed["aad"],
        sealed["sealed"],
        "```",
        "",
        f"Envelope from a1 (box `{env['sender_box']}`) to box `{env['recipient_box']}`, "
        f"readers {', '.join(env['recipients'])}, message id `{env['message_id']}`, "
        f"now_ms {env['now_ms']}, kind `{env['kind']}`, body (hex) `{env['body']}`, "
        f"ephemeral private `{env['ephemeral_private']}`, "
        f"content key `{env['content_key']}`:",
        "",
        "```",
        env["envelope"],
        "```",
        "",
        f"Keyfile of a1, passphrase `{kf['passphrase']}`, scrypt n={kf['scrypt_n']} r=8 p=1, "
        f"salt `{kf['salt']}`, nonce `{kf['nonce']}`:",
        "",
        "```",
        kf["keyfile"],
        "```",
        "",
        "Safety number of box A (a1, a2) and box B (b1, b2), and the QR payload:",
        "",
        "```",
        sn["groups"],
        sn["qr_payload"],
        "```",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- v2


def _prekeys(name: str, keys: DeviceKeyPair, device_id: uuid.UUID) -> dict[str, PrekeySecret]:
    """One device's prekeys: signed id 1, one-time X25519 id 100, one-time KEM id 200,
    last-resort KEM id 999, every secret a labelled fixed value."""
    sign = keys.signing_private
    return {
        "signed": generate_signed_prekey(
            sign, device_id, 1, rng=ScriptedRng(fixed(f"{name} signed prekey"))
        ),
        "one_time": generate_one_time_prekeys(
            100, 1, rng=ScriptedRng(fixed(f"{name} one-time prekey"))
        )[0],
        "kem": generate_kem_prekeys(
            sign, device_id, 200, 1, rng=ScriptedRng(fixed64(f"{name} kem seed"))
        )[0],
        "last_resort": generate_kem_prekeys(
            sign,
            device_id,
            999,
            1,
            last_resort=True,
            rng=ScriptedRng(fixed64(f"{name} last-resort kem seed")),
        )[0],
    }


def _secret_json(k: PrekeySecret) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "private": k.private.hex(),
        "public": k.public.hex(),
        "signature": k.signature.hex(),
    }


def _kem_input(previous: dict[str, Any], label: str, kem_public: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext): kept from the committed file, else one real encapsulation."""
    old = previous.get("kem_inputs", {}).get(label)
    if old is not None and old["kem_public"] == kem_public.hex():
        return bytes.fromhex(old["shared_secret"]), bytes.fromhex(old["ciphertext"])
    return MLKEM768PublicKey.from_public_bytes(kem_public).encapsulate()


def _bundle(ident: IdentityKeys, pk: dict[str, PrekeySecret], one_time: bool = True) -> Bundle:
    return Bundle(
        identity=ident,
        signed_prekey_id=pk["signed"].key_id,
        signed_prekey=pk["signed"].public,
        signed_prekey_signature=pk["signed"].signature,
        one_time_prekey_id=pk["one_time"].key_id if one_time else None,
        one_time_prekey=pk["one_time"].public if one_time else None,
        kem_prekey_id=pk["kem"].key_id,
        kem_prekey=pk["kem"].public,
        kem_prekey_signature=pk["kem"].signature,
        kem_last_resort=False,
    )


async def build_v2(previous: dict[str, Any]) -> dict[str, Any]:
    """a1 writes to box B (b1, first contact: an initial entry) and to its own a2
    (a session a1 opened earlier, which a2 has answered: a plain entry)."""
    v1 = build()
    box_a = uuid.UUID(v1["envelope"]["sender_box"])
    box_b = uuid.UUID(v1["envelope"]["recipient_box"])
    names = ("a1", "a2", "b1")
    ids = {n: uuid.UUID(v1["devices"][n]["device_id"]) for n in names}
    keys = {n: keypair(v1["devices"][n]) for n in names}
    ident = {n: IdentityKeys.of(ids[n], keys[n]) for n in names}
    prekeys = {n: _prekeys(n, keys[n], ids[n]) for n in ("a2", "b1")}
    kem_inputs: dict[str, dict[str, str]] = {}

    async def first_contact(
        to: str, label: str, ad: bytes, plaintext: bytes
    ) -> tuple[dict[str, Any], RatchetSession, Any, bytes]:
        """PQXDH a1 -> ``to`` with every draw fixed, and the first ratchet message."""
        pk = prekeys[to]
        ss, ct = _kem_input(previous, label, pk["kem"].public)
        kem_inputs[label] = {
            "kem_public": pk["kem"].public.hex(),
            "ciphertext": ct.hex(),
            "shared_secret": ss.hex(),
        }
        eph, ratchet_key = fixed(f"{label} ephemeral"), fixed(f"{label} a1 ratchet key")
        header, sk, session_ad = initiate(
            keys["a1"].encryption_private,
            ident["a1"],
            _bundle(ident[to], pk),
            rng=ScriptedRng(eph),
            encapsulate=lambda _public: (ss, ct),
        )
        session, message = await RatchetSession.initiate(
            sk,
            pk["signed"].public,
            plaintext,
            ad,
            session_ad=session_ad,
            rng=ScriptedRng(ratchet_key),
        )
        vec = {
            "initiator": "a1",
            "responder": to,
            "ephemeral_private": eph.hex(),
            "kem_label": label,
            "a1_ratchet_private": ratchet_key.hex(),
            "header": header.encode().hex(),
            "shared_secret": sk.hex(),
            "associated_data": session_ad.hex(),
            "ratchet_ad": ad.hex(),
            "plaintext": plaintext.hex(),
            "first_message": message.hex(),
        }
        return vec, session, header, sk

    # Earlier: a1 opened a session with its own a2, and a2 answered.
    sync_vec, a1_to_a2, _, sync_sk = await first_contact("a2", "a1-a2", b"", b"hello, other me")
    a2_key, a1_key2 = fixed("a1-a2 a2 ratchet key"), fixed("a1-a2 a1 second ratchet key")
    a2_session, _ = await RatchetSession.respond(
        sync_sk,
        prekeys["a2"]["signed"].private,
        bytes.fromhex(sync_vec["first_message"]),
        b"",
        session_ad=bytes.fromhex(sync_vec["associated_data"]),
        rng=ScriptedRng(a2_key),
    )
    reply = await a2_session.encrypt(b"hi", b"")
    assert await a1_to_a2.decrypt(reply, b"", rng=ScriptedRng(a1_key2)) == b"hi"
    sync_vec.update(
        a2_ratchet_private=a2_key.hex(),
        reply_plaintext=b"hi".hex(),
        reply=reply.hex(),
        a1_second_ratchet_private=a1_key2.hex(),
    )

    # Now: one envelope, b1's entry opens a session, a2's continues one.
    content_key = fixed("v2 envelope content key")
    message_id = uuid.UUID("4d4d4d4d-5555-4666-8777-888888888888")
    now_ms = 1767225660000
    draft = draft_envelope(
        SenderIdentity(box_a, ids["a1"], keys["a1"].signing_private),
        box_b,
        [ids["b1"], ids["a2"]],
        message_id,
        now_ms=now_ms,
        rng=ScriptedRng(content_key),
    )
    pqxdh_vec, _, b1_header, _ = await first_contact(
        "b1", "a1-b1", draft.associated_data, draft.content_key
    )
    to_a2 = await a1_to_a2.encrypt(draft.content_key, draft.associated_data)
    body = "hello again, rossby \N{GLOBE WITH MERIDIANS}".encode()
    envelope = seal_draft(
        draft,
        {
            ids["b1"]: DeviceEntry(b1_header, bytes.fromhex(pqxdh_vec["first_message"])),
            ids["a2"]: DeviceEntry(None, to_a2),
        },
        "text",
        body,
    )
    # The responder side agrees (a generator that disagreed with itself is no vector).
    sk_b, _ = respond(
        keys["b1"].encryption_private,
        ident["b1"],
        ident["a1"],
        b1_header,
        signed_prekey_private=prekeys["b1"]["signed"].private,
        one_time_prekey_private=prekeys["b1"]["one_time"].private,
        kem_private=prekeys["b1"]["kem"].private,
    )
    assert sk_b.hex() == pqxdh_vec["shared_secret"]
    return {
        "format": "rossby crypto test vectors, v2",
        "devices": {n: v1["devices"][n] for n in names},
        "prekeys": {n: {k: _secret_json(v) for k, v in pk.items()} for n, pk in prekeys.items()},
        "kem_inputs": kem_inputs,
        "sync_session": sync_vec,
        "pqxdh": pqxdh_vec,
        "envelope": {
            "sender_box": str(box_a),
            "sender": "a1",
            "recipient_box": str(box_b),
            "readers": ["b1", "a2"],
            "message_id": str(message_id),
            "now_ms": now_ms,
            "kind": "text",
            "body": body.hex(),
            "content_key": content_key.hex(),
            "key_associated_data": draft.associated_data.hex(),
            "a2_entry_message": to_a2.hex(),
            "envelope": envelope.hex(),
        },
    }


def markdown_v2(v: dict[str, Any]) -> str:
    b1, p, env = v["prekeys"]["b1"], v["pqxdh"], v["envelope"]
    kem = v["kem_inputs"][p["kem_label"]]
    return "\n".join(
        [
            "Prekeys of b1 (device id "
            f"`{v['devices']['b1']['device_id']}`): signed prekey id 1, private "
            f"`{b1['signed']['private']}`, public `{b1['signed']['public']}`, signature:",
            "",
            "```",
            b1["signed"]["signature"],
            "```",
            "",
            f"One-time prekey id 100, private `{b1['one_time']['private']}`; one-time KEM "
            f"prekey id 200, seed `{b1['kem']['private']}`; its signature:",
            "",
            "```",
            b1["kem"]["signature"],
            "```",
            "",
            f"PQXDH a1 -> b1 (with the one-time prekey): ephemeral private "
            f"`{p['ephemeral_private']}`; KEM shared secret (an input, see above) "
            f"`{kem['shared_secret']}`; the KEM ciphertext is in the JSON. "
            "SK, then the AD:",
            "",
            "```",
            p["shared_secret"],
            p["associated_data"],
            "```",
            "",
            f"First ratchet message a1 -> b1 (a1's ratchet private `{p['a1_ratchet_private']}`, "
            "plaintext the envelope's content key, AD the envelope's key AD):",
            "",
            "```",
            p["first_message"],
            "```",
            "",
            f"Envelope v2 from a1 to box `{env['recipient_box']}`, readers b1 (initial entry) "
            f"and a2 (session entry), message id `{env['message_id']}`, now_ms "
            f"{env['now_ms']}, kind `text`, body (hex) `{env['body']}`, content key "
            f"`{env['content_key']}`:",
            "",
            "```",
            env["envelope"],
            "```",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--markdown", action="store_true", help="print the docs section instead")
    args = parser.parse_args()
    vectors = build()
    previous = json.loads(OUT_V2.read_text()) if OUT_V2.exists() else {}
    vectors_v2 = asyncio.run(build_v2(previous))
    if args.markdown:
        print(markdown(vectors))
        print()
        print(markdown_v2(vectors_v2))
        return
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
    OUT_V2.write_text(json.dumps(vectors_v2, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} and {OUT_V2}")


if __name__ == "__main__":
    main()
