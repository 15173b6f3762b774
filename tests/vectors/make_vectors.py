"""Generate ``envelope_v1.json``: fixed inputs -> exact outputs for every v1 format.

Run once when a format is introduced, then commit the JSON; the test suite
only CHECKS the committed file (tests/test_crypto.py::test_vectors_*), so a
change that alters any output byte fails loudly instead of quietly
regenerating. Another implementation (a mobile client, say) can be checked
against the same file.

    .venv/bin/python tests/vectors/make_vectors.py            # writes the JSON
    .venv/bin/python tests/vectors/make_vectors.py --markdown  # prints docs/envelope.md's section

All "random" inputs are fixed: private keys and nonces are SHA-256 of a
readable label, so they look like real keys yet are reproducible, and the
JSON stores them in hex so a reader needs no code to reuse them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from rossby.crypto import (
    DeviceKeyfile,
    DeviceKeyPair,
    HawkCredentials,
    PublicDeviceKeys,
    RecipientDevice,
    SenderIdentity,
    authorize_signature,
    credentials_aad,
    encode_keyfile,
    key_signature,
    safety_number,
    seal,
    seal_envelope,
)
from rossby.v1 import rossby_pb2

OUT = Path(__file__).with_name("envelope_v1.json")


def fixed(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(b"rossby/v1 test vector: " + label.encode()).digest()[:n]


class ScriptedRng:
    """Answers a fixed list of byte strings, in order, checking each requested length."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)

    def __call__(self, n: int) -> bytes:
        out = self.answers.pop(0)
        assert len(out) == n, (len(out), n)
        return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--markdown", action="store_true", help="print the docs section instead")
    args = parser.parse_args()
    vectors = build()
    if args.markdown:
        print(markdown(vectors))
        return
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
