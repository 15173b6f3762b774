"""The SQLite store's one thread, and group commit.

sqlite3 calls block, so a store runs every call on one thread that owns its
connection; the event loop only awaits. With ``synchronous=FULL`` each
write transaction ends in an fsync, and a profile of the Send path spent
more time in COMMIT than anywhere else. So the thread takes every call
waiting when it wakes up (up to ``GROUP_MAX``) and runs all the writes
among them in **one** ``BEGIN IMMEDIATE`` ... ``COMMIT``: one fsync for the
group. Each write runs in its own ``SAVEPOINT``, so one that raises (a
full box, a missing row, a constraint) is rolled back alone and gets its
own error while the others commit. Only errors that leave the transaction
sound are absorbed that way (``_contained``); any other (busy, I/O, full,
out of memory, corrupt) fails the whole group, as does a failed BEGIN or
COMMIT (a deferred constraint). Nothing is answered before the COMMIT that
made it durable returns.

Calls that wait in one batch were all in flight at once, so any order among
them is one a client could have seen: reads run first (each in its own read
transaction, answered before the group's fsync), then the group. Answers go
back with one ``call_soon_threadsafe`` per event loop per batch, because
each cross-thread wake-up costs as much CPU as a small query.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rossby.errors import StoreUnavailable

T = TypeVar("T")

#: Writes sharing one transaction at most: bounds how long one group holds
#: the write lock (other processes sharing the file wait for it).
GROUP_MAX = 128


class Kind(enum.Enum):
    RAW = "raw"  # one autocommit statement (or a body managing nothing)
    READ = "read"  # a read transaction: one snapshot for several statements
    WRITE = "write"  # a write, grouped with the others waiting
    ALONE = "alone"  # a write in a transaction of its own (migrations: DDL)


#: Primary result codes (``sqlite_errorcode & 0xff``) of errors that fail one
#: statement and leave the transaction sound: a constraint, a datatype
#: mismatch, a bind index out of range. SQLite undoes the statement itself,
#: so rolling back to the write's savepoint undoes that write and nothing
#: else. Decided by code, not by exception class, because one class carries
#: several codes (InterfaceError is also SQLITE_MISUSE). Not here, so they
#: fail the whole group: busy, I/O, full, corrupt (after those SQLite may
#: have rolled back the whole transaction on its own, or the file is in
#: doubt), and misuse. SQLITE_ERROR and SQLITE_TOOBIG fail the group too:
#: no body raises them but through a bug, and a failed group costs a retry.
_CONTAINED = frozenset({19, 20, 25})  # SQLITE_CONSTRAINT, _MISMATCH, _RANGE

#: What SQLite raises: its own errors, and SQLITE_NOMEM, which the sqlite3
#: module turns into MemoryError (no result code). Out of memory is never
#: absorbed by a savepoint: it fails the group.
_FAILURES = (sqlite3.Error, MemoryError)


@dataclass(slots=True)
class _Job:
    kind: Kind
    body: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    ok: bool = False
    value: Any = None


def _contained(conn: sqlite3.Connection, exc: sqlite3.Error) -> bool:
    """Whether rolling back to the write's savepoint is enough after ``exc``."""
    if not conn.in_transaction:
        return False  # SQLite rolled the whole transaction back (ON CONFLICT ROLLBACK)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # Raised by the sqlite3 module before SQLite ran anything: wrong
        # number of bindings, a parameter type it cannot bind.
        return isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError)
    return isinstance(code, int) and code & 0xFF in _CONTAINED


def _closed() -> StoreUnavailable:
    return StoreUnavailable("sqlite store is closed", applied=False)


def _resolve(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller was cancelled; the write may still stand
            continue
        if job.ok:
            job.future.set_result(job.value)
        else:
            job.future.set_exception(job.value)


def _in_transaction(
    conn: sqlite3.Connection, begin: str, body: Callable[[sqlite3.Connection], T]
) -> T:
    conn.execute(begin)
    try:
        result = body(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class Worker:
    """One thread, one connection, a queue of calls."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        translate: Callable[[sqlite3.Error | MemoryError], Exception],
    ) -> None:
        self._connect = connect
        self._translate = translate
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: sqlite3.Connection | None = None  # touched on the thread only
        #: Write transactions committed, and writes they carried (for tests
        #: and benchmarks: grouped_writes / commits is the group size).
        self.commits = 0
        self.grouped_writes = 0

    async def submit(self, kind: Kind, body: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        job = _Job(kind, body, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise _closed()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="rossby-sqlite", daemon=True
                )
                self._thread.start()
            self._queue.put(job)
        result: T = await job.future
        return result

    async def close(self) -> None:
        """Finish what is queued, then close the connection. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    # -- the thread ----------------------------------------------------------

    def _serve(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                batch, stop = [job], False
                while len(batch) < GROUP_MAX:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                try:
                    self._process(batch)
                except Exception as exc:  # a bug here must not strand the callers
                    for j in batch:
                        if not j.ok:
                            self._fail(j, exc)
                    self._deliver(batch)
                if stop:
                    return
        finally:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _process(self, batch: list[_Job]) -> None:
        others = [j for j in batch if j.kind is not Kind.WRITE]
        writes = [j for j in batch if j.kind is Kind.WRITE]
        for job in others:
            self._single(job)
        if others:
            self._deliver(others)
        if writes:
            self._group(writes)
            self._deliver(writes)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.ok, job.value = False, exc

    def _single(self, job: _Job) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connection()
            if job.kind is Kind.RAW:
                job.value = job.body(conn)
            elif job.kind is Kind.READ:
                job.value = _in_transaction(conn, "BEGIN", job.body)
            else:
                job.value = _in_transaction(conn, "BEGIN IMMEDIATE", job.body)
                self.commits += 1
            job.ok = True
        except _FAILURES as exc:
            self._rollback(conn)
            self._fail(job, self._error(exc))
        except Exception as exc:
            self._rollback(conn)
            self._fail(job, exc)

    def _error(self, exc: sqlite3.Error | MemoryError) -> Exception:
        """A fresh translated exception per job: one instance raised in many
        tasks would gather all of their tracebacks (and keep their frames)."""
        error = self._translate(exc)
        error.__cause__ = exc
        return error

    def _group(self, writes: list[_Job]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            for job in writes:
                conn.execute("SAVEPOINT job")
                try:
                    job.value = job.body(conn)
                    job.ok = True
                except sqlite3.Error as exc:
                    if not _contained(conn, exc):
                        raise  # the transaction may be gone or unsound: fail the group
                    self._undo_one(conn)
                    self._fail(job, self._error(exc))
                except MemoryError:
                    raise  # SQLITE_NOMEM: fail the group
                except Exception as exc:
                    self._undo_one(conn)
                    self._fail(job, exc)
                else:
                    conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except _FAILURES as exc:
            self._rollback(conn)
            for job in writes:
                # Rolled back with the group: those that had succeeded, and
                # those not run yet. One that failed on its own keeps its error.
                if job.ok or job.value is None:
                    self._fail(job, self._error(exc))
            return
        self.commits += 1
        self.grouped_writes += len(writes)

    @staticmethod
    def _undo_one(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")

    @staticmethod
    def _rollback(conn: sqlite3.Connection | None) -> None:
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _deliver(self, jobs: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, items)


__all__ = ["GROUP_MAX", "Kind", "Worker"]
