"""Where a Send and a Fetch(+Ack) spend their time: a per-stage cost breakdown.

Why: ``bench/run_all.py`` shows Rossby at a fraction of the bare gRPC echo
ceiling and of its storage ceiling, but not where the difference goes. This
script takes one backend, runs the real server and splits each RPC into its
stages, so the next optimisation goes where the time is.

How:

* The real ``RossbyServer`` runs **in this process** (as tests/api/conftest.py
  builds it), JSON logs at level info to a file (as in production), the
  default send rate limit on (register limit off: every user registers from
  127.0.0.1). The load runs in a **separate process** (``--drive``, spawned by
  this script): ``SimDevice`` (rossby/loadtest/device.py) registers ``--users``
  users through the real API (Register, code from the dev outbox, Authorize)
  over loopback gRPC, then drives, at ``--concurrency``, up to ``--calls``
  1:1 Sends of ``--payload-bytes`` random bytes, then as many Fetch(limit=1)
  + Ack pairs, each Fetch carrying exactly one message (each phase is capped
  at ``--seconds``). So this process's CPU is the server's alone. Before
  each fetch phase, unmeasured, every device begins a new sweep from its
  cursor up to where it stopped; no Ack of the phase passes that sweep's
  first ``ack_limit`` (docs/store.md, "Long sweeps").
* Two passes. **clean**: nothing patched; the server's CPU per call
  (``getrusage(RUSAGE_SELF)`` over the phase) and its split by thread
  (``/proc/self/task/*/schedstat``). **instrumented**: wrappers installed on
  the live objects, here, in the bench process (shipped code is unchanged):
  Hawk verify and its key lookup, request parsing, response signing, the
  per-RPC log line, the metrics calls, ``MeteredStore`` and every method of
  the store under it, sender rules (``Accounts.deliverable``), the realtime
  hook and its fan-out task (incl. ``list_presence``), the send rate limit,
  the Inbox handler, and below the store: each SQLite transaction (its time
  on the SQLite thread, queue wait) or each CQL statement
  (``Bridge.execute``: statements per call and their sequential depth).
* Wall time per stage is ``perf_counter_ns`` around it (inclusive of what is
  nested under it, awaits included). CPU is exclusive ("self") and on the
  event-loop thread: every asyncio task created during the pass runs through
  a proxy that reads ``thread_time_ns`` at each step and at each stage entry
  and exit, so a stage is charged only for its own steps, never for other
  tasks that ran while it awaited; tasks a stage spawns (``asyncio.gather``)
  are charged to the stages they run in. Work on other threads (SQLite
  worker, Cassandra driver I/O, gRPC's poller) is reported per thread.
  "RPC task outside stages" is grpc.aio's own per-call Python work (receive,
  send, status); "loop, outside RPC tasks" is callbacks, the selector and
  background tasks. Each ``thread_time_ns`` read costs ~1 µs (a syscall), so
  the instrumented pass costs more CPU per call than the clean one; both are
  printed, and the clean figure is the one to quote.
* The echo reference: ``bench/grpc_ceiling.py --seconds 10 --concurrency 32``
  (``--echo-seconds``; ``--echo-json FILE`` reuses a result, 0 skips it); the
  ratio printed is the clean pass's server CPU per Send over the echo
  server's CPU per call.

Output: a table per RPC on stdout, and with ``--json PATH`` one JSON
document (every stage, every thread, both passes, load averages). About a
minute per backend::

    .venv/bin/python bench/breakdown.py --store sqlite --json bench/out/breakdown-sqlite.json
    .venv/bin/python bench/breakdown.py --store cassandra \\
        --store-url 'cassandra://127.0.0.1:9042/rossby_breakdown?local_dc=dc1&replication=dc1:1'

See docs/benchmarks.md, "Cost breakdown: bench/breakdown.py".
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import functools
import inspect
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import types
import uuid
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
HERE = SELF.parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _harness import machine, run_json  # noqa: E402

DEFAULT_CASSANDRA = "cassandra://127.0.0.1:9042/rossby_breakdown?local_dc=dc1&replication=dc1:1"
SEP = "\x1f"  # joins a stage path: the same stage under two parents is two rows
SQLITE_WAIT = "SQLite thread: queue wait (submit to start)"
SQLITE_RUN = "SQLite thread: the transaction"
OUTSIDE = "(RPC task, outside stages: grpc.aio receive/send/status)"
now_ns = time.perf_counter_ns
cpu_ns = time.thread_time_ns


# -- the probe: stages, traces, per-task CPU ----------------------------------------


class Trace:
    """One RPC: its stages' calls, inclusive wall, exclusive loop CPU."""

    __slots__ = ("cpu", "cql", "cql_inflight", "cql_rounds", "method", "stages")

    def __init__(self, method: str) -> None:
        self.method = method
        #: stage path (names joined by SEP) -> [calls, wall ns, other-thread cpu ns]
        self.stages: dict[str, list[int]] = {}
        self.cpu: dict[str, int] = {}  # stage path -> loop-thread cpu ns (exclusive)
        self.cql: dict[str, list[int]] = {}  # label -> [count, wall ns]
        self.cql_inflight = 0
        self.cql_rounds = 0


TRACE: ContextVar[Trace | None] = ContextVar("breakdown_trace", default=None)


class Probe:
    """The instrumentation. ``enabled`` off: every wrapper calls straight through."""

    def __init__(self) -> None:
        self.enabled = False
        self.current: TaskProxy | None = None  # the task whose step runs now
        self.mark = 0
        self.clock_reads = 0
        self.traces: list[Trace] = []
        self.loop_ident = 0
        self.patches: list[tuple[Any, str, Any, bool]] = []
        self.cql_text: dict[str, str] = {}
        #: loop-thread CPU ns per kind of event-loop callback (Handle._run)
        self.handles: dict[str, int] = {}
        #: probe cost per stage, charged to the stage itself / to its parent (ns)
        self.cost_self = 0.0
        self.cost_parent = 0.0

    # accounting (event-loop thread only)

    def tick(self) -> int:
        self.clock_reads += 1
        return cpu_ns()

    def charge_current(self) -> None:
        cur = self.current
        if cur is not None:
            t = self.tick()
            cur.charge(t - self.mark)
            self.mark = t

    def enter(self, name: str) -> tuple[TaskProxy | None, str]:
        """Start a stage in the current task: charge what ran so far to the
        enclosing stage; answer the task and the stage's path."""
        cur = self.current
        if cur is None or threading.get_ident() != self.loop_ident:
            return None, name
        self.charge_current()
        key = cur.stack[-1] + SEP + name if cur.stack else name
        cur.stack.append(key)
        return cur, key

    def leave(self, key: str, cur: TaskProxy | None, wall: int) -> None:
        trace = TRACE.get()
        if cur is not None and cur is self.current:
            self.charge_current()
            if cur.stack and cur.stack[-1] == key:
                cur.stack.pop()
            trace = cur.trace_now() or trace
        if trace is not None:
            row = trace.stages.setdefault(key, [0, 0, 0])
            row[0] += 1
            row[1] += wall

    # wrappers

    def wrap(self, name: str, fn: Any) -> Any:
        """A stage around ``fn`` (sync or async); pass-through when disabled.

        The async form returns the coroutine (it is not itself ``async def``),
        so a disabled wrapper adds no frame; use ``wrap_handler`` where grpc
        needs a coroutine function.
        """
        probe = self
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not probe.enabled:
                    return fn(*args, **kwargs)
                return probe.run(name, fn(*args, **kwargs))

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not probe.enabled:
                return fn(*args, **kwargs)
            cur, key = probe.enter(name)
            t0 = now_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                probe.leave(key, cur, now_ns() - t0)

        return sync_wrapper

    async def run(self, name: str, coro: Any) -> Any:
        cur, key = self.enter(name)
        t0 = now_ns()
        try:
            return await coro
        finally:
            self.leave(key, cur, now_ns() - t0)

    def patch(self, obj: Any, attr: str, name: str) -> None:
        """Replace ``obj.attr`` (instance, class or module) with a stage wrapper."""
        original = obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr)
        self.replace(obj, attr, self.wrap(name, original))

    def replace(self, obj: Any, attr: str, value: Any) -> None:
        original = obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr)
        self.patches.append((obj, attr, original, _owned(obj, attr)))
        setattr(obj, attr, value)

    def unpatch(self) -> None:
        while self.patches:
            obj, attr, original, own = self.patches.pop()
            if own:
                setattr(obj, attr, original)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(obj, attr)

    def new_trace(self, method: str) -> Trace:
        trace = Trace(method)
        self.traces.append(trace)
        return trace

    def task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        cur = self.current
        base = list(cur.stack) if cur is not None else []
        return asyncio.Task(TaskProxy(self, coro, base, TRACE.get()), loop=loop, **kwargs)


def _owned(obj: Any, attr: str) -> bool:
    """Whether ``obj`` holds ``attr`` itself (restore by setting it back) rather
    than through its class (restore by deleting the instance attribute)."""
    if isinstance(obj, (type, types.ModuleType)) or attr in getattr(obj, "__dict__", {}):
        return True
    return any(attr in getattr(c, "__slots__", ()) for c in type(obj).__mro__)


class TaskProxy(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A task's coroutine, stepped with a CPU clock read around every step."""

    __slots__ = ("coro", "probe", "stack", "trace")

    def __init__(self, probe: Probe, coro: Any, stack: list[str], trace: Trace | None) -> None:
        self.probe = probe
        self.coro = coro
        self.stack = stack
        self.trace = trace

    def trace_now(self) -> Trace | None:
        if self.trace is None:
            self.trace = TRACE.get()
        return self.trace

    def charge(self, ns: int) -> None:
        trace = self.trace_now()
        if trace is None:
            return
        key = self.stack[-1] if self.stack else OUTSIDE
        trace.cpu[key] = trace.cpu.get(key, 0) + ns

    def _step(self, fn: Any, *args: Any) -> Any:
        probe = self.probe
        previous = probe.current
        probe.current = self
        probe.mark = probe.tick()
        try:
            return fn(*args)
        finally:
            self.charge(probe.tick() - probe.mark)
            probe.current = previous

    def send(self, value: Any) -> Any:
        return self._step(self.coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self.coro.throw, *args)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        return self.coro.__await__()

    def __getattr__(self, name: str) -> Any:  # cr_frame etc., for task repr
        return getattr(self.coro, name)


PROBE = Probe()


def handle_label(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        if isinstance(coro, TaskProxy):
            if coro.trace is not None:
                return "task steps of the RPCs (the stages above)"
            coro = coro.coro
        name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
        return f"task steps: {name or type(coro).__name__}"
    if isinstance(callback, functools.partial):
        inner = callback.func
        name = getattr(inner, "__qualname__", type(inner).__name__)
        module = getattr(inner, "__module__", "") or ""
        return f"callback: partial({module}.{name})"
    return "callback: " + str(getattr(callback, "__qualname__", type(callback).__name__))


def install_handle_probe() -> None:
    """Loop-thread CPU per event-loop callback (asyncio.events.Handle._run)."""
    probe = PROBE
    original = asyncio.events.Handle._run

    def _run(self: Any) -> None:
        if not probe.enabled:
            return original(self)
        t0 = probe.tick()
        try:
            return original(self)
        finally:
            label = handle_label(self._callback)
            probe.handles[label] = probe.handles.get(label, 0) + probe.tick() - t0

    probe.replace(asyncio.events.Handle, "_run", _run)


async def _calibrate(n: int = 5000) -> tuple[float, float]:
    """The probe's own cost per stage: (ns charged to the stage, ns to its parent)."""

    async def noop() -> None:
        return None

    def snoop() -> None:
        return None

    probe = PROBE
    probe.loop_ident = threading.get_ident()
    loop = asyncio.get_running_loop()
    wrapped_async, wrapped_sync = probe.wrap("child", noop), probe.wrap("child", snoop)
    trace = Trace("calibration")

    async def traced() -> None:
        TRACE.set(trace)

        async def body() -> None:
            for _ in range(n):
                await wrapped_async()
                wrapped_sync()

        await probe.run("parent", body())

    probe.enabled = True
    loop.set_task_factory(probe.task_factory)
    try:
        await asyncio.create_task(traced())
    finally:
        probe.enabled = False
        loop.set_task_factory(None)
    child = trace.cpu.get("parent" + SEP + "child", 0) / (2 * n)
    parent = trace.cpu.get("parent", 0) / (2 * n)
    return child, parent


# -- installing the stages -------------------------------------------------------


def install_build_hooks(server: Any) -> None:
    """Before ``server.start()``: the hooks that must be in place when handlers
    are built (they capture functions). Pass-through while disabled."""
    import grpc

    from rossby.server import service
    from rossby.server.auth import HawkAuth
    from rossby.server.inbox import Inbox

    probe = PROBE
    original_observed = service._observed

    def observed(method: str, handler: Any, metrics: Any) -> Any:
        if handler.unary_unary is None:
            return original_observed(method, handler, metrics)
        inner = probe.wrap(
            "Hawk wrapper: identity, response SerializeToString, trailer", handler.unary_unary
        )
        wrapped = grpc.unary_unary_rpc_method_handler(
            inner,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        out = original_observed(method, wrapped, metrics)
        outer = out.unary_unary

        async def behavior(request: Any, context: Any) -> Any:
            if not probe.enabled:
                return await outer(request, context)
            TRACE.set(probe.new_trace(method))
            return await probe.run("server handler (_observed, inclusive)", outer(request, context))

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=out.request_deserializer,
            response_serializer=out.response_serializer,
        )

    probe.replace(service, "_observed", observed)

    original_unary = HawkAuth.unary

    def unary(self: Any, method: str, handler: Any, *rest: Any, **options: Any) -> Any:
        return original_unary(
            self,
            method,
            probe.wrap("service call (box tag, limits, handler)", handler),
            *rest,
            **options,
        )

    probe.replace(HawkAuth, "unary", unary)
    for name in ("send", "fetch", "ack"):
        probe.patch(Inbox, name, f"handler: Inbox.{name}")

    class Gauge:
        """rpc_in_flight, with timed inc/dec on each child."""

        def __init__(self, gauge: Any) -> None:
            self._gauge = gauge

        def labels(self, *values: Any) -> Any:
            child = self._gauge.labels(*values)
            return types.SimpleNamespace(
                inc=probe.wrap("metrics: in-flight gauge inc/dec", child.inc),
                dec=probe.wrap("metrics: in-flight gauge inc/dec", child.dec),
            )

        def __getattr__(self, name: str) -> Any:
            return getattr(self._gauge, name)

    server.metrics.rpc_in_flight = Gauge(server.metrics.rpc_in_flight)
    probe.patches.clear()  # these stay for the whole run (pass-through while disabled)


def store_methods(obj: Any) -> list[str]:
    names = []
    for name in dir(type(obj)):
        if name.startswith("_") or name in ("close", "migrate", "check_schema", "ping"):
            continue
        if inspect.iscoroutinefunction(getattr(type(obj), name, None)):
            names.append(name)
    return names


def cql_label(query: Any) -> tuple[str, str]:
    text = getattr(query, "query_string", None)
    if text is None and hasattr(query, "prepared_statement"):
        text = query.prepared_statement.query_string
    if text is None:
        if type(query).__name__ == "BatchStatement":
            return "BATCH", "BATCH"
        text = str(query)
    words = text.replace("(", " ( ").split()
    upper = [w.upper() for w in words]
    verb = upper[0] if upper else "?"
    table = "?"
    for keyword in ("FROM", "INTO"):
        if keyword in upper:
            table = words[upper.index(keyword) + 1]
            break
    else:
        if verb == "UPDATE" and len(words) > 1:
            table = words[1]
    table = table.split(".")[-1].strip('"')
    lwt = " IF" if " IF " in f" {' '.join(upper)} " else ""
    return f"{verb} {table}{lwt}", " ".join(text.split())


def install_live(server: Any, backend: str) -> None:
    """The instrumented pass: stages on the live objects."""
    from rossby.hawk import HawkVerifier
    from rossby.server import auth, service

    probe = PROBE
    svc = server.service
    install_handle_probe()
    probe.patch(HawkVerifier, "verify", "Hawk verify (HawkVerifier.verify)")
    probe.patch(svc.verifier, "_lookup", "Hawk key lookup (get_device for the key)")
    probe.patch(auth, "_parse", "parse request (FromString)")
    probe.patch(auth, "server_authorization_header", "sign response (server_authorization_header)")
    probe.patch(service, "box_tag", "log box tag (HMAC)")

    class Log:
        def __init__(self, log: Any) -> None:
            self._log = log
            self.info = probe.wrap('per-RPC log line (log.info "rpc")', log.info)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._log, name)

    probe.replace(service, "log", Log(service.log))
    probe.patch(server.metrics, "observe_rpc", "metrics: observe_rpc")
    inbox = svc.inbox
    if inbox.send_limit is not None:
        probe.patch(inbox.send_limit, "hit", "send rate limit (RateLimit.hit)")
    if inbox.accounts is not None:
        probe.patch(inbox.accounts, "deliverable", "sender rules (Accounts.deliverable)")
    probe.patch(svc.realtime, "queued", "realtime notify (Realtime.queued)")
    probe.patch(svc.realtime.hub, "_fanout", "realtime fan-out task (Hub._fanout)")
    metered = server.store
    for name in store_methods(metered):
        probe.patch(metered, name, f"MeteredStore.{name}")
    inner = metered.inner
    for name in store_methods(inner):
        probe.patch(inner, name, f"store.{name}")
    if backend == "sqlite":
        install_sqlite(inner)
    else:
        install_cassandra(inner)


def install_sqlite(inner: Any) -> None:
    """Each SQLite transaction: loop-side submit, its time on the SQLite thread."""
    probe = PROBE
    original = inner._run

    async def run(body: Any) -> Any:
        if not probe.enabled:
            return await original(body)
        cur = probe.current
        parent = cur.stack[-1] + SEP if cur is not None and cur.stack else ""
        seen: list[int] = []
        submitted = now_ns()

        def timed(conn: Any) -> Any:
            t0, c0 = now_ns(), cpu_ns()
            try:
                return body(conn)
            finally:
                seen.extend((t0, now_ns() - t0, cpu_ns() - c0))

        try:
            return await probe.run("sqlite: submit to its thread (_run)", original(timed))
        finally:
            trace = TRACE.get()
            if trace is not None and seen:
                row = trace.stages.setdefault(parent + SQLITE_WAIT, [0, 0, 0])
                row[0] += 1
                row[1] += max(0, seen[0] - submitted)
                row = trace.stages.setdefault(parent + SQLITE_RUN, [0, 0, 0])
                row[0] += 1
                row[1] += seen[1]
                row[2] += seen[2]

    probe.replace(inner, "_run", run)


def install_cassandra(inner: Any) -> None:
    """Each CQL statement (Bridge.execute): count, wall, sequential depth."""
    probe = PROBE
    bridge = inner._db
    original = bridge.execute

    async def execute(query: Any, params: Any = None, **kwargs: Any) -> Any:
        trace = TRACE.get()
        if not probe.enabled or trace is None:
            return await original(query, params, **kwargs)
        label, text = cql_label(query)
        probe.cql_text.setdefault(label, text)
        if trace.cql_inflight == 0:
            trace.cql_rounds += 1
        trace.cql_inflight += 1
        t0 = now_ns()
        try:
            return await probe.run(
                "cql: Bridge.execute (driver encode + await)", original(query, params, **kwargs)
            )
        finally:
            trace.cql_inflight -= 1
            row = trace.cql.setdefault(label, [0, 0])
            row[0] += 1
            row[1] += now_ns() - t0

    probe.replace(bridge, "execute", execute)


# -- CPU of this process, per thread ------------------------------------------------


def thread_names() -> dict[int, str]:
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out = {}
    for entry in Path("/proc/self/task").iterdir():
        tid = int(entry.name)
        name = names.get(tid)
        if name is None:
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
        out[tid] = name
    return out


def thread_cpu() -> dict[int, int]:
    out = {}
    for entry in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            out[int(entry.name)] = int((entry / "schedstat").read_text().split()[0])
    return out


THREAD_NAMES = {
    "rossby-sqlite": "SQLite worker (rossby-sqlite)",
    "event_loop": "Cassandra driver I/O (event_loop)",
    "asyncio": "asyncio default executor (to_thread)",
    "event_engine": "gRPC core: event engine",
    "Thread-1 (_poll_wrapper)": "gRPC aio: completion-queue poller",
}


def group_name(name: str, tid: int) -> str:
    if tid == os.getpid():
        return "event loop (main thread)"
    if "_poll_wrapper" in name:
        return THREAD_NAMES["Thread-1 (_poll_wrapper)"]
    base = name.rstrip("0123456789").rstrip("_-") or name
    return THREAD_NAMES.get(base, base)


def process_cpu_ns() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e9)


class Window:
    """CPU of this process (total and per thread) over one phase."""

    def __enter__(self) -> Window:
        self.load_before = [round(x, 2) for x in os.getloadavg()]
        self.threads0 = thread_cpu()
        self.proc0 = process_cpu_ns()
        self.t0 = now_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = (now_ns() - self.t0) / 1e9
        self.process_ns = process_cpu_ns() - self.proc0
        after = thread_cpu()
        names = thread_names()
        by: dict[str, int] = {}
        for tid, ns in after.items():
            key = group_name(names.get(tid, "?"), tid)
            by[key] = by.get(key, 0) + ns - self.threads0.get(tid, 0)
        self.threads_ns = dict(sorted(by.items(), key=lambda kv: -kv[1]))
        self.loop_ns = by.get("event loop (main thread)", 0)
        self.load_after = [round(x, 2) for x in os.getloadavg()]


# -- the load process (--drive) ----------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def latency_summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"calls": 0}
    return {
        "calls": len(values),
        "mean_us": round(statistics.fmean(values), 1),
        "p50_us": round(percentile(values, 50), 1),
        "p99_us": round(percentile(values, 99), 1),
    }


async def drive(args: argparse.Namespace) -> None:
    """The load generator: a separate process, commands on stdin, JSON on stdout."""
    import grpc

    from rossby.loadtest.device import SimDevice
    from rossby.loadtest.worker import CHANNEL_OPTIONS
    from rossby.v1 import rossby_pb2 as pb

    host, port = args.target.rsplit(":", 1)
    channels = [grpc.aio.insecure_channel(args.target, options=CHANNEL_OPTIONS) for _ in range(2)]
    run_id = uuid.uuid4().hex[:8]
    devices = [
        SimDevice(u, 0, channels[u % 2], args.outbox, (host, int(port)), run_id)
        for u in range(args.users)
    ]
    pending = {d.contact: 0 for d in devices}
    cursor = {d.contact: 0 for d in devices}
    #: Each device's sweep: the first page's ack_limit (0: none), which no
    #: Ack of the sweep may pass (docs/store.md, "Long sweeps").
    ack_limit = {d.contact: 0 for d in devices}
    gate = asyncio.Semaphore(16)

    async def register(d: SimDevice) -> None:
        async with gate:
            await d.register(10)
            await d.authorize(await d.code(), 10)

    await asyncio.gather(*(register(d) for d in devices))

    def emit(data: Any) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    emit({"event": "registered", "users": len(devices)})
    rng = random.Random(7)

    async def send_phase(calls: int, seconds: float) -> dict[str, Any]:
        lat: list[float] = []
        errors: dict[str, int] = {}
        issued = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal issued
            while issued < calls and time.monotonic() < deadline:
                issued += 1
                sender, recipient = rng.sample(devices, 2)
                request = pb.SendRequest(
                    messages=[
                        pb.OutgoingMessage(
                            recipient_box_id=recipient.box_id,
                            message_id=str(uuid.uuid4()),
                            ciphertext=os.urandom(args.payload_bytes),
                        )
                    ]
                )
                t0 = time.perf_counter()
                try:
                    reply = await sender.call("Send", request, pb.SendResponse, 10)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                lat.append((time.perf_counter() - t0) * 1e6)
                outcome = reply.results[0].outcome
                if outcome == pb.SEND_OUTCOME_QUEUED:
                    pending[recipient.contact] += 1
                else:
                    key = f"outcome {pb.SendOutcome.Name(outcome)} {reply.results[0].reason}"
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return {
            "seconds": round(time.perf_counter() - t0, 3),
            "rpcs": {"Send": latency_summary(lat)},
            "errors": errors,
        }

    async def sweep_phase() -> dict[str, Any]:
        """Begin each device's sweep for the next fetch phase (not measured):
        read from the cursor (which re-reads the settle window) up to where
        the last phase stopped, and keep the first page's ack_limit. Acking
        a later phase's messages under the first phase's limit would leave
        those Acks no-ops; starting the measured pages at the cursor would
        fill them with settle-window repeats."""

        async def begin(d: SimDevice) -> None:
            async with gate:
                after, first = 0, True
                while True:
                    page = await d.call(
                        "Fetch", pb.FetchRequest(after=after, limit=500), pb.FetchResponse, 30
                    )
                    if first:
                        first, ack_limit[d.contact] = False, page.ack_limit
                    if not page.more or page.next_after >= cursor[d.contact]:
                        return
                    after = page.next_after

        await asyncio.gather(*(begin(d) for d in devices))
        return {"swept": len(devices)}

    async def fetch_phase(calls: int, seconds: float) -> dict[str, Any]:
        lat: dict[str, list[float]] = {"Fetch": [], "Ack": []}
        errors: dict[str, int] = {}
        # Round-robin over devices, one entry per message waiting for it.
        order: list[SimDevice] = []
        waiting = {d.contact: pending[d.contact] for d in devices}
        while len(order) < calls and any(waiting.values()):
            for d in devices:
                if waiting[d.contact] > 0 and len(order) < calls:
                    order.append(d)
                    waiting[d.contact] -= 1
        work = iter(order)
        deadline = time.monotonic() + seconds
        empty = 0

        async def timed(name: str, d: SimDevice, request: Any, response: Any) -> Any:
            t0 = time.perf_counter()
            try:
                reply = await d.call(name, request, response, 10)
            except grpc.aio.AioRpcError as exc:
                key = f"{name} {exc.code().name}"
                errors[key] = errors.get(key, 0) + 1
                return None
            lat[name].append((time.perf_counter() - t0) * 1e6)
            return reply

        async def worker() -> None:
            nonlocal empty
            for d in work:
                if time.monotonic() >= deadline:
                    return
                async with d.lock:
                    page = await timed(
                        "Fetch", d, pb.FetchRequest(after=cursor[d.contact], limit=1),
                        pb.FetchResponse,
                    )  # fmt: skip
                    if page is None:
                        continue
                    if not page.messages:
                        empty += 1
                        continue
                    cursor[d.contact] = page.next_after
                    pending[d.contact] -= 1
                    through, limit = page.messages[0].position, ack_limit[d.contact]
                    await timed(
                        "Ack", d, pb.AckRequest(through=min(through, limit) if limit else through),
                        pb.AckResponse,
                    )  # fmt: skip

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return {
            "seconds": round(time.perf_counter() - t0, 3),
            "rpcs": {k: latency_summary(v) for k, v in lat.items()},
            "errors": errors,
            "empty_fetches": empty,
        }

    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["op"] == "send":
            emit(await send_phase(command["calls"], command["seconds"]))
        elif command["op"] == "fetch":
            emit(await fetch_phase(command["calls"], command["seconds"]))
        elif command["op"] == "sweep":
            emit(await sweep_phase())
        else:
            break
    for channel in channels:
        await channel.close()


# -- the bench process -------------------------------------------------------------


def aggregate(traces: list[Trace], method: str) -> dict[str, Any]:
    mine = [t for t in traces if t.method == method]
    n = len(mine)
    stages: dict[str, dict[str, int]] = {}
    cql: dict[str, list[int]] = {}
    for t in mine:
        for key, (calls, wall, other) in t.stages.items():
            row = stages.setdefault(key, {"calls": 0, "wall": 0, "cpu": 0, "other": 0})
            row["calls"] += calls
            row["wall"] += wall
            row["other"] += other
        for key, ns in t.cpu.items():
            row = stages.setdefault(key, {"calls": 0, "wall": 0, "cpu": 0, "other": 0})
            row["cpu"] += ns
        for label, (count, wall) in t.cql.items():
            row2 = cql.setdefault(label, [0, 0])
            row2[0] += count
            row2[1] += wall
    rows = []

    def children(key: str) -> list[str]:
        return [c for c in stages if SEP in c and c.rsplit(SEP, 1)[0] == key]

    def probe_cost(key: str) -> float:
        """What the probe itself charged to this stage (calibrated, ns)."""
        if key.endswith((SQLITE_RUN, SQLITE_WAIT)):
            return 0.0
        own = stages[key]["calls"] * PROBE.cost_self
        nested = sum(
            stages[c]["calls"] for c in children(key) if not c.endswith((SQLITE_RUN, SQLITE_WAIT))
        )
        return own + nested * PROBE.cost_parent

    def visit(key: str) -> None:
        s = stages[key]
        on_sqlite = key.endswith(SQLITE_RUN)
        raw = s["other"] if on_sqlite else s["cpu"]
        rows.append(
            {
                "stage": key.rsplit(SEP, 1)[-1],
                "path": key.split(SEP),
                "depth": key.count(SEP),
                "calls_per_rpc": round(s["calls"] / n, 2) if n else 0,
                "wall_us": round(s["wall"] / n / 1000, 1) if n and s["calls"] else None,
                "cpu_us": round(max(0.0, raw - probe_cost(key)) / n / 1000, 1) if n else 0,
                "cpu_us_raw": round(raw / n / 1000, 1) if n else 0,
                "cpu_thread": "sqlite" if on_sqlite else "loop",
            }
        )
        for child in children(key):
            visit(child)

    roots = sorted((k for k in stages if SEP not in k), key=lambda k: k == OUTSIDE)
    for root in roots:
        visit(root)
    loop_cpu = sum(s["cpu"] for s in stages.values())
    out: dict[str, Any] = {
        "rpcs": n,
        "stages": rows,
        "loop_cpu_attributed_us": round(loop_cpu / n / 1000, 1) if n else 0,
        "loop_cpu_attributed_us_without_probe": round(
            sum(r["cpu_us"] for r in rows if r["cpu_thread"] == "loop"), 1
        ),
    }
    if cql:
        out["cql"] = {
            "statements_per_rpc": round(sum(c for c, _ in cql.values()) / n, 2),
            "sequential_rounds_per_rpc": round(sum(t.cql_rounds for t in mine) / n, 2),
            "by_statement": {
                label: {
                    "per_rpc": round(c / n, 2),
                    "mean_wall_us": round(w / c / 1000, 1),
                    "cql": PROBE.cql_text.get(label, ""),
                }
                for label, (c, w) in sorted(cql.items(), key=lambda kv: -kv[1][0])
            },
        }
    return out


def summary(inst: dict[str, Any], clean: dict[str, Any]) -> dict[str, float]:
    """Server CPU per call in parts that add up to the clean pass's total: Rossby's
    stages from the instrumented pass (probe cost removed), the other threads
    from the clean pass, and the rest (grpc.aio and the event loop itself)."""
    calls = inst["calls"]
    rossby = grpc_task = 0.0
    for b in inst["breakdown"].values():
        scale = b["rpcs"] / calls if calls else 0.0
        for row in b["stages"]:
            if row["cpu_thread"] != "loop":
                continue
            if row["stage"] == OUTSIDE:
                grpc_task += row["cpu_us"] * scale
            else:
                rossby += row["cpu_us"] * scale
    total = clean["server_cpu_us_per_call"] or 0.0
    out = {"Rossby code on the event loop (the stages above)": rossby}
    others = 0.0
    for name, us in clean["threads_cpu_us_per_call"].items():
        if name != "event loop (main thread)" and us and us >= 0.5:
            out[f"thread: {name}"] = us
            others += us
    out["the rest: grpc.aio + asyncio on the loop (total minus the above)"] = (
        total - rossby - others
    )
    out["  of which grpc.aio in the RPC's own task (instrumented)"] = grpc_task
    out["total server CPU (clean pass)"] = total
    return {k: round(v, 1) for k, v in out.items()}


def window_dict(w: Window, calls: int) -> dict[str, Any]:
    def per(ns: int) -> float | None:
        return round(ns / calls / 1000, 1) if calls else None

    return {
        "seconds": round(w.seconds, 3),
        "calls": calls,
        "server_cpu_us_per_call": per(w.process_ns),
        "loop_thread_cpu_us_per_call": per(w.loop_ns),
        "threads_cpu_us_per_call": {k: per(v) for k, v in w.threads_ns.items() if v > 0},
        "server_cpu_utilisation": round(w.process_ns / 1e9 / w.seconds, 2) if w.seconds else 0,
        "loadavg_before": w.load_before,
        "loadavg_after": w.load_after,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from rossby.config import load_settings
    from rossby.errors import FailedPrecondition
    from rossby.server.app import RossbyServer, store_options
    from rossby.store import open_store

    work = Path(tempfile.mkdtemp(prefix=f"rossby-breakdown-{args.store}-"))
    url = args.store_url or (
        f"sqlite:///{work / 'rossby.db'}" if args.store == "sqlite" else DEFAULT_CASSANDRA
    )
    log_path = Path(args.log_file) if args.log_file else work / "server.log"
    log_file = log_to(log_path)
    try:
        async with open_store(url) as store:
            await store.migrate()
    except FailedPrecondition as exc:  # e.g. a newer branch migrated this keyspace
        raise SystemExit(f"breakdown: {exc}; pass --store-url with another keyspace") from None
    settings = load_settings(
        {
            "listen": "127.0.0.1:0",
            "store": url,
            "state_dir": str(work / "state"),
            "notifier": "outbox",
            "outbox_dir": str(work / "outbox"),
            "log_format": "json",
            "log_level": "info",
            "register_rate_per_address": "0",
            "metrics_listen": "",
            **({"send_rate_per_device": args.send_rate} if args.send_rate is not None else {}),
        },
        environ={},
    )
    server = RossbyServer(settings, store=open_store(url, store_options(settings)))
    install_build_hooks(server)
    await server.start()
    PROBE.loop_ident = threading.get_ident()
    loop = asyncio.get_running_loop()
    target = f"127.0.0.1:{server.port}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(SELF), "--drive", "--target", target,
        "--outbox", str(work / "outbox"), "--users", str(args.users),
        "--concurrency", str(args.concurrency), "--payload-bytes", str(args.payload_bytes),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None

    async def ask(command: dict[str, Any] | None = None) -> dict[str, Any]:
        assert child.stdin is not None and child.stdout is not None
        if command is not None:
            child.stdin.write((json.dumps(command) + "\n").encode())
            await child.stdin.drain()
        line = await asyncio.wait_for(child.stdout.readline(), 300)
        if not line:
            raise RuntimeError(f"load process exited {await child.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    result: dict[str, Any] = {
        "backend": args.store,
        "store": url,
        "passes": {},
    }
    try:
        t0 = time.perf_counter()
        registered = await ask()
        result["registration"] = {**registered, "seconds": round(time.perf_counter() - t0, 2)}
        plan = [("warm-up", False, args.warmup_calls, 2.0)] if args.warmup_calls else []
        plan.append(("clean", False, args.clean_calls, args.clean_seconds))
        plan.append(("instrumented", True, args.calls, args.seconds))
        passes_clean: dict[str, Any] = {}
        for pass_name, instrumented, calls, seconds in plan:
            passes: dict[str, Any] = passes_clean if pass_name == "clean" else {}
            for phase in ("send", "fetch"):
                if phase == "fetch":
                    await ask({"op": "sweep"})  # outside the measured window
                print(f"== {args.store}: {pass_name} {phase}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.3)
                PROBE.traces = []
                PROBE.clock_reads = 0
                PROBE.handles = {}
                if instrumented:
                    install_live(server, args.store)
                    loop.set_task_factory(PROBE.task_factory)
                    PROBE.enabled = True
                with Window() as w:
                    reply = await ask({"op": phase, "calls": calls, "seconds": seconds})
                PROBE.enabled = False
                loop.set_task_factory(None)
                await asyncio.sleep(0.2)  # background fan-outs finish
                PROBE.unpatch()
                done = reply["rpcs"]["Send" if phase == "send" else "Fetch"].get("calls", 0)
                entry = {"client": reply, **window_dict(w, done)}
                if instrumented:
                    entry["clock_reads_per_call"] = round(PROBE.clock_reads / max(1, done), 1)
                    handled = sum(PROBE.handles.values())
                    entry["loop_cpu_us_per_call_by_callback"] = {
                        label: round(ns / max(1, done) / 1000, 1)
                        for label, ns in sorted(PROBE.handles.items(), key=lambda kv: -kv[1])
                    }
                    entry["loop_cpu_us_per_call_by_callback"][
                        "loop machinery (select, _run_once; the rest of the loop thread)"
                    ] = round((w.loop_ns - handled) / max(1, done) / 1000, 1)
                    entry["breakdown"] = {
                        m: aggregate(PROBE.traces, m)
                        for m in (["Send"] if phase == "send" else ["Fetch", "Ack"])
                    }
                    entry["summary_us_per_call"] = summary(entry, passes_clean[phase])
                passes[phase] = entry
            result["passes"][pass_name] = passes
        child.stdin.write(b'{"op": "quit"}\n')
        await child.stdin.drain()
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await server.stop(0)
        log_file.close()
        result["log_lines"] = count_lines(log_path)
        if not args.log_file:
            shutil.rmtree(work, ignore_errors=True)
    return result


def log_to(path: Path) -> Any:
    """Production's log format and level (JSON, info), written to ``path``."""
    from rossby.logging import configure_logging

    log_file = open(path, "w")  # closed by the caller
    saved, sys.stderr = sys.stderr, log_file
    try:
        configure_logging("json", "info")
    finally:
        sys.stderr = saved
    return log_file


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def thread_cost() -> float:
    n = 20000
    t = time.perf_counter_ns()
    for _ in range(n):
        cpu_ns()
    return (time.perf_counter_ns() - t) / n / 1000


def print_report(r: dict[str, Any]) -> None:
    clean, inst = r["passes"]["clean"], r["passes"]["instrumented"]
    print(
        f"\nRossby {r['backend']} ({r['store']}), {r['args']['users']} users, concurrency "
        f"{r['args']['concurrency']}, {r['args']['payload_bytes']} B; {r['date']}; "
        f"load average {r['loadavg_start']} at start"
    )
    for phase, methods in (("send", ["Send"]), ("fetch", ["Fetch", "Ack"])):
        c, i = clean[phase], inst[phase]
        label = "Send" if phase == "send" else "Fetch+Ack pair"
        print(
            f"\n{label}: server CPU per call {c['server_cpu_us_per_call']} µs clean "
            f"({c['calls']} calls in {c['seconds']} s, load {c['loadavg_before'][0]}), "
            f"{i['server_cpu_us_per_call']} µs instrumented ({i['calls']} calls in "
            f"{i['seconds']} s, load {i['loadavg_before'][0]}; "
            f"{i['clock_reads_per_call']} CPU-clock reads/call)"
        )
        for method in methods:
            b = i["breakdown"][method]
            client = i["client"]["rpcs"].get(method, {})
            print(
                f"\n  {method}: {b['rpcs']} RPCs; client-observed mean {client.get('mean_us')} µs"
                f" (p50 {client.get('p50_us')}, p99 {client.get('p99_us')})"
            )
            print(f"  {'stage':78} {'calls/RPC':>9} {'wall µs':>9} {'CPU µs':>8}")
            for row in b["stages"]:
                name = "  " * row["depth"] + row["stage"]
                wall = "-" if row["wall_us"] is None else f"{row['wall_us']:.1f}"
                cpu = f"{row['cpu_us']:.1f}" + ("*" if row["cpu_thread"] != "loop" else "")
                calls = f"{row['calls_per_rpc']:.2f}" if row["wall_us"] is not None else ""
                print(f"  {name[:78]:78} {calls:>9} {wall:>9} {cpu:>8}")
            handler = next(
                (x for x in b["stages"] if x["stage"].startswith("server handler")), None
            )
            if handler and client.get("mean_us"):
                rest = client["mean_us"] - handler["wall_us"]
                print(
                    f"  {'the rest: client latency - server handler (gRPC, transport, client)':78}"
                    f" {'':>9} {rest:>9.1f}"
                )
            if "cql" in b:
                q = b["cql"]
                print(
                    f"  CQL: {q['statements_per_rpc']} statements/RPC in "
                    f"{q['sequential_rounds_per_rpc']} sequential rounds"
                )
                for cql, s in q["by_statement"].items():
                    print(f"    {cql:44} {s['per_rpc']:>5}/RPC  {s['mean_wall_us']:>8.1f} µs")
        print(f"\n  CPU per {label} by thread (µs)      clean  instrumented")
        for name in dict.fromkeys([*c["threads_cpu_us_per_call"], *i["threads_cpu_us_per_call"]]):
            a = c["threads_cpu_us_per_call"].get(name, 0.0)
            b2 = i["threads_cpu_us_per_call"].get(name, 0.0)
            print(f"    {name[:34]:34} {a:>8} {b2:>13}")
        print(f"\n  server CPU per {label}, in parts (µs)")
        for name, us in i["summary_us_per_call"].items():
            print(f"    {name[:70]:70} {us:>8}")
        print(f"\n  event-loop thread CPU per {label} by callback, instrumented (µs)")
        for name, us in list(i["loop_cpu_us_per_call_by_callback"].items())[:10]:
            print(f"    {name[:70]:70} {us:>8}")
    cost = r["probe_cost_us_per_stage"]
    print(
        "\n  Wall: inclusive (nested stages included). CPU: exclusive (self), on the event loop"
        " thread\n  (* = on the SQLite thread), with the probe's own cost removed"
        f" ({cost['charged_to_the_stage']} µs per\n  stage, {cost['charged_to_its_parent']} µs"
        " to its parent; raw figures in the JSON)."
    )
    echo = r.get("echo")
    if echo and echo.get("server_cpu_us_per_call"):
        print(
            f"\ngRPC echo (bench/grpc_ceiling.py, concurrency {echo.get('concurrency')}): "
            f"{echo['per_second']} calls/s, server CPU {echo['server_cpu_us_per_call']} µs/call"
            f" (load {echo.get('loadavg_before')}); Rossby {r['backend']} Send / echo = "
            f"{r['send_cpu_vs_echo']}x"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=("sqlite", "cassandra"), default="sqlite")
    p.add_argument("--store-url", help=f"default: a temporary SQLite file, or {DEFAULT_CASSANDRA}")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--calls", type=int, default=2000, help="instrumented Sends (and Fetch+Acks)")
    p.add_argument("--seconds", type=float, default=4.0, help="cap per instrumented phase")
    p.add_argument("--clean-calls", type=int, default=2000)
    p.add_argument("--clean-seconds", type=float, default=4.0, help="cap per clean phase")
    p.add_argument("--warmup-calls", type=int, default=200, help="unmeasured, first (0: none)")
    p.add_argument("--echo-seconds", type=float, default=10.0, help="0: no echo run")
    p.add_argument("--echo-concurrency", type=int, default=32)
    p.add_argument("--echo-json", help="reuse a bench/grpc_ceiling.py result (JSON file)")
    p.add_argument(
        "--send-rate-per-device",
        dest="send_rate",
        help="the server setting (default: the shipped default; 0 turns the limit off)",
    )
    p.add_argument("--log-file", help="keep the server's JSON log here (default: discarded)")
    p.add_argument("--json", help="write the JSON document here")
    # the load process
    p.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--outbox", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.drive:
        asyncio.run(drive(args))
        return 0
    started = time.perf_counter()
    header = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "args": vars(args),
        "thread_time_ns_cost_us": round(thread_cost(), 2),
    }
    PROBE.cost_self, PROBE.cost_parent = asyncio.run(_calibrate())
    header["probe_cost_us_per_stage"] = {
        "charged_to_the_stage": round(PROBE.cost_self / 1000, 2),
        "charged_to_its_parent": round(PROBE.cost_parent / 1000, 2),
    }
    result = {**header, **asyncio.run(bench(args))}
    echo = None
    if args.echo_json:
        echo = json.loads(Path(args.echo_json).read_text())
        echo = echo.get("parts", {}).get("grpc_echo", echo)  # a run_all document too
    elif args.echo_seconds > 0:
        print("== gRPC echo (bench/grpc_ceiling.py)", file=sys.stderr, flush=True)
        load = [round(x, 2) for x in os.getloadavg()]
        echo = run_json(
            [
                sys.executable, str(HERE / "grpc_ceiling.py"), "--seconds", str(args.echo_seconds),
                "--concurrency", str(args.echo_concurrency),
            ],
            120,
        )  # fmt: skip
        echo["loadavg_before"] = load
    if echo:
        result["echo"] = echo
        send = result["passes"]["clean"]["send"]["server_cpu_us_per_call"]
        if send and echo.get("server_cpu_us_per_call"):
            result["send_cpu_vs_echo"] = round(send / echo["server_cpu_us_per_call"], 1)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print_report(result)
    print(f"\n{result['wall_seconds']} s in all", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
