"""Client-side cost of the v2 crypto (issue 18): prekeys, PQXDH, the ratchet, envelope v2.

Each line is the best of a few rounds of ``--iterations`` calls (scheduler
noise only ever adds time), in microseconds of wall time per call on one
core; nothing here touches a network or a disk. v1 seal/open are measured
the same way for comparison. "Session entry" envelopes have every reader on
an acknowledged session; "initial entry" ones open a session per reader
(PQXDH + the ratchet's first message), the cost of a first contact.

    .venv/bin/python bench/crypto_v2.py [--iterations 200] [--readers 1,3,10]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from rossby.crypto import (
    DeviceEntry,
    RatchetSession,
    RecipientDevice,
    draft_envelope,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    initiate,
    open_body,
    open_envelope,
    parse_envelope,
    seal_draft,
    seal_envelope,
    verify_envelope,
)
from tests.support.sessions import Party, first_contact

ROUNDS = 3
BODY = b"x" * 200


async def best(n: int, fn: Callable[[], Awaitable[object]]) -> float:
    """Microseconds per call, best of ROUNDS rounds of ``n`` calls."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        times.append(time.perf_counter() - start)
    return min(times) / n * 1e6


def sync(fn: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return fn()

    return run


async def envelope_rows(alice: Party, bob: Party, readers: int, n: int) -> list[tuple[str, float]]:
    """Seal (and open) cost for ``readers`` reader devices, v2 against v1."""
    rows: list[tuple[str, float]] = []
    a_priv = alice.keys.encryption_private
    peers = [Party.make() for _ in range(readers)]
    pairs = [await first_contact(alice, p) for p in peers]
    for p in pairs:
        await p.alice.decrypt(await p.bob.encrypt(b"ack", b""), b"")
    ids = [p.id for p in peers]

    async def seal_v2() -> bytes:
        draft = draft_envelope(alice.sender(), bob.box, ids, uuid.uuid4())
        entries = {
            d: DeviceEntry(None, await s.alice.encrypt(draft.content_key, draft.associated_data))
            for d, s in zip(ids, pairs, strict=True)
        }
        return seal_draft(draft, entries, "text", BODY)

    async def seal_open_v2() -> object:
        data = await seal_v2()
        parsed = parse_envelope(data, my_device_id=ids[0], expected_recipient_box=bob.box)
        verify_envelope(parsed, alice.keys.signing_public_bytes)
        k = await pairs[0].bob.decrypt(parsed.entry.ratchet_message, parsed.associated_data)
        return open_body(parsed, k)

    async def seal_initial_v2() -> bytes:
        draft = draft_envelope(alice.sender(), bob.box, ids, uuid.uuid4())
        entries = {}
        for p in peers:
            h, sk, ad = initiate(a_priv, alice.identity, p.bundle())
            _, m = await RatchetSession.initiate(
                sk, p.signed.public, draft.content_key, draft.associated_data, session_ad=ad
            )
            entries[p.id] = DeviceEntry(h, m)
        return seal_draft(draft, entries, "text", BODY)

    recipients = [RecipientDevice(p.id, p.keys.encryption_public_bytes) for p in peers]

    def seal_open_v1() -> object:
        data = seal_envelope(alice.sender(), bob.box, recipients, uuid.uuid4(), "text", BODY)
        return open_envelope(
            data,
            my_device_id=peers[0].id,
            my_encryption_private=peers[0].keys.encryption_private,
            expected_recipient_box=bob.box,
            sender_lookup=lambda _b, _d: alice.keys.signing_public_bytes,
        )

    rows.append((f"v2 seal, {readers} session entries", await best(n, seal_v2)))
    rows.append(
        (f"v2 seal + one reader opens, {readers} session entries", await best(n, seal_open_v2))
    )
    rows.append(
        (
            f"v2 seal, {readers} initial entries (first contact)",
            await best(max(n // 10, 1), seal_initial_v2),
        )
    )
    rows.append(
        (f"v1 seal + one reader opens, {readers} readers", await best(n, sync(seal_open_v1)))
    )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--readers", default="1,3,10")
    args = parser.parse_args()
    n = args.iterations
    alice, bob = Party.make(), Party.make()
    sign = bob.keys.signing_private
    rows: list[tuple[str, float]] = []

    rows.append(
        (
            "signed prekey (generate + sign)",
            await best(n, sync(lambda: generate_signed_prekey(sign, bob.id, 1))),
        )
    )
    rows.append(
        ("one-time X25519 prekey", await best(n, sync(lambda: generate_one_time_prekeys(1, 1))))
    )
    rows.append(
        (
            "ML-KEM-768 prekey (generate + sign)",
            await best(n, sync(lambda: generate_kem_prekeys(sign, bob.id, 1, 1))),
        )
    )

    bundle = bob.bundle()
    a_priv = alice.keys.encryption_private
    rows.append(
        (
            "PQXDH initiate (2 signature checks, 4 DH, encaps)",
            await best(n, sync(lambda: initiate(a_priv, alice.identity, bundle))),
        )
    )
    header, _, _ = initiate(a_priv, alice.identity, bundle)

    def respond_once() -> object:
        copy = Party(
            bob.box,
            bob.id,
            bob.keys,
            bob.signed,
            dict(bob.one_time),
            dict(bob.kem),
            bob.last_resort,
        )
        return copy.respond_to(alice, header)

    rows.append(("PQXDH respond (4 DH, decaps)", await best(n, sync(respond_once))))

    pair = await first_contact(alice, bob)
    key = bytes(32)

    async def same_chain() -> object:
        return await pair.bob.decrypt(await pair.alice.encrypt(key, b"ad"), b"ad")

    async def ping_pong() -> object:  # every decrypt starts a new chain: a DH ratchet step
        await pair.bob.decrypt(await pair.alice.encrypt(key, b"ad"), b"ad")
        return await pair.alice.decrypt(await pair.bob.encrypt(key, b"ad"), b"ad")

    rows.append(("ratchet encrypt + decrypt, same chain", await best(n, same_chain)))
    rows.append(
        ("ratchet encrypt + decrypt, with a DH step (per message)", await best(n, ping_pong) / 2)
    )
    rows.append(
        (
            "ratchet to_json + from_json",
            await best(n, sync(lambda: RatchetSession.from_json(pair.alice.to_json()))),
        )
    )

    for readers in (int(r) for r in args.readers.split(",")):
        rows += await envelope_rows(alice, bob, readers, n)

    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:10.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
