"""``rossby serve --workers N``: N serving processes on one port.

A Python gRPC server uses about one core, so a server with several cores
runs several processes that all bind the same port with SO_REUSEPORT; the
kernel spreads incoming connections over them (connections, not calls: a
client with one channel stays on one worker).

How the processes come to be
----------------------------
gRPC does not support ``fork()`` once its core is initialised (grpc's
``doc/fork_support.md``: fork is supported client-side only, with the
``GRPC_ENABLE_FORK_SUPPORT`` polling caveats). The supervisor has already
imported grpc and may have opened a store, so workers are started with the
``spawn`` method: each one is a fresh interpreter that creates its own gRPC
server, store session (Cassandra driver threads, SQLite connection) and
notifier after it starts. Nothing with a thread or a socket crosses the
process boundary except the settings.

What the supervisor does
------------------------
1. Checks the schema once and loads the secrets (a missing schema or a
   generated dev secret is reported once, not N times).
2. Reserves the port: a plain bind first, which fails if anything else
   holds the port (SO_REUSEPORT would otherwise let a second ``rossby
   serve`` join the first one's group silently), then a bound SO_REUSEPORT
   socket held until exit, so the port stays ours between worker restarts.
   A listen port of 0 becomes a concrete port here.
3. Serves ``metrics_listen`` itself, in prometheus-client's multiprocess
   mode (see ``rossby.server.metrics``).
4. Spawns the workers and waits. SIGTERM or SIGINT is forwarded to every
   worker as SIGTERM; each stops gracefully within ``grace`` seconds. A
   worker that is still alive ``grace + 10`` seconds later is killed.
5. A worker that exits on its own is a failure: the supervisor stops the
   others and exits 1, so the process manager (systemd, Docker) restarts
   the whole unit with a clean slate rather than running short-handed.

Per-process state
-----------------
Each worker has its own store session, notifier, health status, Peer port
and in-memory Hawk nonce cache. The cache only saves a store round trip for
a replay to the same worker: every signed request is also claimed in the
store all workers share (``rossby.server.replay``), so a replay that lands
on another worker, or follows a restart, is refused there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from typing import Any

import structlog
from prometheus_client import multiprocess

from rossby.config import Settings
from rossby.errors import RossbyError
from rossby.logging import configure_logging, get_logger
from rossby.server.app import run
from rossby.server.metrics import MULTIPROC_ENV, multiprocess_registry, start_exporter
from rossby.server.secrets import load_secret
from rossby.server.tls import server_credentials
from rossby.store import open_store
from rossby.store.from_settings import store_options

log = get_logger(__name__)

#: Seconds a worker may take beyond ``grace`` to stop before it is killed.
STOP_MARGIN = 10.0
POLL = 0.2


async def serve(settings: Settings) -> int:
    """``rossby serve``: one process, or a supervisor of ``workers`` processes."""
    workers = worker_count(settings)
    log.info("config", workers=workers, settings=settings.redacted())
    if workers == 1:
        await run(settings)
        return 0
    return await supervise(settings, workers)


def worker_count(settings: Settings) -> int:
    """``workers``, with 0 meaning one per CPU this process may run on."""
    if settings.workers:
        return settings.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# -- the port ------------------------------------------------------------------


def _address(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def reserve_port(listen: str) -> tuple[socket.socket, int]:
    """Hold ``listen``'s port for the workers; answer the socket and the port.

    ``OSError("cannot listen on ...")`` when something else has the port.
    """
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        family, sockaddr = _address(host, int(port_text))
    except OSError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    port = int(port_text)
    if port:
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            raise OSError(f"cannot listen on {listen}: {'port in use' if busy else exc}") from None
        finally:
            probe.close()
    held = socket.socket(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind(sockaddr)
    except OSError as exc:
        held.close()
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    return held, int(held.getsockname()[1])


# -- a worker ------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: get SIGTERM if the supervisor dies without stopping us."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _exit_now(signum: int, frame: object) -> None:
    sys.exit(0)


def worker_main(settings: Settings, index: int) -> None:
    """Entry point of a spawned worker (a fresh interpreter)."""
    # Ctrl-C reaches the whole process group; the supervisor forwards it as
    # SIGTERM, so a worker does not also react to the terminal's SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Stopped before serving (the serving loop installs its own handler):
    # nothing is in flight, so just leave.
    signal.signal(signal.SIGTERM, _exit_now)
    _die_with_parent()
    configure_logging(settings.log_format, settings.log_level)
    structlog.contextvars.bind_contextvars(worker=index)
    try:
        asyncio.run(run(settings, reuse_port=True, export_metrics=False, signals=(signal.SIGTERM,)))
    except (RossbyError, OSError) as exc:
        reason = f" ({exc.reason})" if isinstance(exc, RossbyError) else ""
        print(f"rossby: worker {index} failed{reason}: {exc}", file=sys.stderr)
        sys.exit(1)


# -- the supervisor --------------------------------------------------------------


async def _preflight(settings: Settings) -> None:
    """Fail once, in the supervisor, on what would fail in every worker."""
    server_credentials(settings)
    load_secret(settings, "contact_hash_key")
    load_secret(settings, "server_secret")
    async with open_store(settings.store, store_options(settings)) as store:
        await store.check_schema()


async def supervise(settings: Settings, workers: int) -> int:
    """Run ``workers`` serving processes until SIGTERM/SIGINT; answer the exit code."""
    await _preflight(settings)
    held, port = reserve_port(settings.listen)
    metrics_dir = tempfile.mkdtemp(prefix="rossby-metrics-")
    exporter = None
    processes: list[BaseProcess] = []
    try:
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
        if settings.metrics_listen:
            exporter = start_exporter(settings.metrics_listen, multiprocess_registry(metrics_dir))
        host = settings.listen.rpartition(":")[0]
        child = replace(settings, listen=f"{host}:{port}", workers=1)
        context = multiprocessing.get_context("spawn")
        for index in range(workers):
            process = context.Process(
                target=worker_main, args=(child, index), name=f"rossby-worker-{index}"
            )
            process.start()
            processes.append(process)
        log.info(
            "workers_started",
            workers=workers,
            listen=f"{host}:{port}",
            pids=[p.pid for p in processes],
            metrics=(
                f"{settings.metrics_listen.rpartition(':')[0]}:{exporter.port}"
                if exporter
                else None
            ),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        failed = None
        while not stop.is_set():
            failed = next((p for p in processes if not p.is_alive()), None)
            if failed is not None:
                log.error("worker_exited", pid=failed.pid, exitcode=failed.exitcode)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
        log.info("stopping", grace=settings.grace, workers=len(processes))
        codes = await _stop_all(processes, settings.grace + STOP_MARGIN)
        for p in processes:
            if p.pid is not None:
                multiprocess.mark_process_dead(p.pid, metrics_dir)  # type: ignore[no-untyped-call]
        if failed is not None:
            return 1
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        for p in processes:  # only if something above raised
            if p.is_alive():
                p.kill()
        if exporter is not None:
            exporter.close()
        held.close()
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("stopped")


async def _stop_all(processes: list[BaseProcess], patience: float) -> list[int | None]:
    """SIGTERM every worker, wait up to ``patience`` seconds, kill the rest."""
    for p in processes:
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)

    def join_all() -> None:
        deadline = time.monotonic() + patience
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in processes:
            if p.is_alive():
                log.error("worker_killed", pid=p.pid, after=patience)
                p.kill()
                p.join(5)

    await asyncio.to_thread(join_all)
    return [p.exitcode for p in processes]


__all__ = ["reserve_port", "serve", "supervise", "worker_count", "worker_main"]
