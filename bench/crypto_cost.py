"""What forward secrecy costs a client: CPU per message, envelope v1 against v2.

Why: issue 18 replaced sealing to each device's static X25519 key (v1) with
PQXDH on first contact and a Double Ratchet per device pair (v2). A phone
pays for that on every message it sends and reads; this measures how much,
in one process, without a server or a network, so nothing but the
cryptography is timed.

How: two devices (one reader per envelope, as a 1:1 chat with single-device
users), ``--messages`` messages of ``--body-bytes`` each. For every
operation the process CPU time (``time.process_time``) over the whole batch
is divided by the count:

* ``v1 seal`` / ``v1 open``: rossby.crypto.envelope (static keys);
* ``v2 seal`` / ``v2 open``: a message on an established session (draft,
  ratchet encrypt of the content key, seal; parse, verify, ratchet decrypt,
  open the body), alternating direction every ``--turn`` messages so DH
  ratchet steps happen as in a conversation;
* ``pqxdh first contact`` (initiate + the first ratchet message) and
  ``pqxdh respond`` (respond + the first ratchet decrypt), once per fresh
  session over ``--sessions`` sessions;
* ``prekey generation``: one signed prekey + one one-time X25519 + one
  one-time ML-KEM-768 prekey (what a refill costs per claimable bundle).

Run:  .venv/bin/python bench/crypto_cost.py [--messages 2000] [--json out.json]
Report in docs/benchmarks.md ("Client cryptography").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass

from rossby.crypto import (
    DeviceKeyPair,
    RecipientDevice,
    SenderIdentity,
    open_envelope,
    seal_envelope,
)
from rossby.crypto.envelope_v2 import (
    DeviceEntry,
    draft_envelope,
    open_body,
    parse_envelope,
    seal_draft,
    verify_envelope,
)
from rossby.crypto.pqxdh import Bundle, IdentityKeys, initiate, respond
from rossby.crypto.prekeys import (
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from rossby.crypto.ratchet import RatchetSession

KIND = "text"


@dataclass
class Party:
    box: uuid.UUID
    device: uuid.UUID
    keys: DeviceKeyPair

    @property
    def identity(self) -> IdentityKeys:
        pub = self.keys.public()
        return IdentityKeys(self.device, pub.encryption_public, pub.signing_public)

    @property
    def sender(self) -> SenderIdentity:
        return SenderIdentity(self.box, self.device, self.keys.signing_private)


def party() -> Party:
    return Party(uuid.uuid4(), uuid.uuid4(), DeviceKeyPair.generate())


def cpu_per(count: int, started: float) -> float:
    """Microseconds of process CPU per operation since ``started``."""
    return (time.process_time() - started) / count * 1e6


async def bench_v2(a: Party, b: Party, messages: int, turn: int, body: bytes) -> dict[str, float]:
    """Session messages both ways; seal and open timed separately."""
    spk = generate_signed_prekey(b.keys.signing_private, b.device, 1)
    kem = generate_kem_prekeys(b.keys.signing_private, b.device, 1, 1, last_resort=True)[0]
    bundle = Bundle(
        b.identity, spk.key_id, spk.public, spk.signature, None, None,
        kem.key_id, kem.public, kem.signature, True,
    )  # fmt: skip
    header, sk, ad = initiate(a.keys.encryption_private, a.identity, bundle)
    first = draft_envelope(a.sender, b.box, [b.device], uuid.uuid4())
    sa, msg = await RatchetSession.initiate(
        sk, spk.public, first.content_key, first.associated_data, session_ad=ad
    )
    data = seal_draft(first, {b.device: DeviceEntry(header, msg)}, KIND, body)
    parsed = parse_envelope(data, my_device_id=b.device, expected_recipient_box=b.box)
    sk_b, ad_b = respond(
        b.keys.encryption_private, b.identity, a.identity, header,
        signed_prekey_private=spk.private, one_time_prekey_private=None, kem_private=kem.private,
    )  # fmt: skip
    sb, _ = await RatchetSession.respond(
        sk_b, spk.private, parsed.entry.ratchet_message, parsed.associated_data, session_ad=ad_b
    )
    sessions = {a.device: sa, b.device: sb}
    seal_cpu = open_cpu = 0.0
    for i in range(messages):
        src, dst = (a, b) if (i // turn) % 2 == 0 else (b, a)
        t0 = time.process_time()
        draft = draft_envelope(src.sender, dst.box, [dst.device], uuid.uuid4())
        m = await sessions[src.device].encrypt(draft.content_key, draft.associated_data)
        data = seal_draft(draft, {dst.device: DeviceEntry(None, m)}, KIND, body)
        t1 = time.process_time()
        parsed = parse_envelope(data, my_device_id=dst.device, expected_recipient_box=dst.box)
        verify_envelope(parsed, src.identity.signing_public)
        key = await sessions[dst.device].decrypt(
            parsed.entry.ratchet_message, parsed.associated_data
        )
        open_body(parsed, key)
        t2 = time.process_time()
        seal_cpu += t1 - t0
        open_cpu += t2 - t1
    return {"v2 seal": seal_cpu / messages * 1e6, "v2 open": open_cpu / messages * 1e6}


async def bench_pqxdh(a: Party, b: Party, sessions: int) -> dict[str, float]:
    init_cpu = resp_cpu = 0.0
    for i in range(sessions):
        spk = generate_signed_prekey(b.keys.signing_private, b.device, i + 1)
        opk = generate_one_time_prekeys(i + 1, 1)[0]
        kem = generate_kem_prekeys(b.keys.signing_private, b.device, i + 1, 1)[0]
        bundle = Bundle(
            b.identity, spk.key_id, spk.public, spk.signature, opk.key_id, opk.public,
            kem.key_id, kem.public, kem.signature, False,
        )  # fmt: skip
        t0 = time.process_time()
        header, sk, ad = initiate(a.keys.encryption_private, a.identity, bundle)
        _, msg = await RatchetSession.initiate(sk, spk.public, bytes(32), b"", session_ad=ad)
        t1 = time.process_time()
        sk_b, ad_b = respond(
            b.keys.encryption_private, b.identity, a.identity, header,
            signed_prekey_private=spk.private, one_time_prekey_private=opk.private,
            kem_private=kem.private,
        )  # fmt: skip
        await RatchetSession.respond(sk_b, spk.private, msg, b"", session_ad=ad_b)
        t2 = time.process_time()
        init_cpu += t1 - t0
        resp_cpu += t2 - t1
    return {
        "pqxdh first contact": init_cpu / sessions * 1e6,
        "pqxdh respond": resp_cpu / sessions * 1e6,
    }


def bench_v1(a: Party, b: Party, messages: int, body: bytes) -> dict[str, float]:
    reader = [RecipientDevice(b.device, b.keys.public().encryption_public)]
    t0 = time.process_time()
    sealed = [
        seal_envelope(a.sender, b.box, reader, uuid.uuid4(), KIND, body) for _ in range(messages)
    ]
    seal = cpu_per(messages, t0)
    signing = a.keys.public().signing_public
    t0 = time.process_time()
    for data in sealed:
        open_envelope(
            data,
            my_device_id=b.device,
            my_encryption_private=b.keys.encryption_private,
            expected_recipient_box=b.box,
            sender_lookup=lambda _box, _dev: signing,
        )
    return {"v1 seal": seal, "v1 open": cpu_per(messages, t0)}


def bench_prekeys(b: Party, count: int) -> dict[str, float]:
    t0 = time.process_time()
    for i in range(count):
        generate_signed_prekey(b.keys.signing_private, b.device, i + 1)
        generate_one_time_prekeys(i + 1, 1)
        generate_kem_prekeys(b.keys.signing_private, b.device, i + 1, 1)
    return {"prekey generation (one of each)": cpu_per(count, t0)}


async def run(args: argparse.Namespace) -> dict[str, float]:
    a, b = party(), party()
    body = os.urandom(args.body_bytes)
    out: dict[str, float] = {}
    out.update(bench_v1(a, b, args.messages, body))
    out.update(await bench_v2(a, b, args.messages, args.turn, body))
    out.update(await bench_pqxdh(a, b, args.sessions))
    out.update(bench_prekeys(b, args.sessions))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--turn", type=int, default=3, help="messages before the other side answers")
    p.add_argument("--body-bytes", type=int, default=200)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    started = time.monotonic()
    figures = asyncio.run(run(args))
    wall = time.monotonic() - started
    load = os.getloadavg()[0]
    print(f"client crypto CPU per operation (µs), {args.messages} messages, load {load:.2f}")
    for name, us in figures.items():
        print(f"  {name:34s} {us:9.1f}")
    ratio = figures["v2 seal"] / figures["v1 seal"], figures["v2 open"] / figures["v1 open"]
    print(f"  v2/v1: seal {ratio[0]:.2f}x, open {ratio[1]:.2f}x; {wall:.1f} s wall")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"load": load, "args": vars(args), "cpu_us": figures}, f, indent=2)


if __name__ == "__main__":
    main()
