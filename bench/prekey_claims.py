"""The cost of a prekey claim on Cassandra: statements and latency per
``claim_prekeys`` of a 3-device box (issue 18, docs/store.md "Prekeys").

Uploads a full pool (100 one-time X25519 and 100 one-time ML-KEM-768 keys,
signed and last-resort keys) for each of 3 devices, counts the statements
of a few traced claims (the Bridge's trace list records every request),
then times ``--claims`` untraced claims one after another, and the same
number on a drained box (the last-resort path). ``--replication`` chooses
the keyspace's DCs (``dc1:1,dc2:1`` splits each pool over two regions).

    .venv/bin/python bench/prekey_claims.py --contact-points 127.0.0.1:9042

Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from rossby.store import Store, StoreOptions, open_store
from rossby.store.cassandra import CassandraStore
from rossby.store.prekeys import Prekey, PrekeyUpload

DEVICES = 3
POOL = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contact-points", default="127.0.0.1:9042", help="host[:port],...")
    p.add_argument("--keyspace", default="rossby_bench_prekeys")
    p.add_argument("--local-dc", default="dc1")
    p.add_argument("--replication", default=None, help="dc:rf,... (default <local-dc>:1)")
    p.add_argument("--claims", type=int, default=60, help="timed claims per phase (<= pool/2)")
    p.add_argument("--sqlite", default=None, help="time a SQLite file instead (no statement count)")
    return p.parse_args(argv)


def store_url(args: argparse.Namespace) -> str:
    if args.sqlite:
        return f"sqlite:///{args.sqlite}"
    points = [p.strip() for p in args.contact_points.split(",") if p.strip()]
    hosts = ",".join(p.rsplit(":", 1)[0] for p in points)
    port = points[0].rsplit(":", 1)[1] if ":" in points[0] else "9042"
    replication = args.replication or f"{args.local_dc}:1"
    return (
        f"cassandra://{hosts}:{port}/{args.keyspace}"
        f"?local_dc={args.local_dc}&replication={replication}"
    )


def full_upload() -> PrekeyUpload:
    return PrekeyUpload(
        signed_prekey=Prekey(1, os.urandom(32), os.urandom(64)),
        one_time_prekeys=[Prekey(i, os.urandom(32)) for i in range(POOL)],
        one_time_kem_prekeys=[Prekey(i, os.urandom(1184), os.urandom(64)) for i in range(POOL)],
        last_resort_kem_prekey=Prekey(POOL, os.urandom(1184), os.urandom(64)),
        uploaded_at_ms=int(time.time() * 1000),
    )


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, mean {statistics.fmean(ms):.2f} ms"
    )


async def timed_claims(
    store: Store, box: uuid.UUID, devices: list[uuid.UUID], n: int
) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        bundles = await store.claim_prekeys(box, devices)
        out.append(time.perf_counter() - start)
        assert len(bundles) == len(devices)
    return out


async def count_statements(
    store: Store, box: uuid.UUID, devices: list[uuid.UUID], what: str
) -> None:
    """Five traced claims on Cassandra: the bridge records every request."""
    if not isinstance(store, CassandraStore):
        return
    store._db.traces = []
    for _ in range(5):
        await store.claim_prekeys(box, devices)
    traced, store._db.traces = store._db.traces, None
    print(f"statements per claim of a {DEVICES}-device box ({what}): {len(traced) / 5:.1f}")


async def main(args: argparse.Namespace) -> None:
    store = open_store(store_url(args), StoreOptions())
    try:
        await store.migrate()
        box = uuid.uuid4()
        devices = [uuid.uuid4() for _ in range(DEVICES)]
        start = time.perf_counter()
        for device in devices:
            await store.put_prekeys(box, device, full_upload(), pool_max=200)
        upload_s = (time.perf_counter() - start) / DEVICES
        print(
            f"upload of 1 signed + {POOL} + {POOL} + 1 last-resort keys: {upload_s * 1000:.1f} ms"
        )
        for _ in range(3):  # warm: statements prepared, pools up
            await store.claim_prekeys(box, devices)

        await count_statements(store, box, devices, "one-time keys")

        keyed = await timed_claims(store, box, devices, args.claims)
        print(f"claim, pools full ({args.claims} claims): {summary(keyed)}")

        drained = uuid.uuid4()
        for device in devices:
            upload = full_upload()
            await store.put_prekeys(
                drained,
                device,
                PrekeyUpload(
                    signed_prekey=upload.signed_prekey,
                    last_resort_kem_prekey=upload.last_resort_kem_prekey,
                ),
                pool_max=200,
            )
        await count_statements(store, drained, devices, "pools empty")
        empty = await timed_claims(store, drained, devices, args.claims)
        print(f"claim, pools empty, last resort ({args.claims} claims): {summary(empty)}")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
