"""The storage ceiling: the queue's inserts straight through the driver, no gRPC, no Rossby.

Cassandra (cassandra-driver, async, ``--concurrency`` in flight), into a
table shaped like Rossby's queue (``((box_id, bucket), position,
message_id)`` + sender ids + a ciphertext blob, default TTL):

* ``--mode insert``: one plain INSERT per message (the lower bound of
  Rossby's enqueue: just the row);
* ``--mode lwt``: what Rossby's enqueue writes: a lightweight-transaction
  claim of (box, message id) at LOCAL_SERIAL, then the row.

SQLite (``--backend sqlite``): Rossby's enqueue transaction shape on one
thread (sqlite has one writer): ``BEGIN IMMEDIATE``, bump the queue head,
insert the row, commit; WAL, synchronous=NORMAL like the store.

    .venv/bin/python bench/storage_ceiling.py --backend cassandra --mode lwt \\
        --hosts 127.0.0.1 --concurrency 32 --seconds 15

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import closed_loop, emit

KEYSPACE = "bench_ceiling"


async def cassandra(args: argparse.Namespace) -> dict[str, Any]:
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=args.local_dc)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=10,
    )
    cluster = Cluster(
        args.hosts.split(","),
        port=args.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
    )
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', '{args.local_dc}': 1}}",
        timeout=60,
    )
    session.execute(
        f"""CREATE TABLE IF NOT EXISTS {KEYSPACE}.messages (
            box_id uuid, bucket int, position bigint, message_id uuid,
            sender_box uuid, sender_device uuid, ciphertext blob,
            PRIMARY KEY ((box_id, bucket), position, message_id)
        ) WITH CLUSTERING ORDER BY (position ASC, message_id ASC)
          AND default_time_to_live = 86400""",
        timeout=60,
    )
    session.execute(
        f"""CREATE TABLE IF NOT EXISTS {KEYSPACE}.message_claims (
            box_id uuid, message_id uuid, position bigint,
            PRIMARY KEY ((box_id, message_id))
        ) WITH default_time_to_live = 86400""",
        timeout=60,
    )
    insert = session.prepare(
        f"INSERT INTO {KEYSPACE}.messages (box_id, bucket, position, message_id, sender_box,"
        " sender_device, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    claim = session.prepare(
        f"INSERT INTO {KEYSPACE}.message_claims (box_id, message_id, position)"
        " VALUES (?, ?, ?) IF NOT EXISTS"
    )
    loop = asyncio.get_running_loop()

    def run(statement: Any, params: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = loop.create_future()
        rf = session.execute_async(statement, params)

        def ok(rows: Any) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(rows))

        def fail(exc: BaseException) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

        rf.add_callbacks(ok, fail)
        return fut

    boxes = [uuid.uuid4() for _ in range(args.boxes)]
    sender = uuid.uuid4()
    payload = os.urandom(args.payload_bytes)
    bucket = int(time.time() // 86400)

    async def call() -> None:
        box, mid = random.choice(boxes), uuid.uuid4()
        position = time.time_ns()
        if args.mode == "lwt":
            await run(claim, (box, mid, position))
        await run(insert, (box, bucket, position, mid, sender, sender, payload))

    await call()  # warm the connection pool
    name = f"cassandra {args.mode}"
    result = await closed_loop(name, call, args.concurrency, args.seconds, args.count)
    cluster.shutdown()
    result.extra.update(mode=args.mode, concurrency=args.concurrency, boxes=args.boxes)
    return result.to_dict()


async def sqlite(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    db = sqlite3.connect(tmp / "q.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE queues (box_id BLOB PRIMARY KEY, head INTEGER NOT NULL)")
    db.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, box_id BLOB, position INTEGER,"
        " message_id BLOB, sender_box BLOB, sender_device BLOB, received_at REAL,"
        " expires_at REAL, ciphertext BLOB)"
    )
    db.execute("CREATE UNIQUE INDEX m_pos ON messages (box_id, position)")
    db.execute("CREATE UNIQUE INDEX m_id ON messages (box_id, message_id)")
    db.execute("CREATE INDEX m_exp ON messages (box_id, expires_at)")
    boxes = [uuid.uuid4().bytes for _ in range(args.boxes)]
    db.executemany("INSERT INTO queues VALUES (?, 0)", [(b,) for b in boxes])
    payload = os.urandom(args.payload_bytes)
    sender = uuid.uuid4().bytes

    def enqueue() -> None:
        box, now = random.choice(boxes), time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            (head,) = db.execute(
                "UPDATE queues SET head = head + 1 WHERE box_id = ? RETURNING head", (box,)
            ).fetchone()
            db.execute(
                "INSERT INTO messages (box_id, position, message_id, sender_box, sender_device,"
                " received_at, expires_at, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (box, head, uuid.uuid4().bytes, sender, sender, now, now + 86400, payload),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # One thread owns the connection, as in rossby.store.sqlite.
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    async def call() -> None:
        await loop.run_in_executor(pool, enqueue)

    result = await closed_loop("sqlite enqueue", call, args.concurrency, args.seconds, args.count)
    pool.shutdown()
    db.close()
    result.extra.update(mode="enqueue-tx", concurrency=args.concurrency, boxes=args.boxes)
    return result.to_dict()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=("cassandra", "sqlite"), default="cassandra")
    p.add_argument("--mode", choices=("insert", "lwt"), default="insert")
    p.add_argument("--hosts", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9042)
    p.add_argument("--local-dc", default="dc1")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--count", type=int)
    p.add_argument("--boxes", type=int, default=100)
    p.add_argument("--payload-bytes", type=int, default=1024)
    args = p.parse_args()
    emit(asyncio.run(cassandra(args) if args.backend == "cassandra" else sqlite(args)))


if __name__ == "__main__":
    main()
