#!/usr/bin/env python3
"""Toxiproxy, built by the project: fetch (go build) and run the server.

The build is pinned by ``deploy/wan/go.mod`` and ``go.sum`` (Toxiproxy
v2.5.0 and the checksum of every module it compiles from); ``go build``
runs from that directory with ``-mod=readonly``, so a dependency whose
content differs from ``go.sum`` fails the build instead of changing it.
Modules come from the Go module proxy into ``<cache>/go/`` (GOPATH,
GOCACHE), the binaries go to ``<cache>/toxiproxy-2.5.0/bin/``
(``toxiproxy-server``, ``toxiproxy-cli``); ``<cache>`` is
``$ROSSBY_CACHE`` or ``~/.cache/rossby``, as for the Cassandra jars.

Stdlib only. Usable as a script::

    python3 deploy/wan/toxiproxy.py fetch      # idempotent; fast once built

A finished build leaves a marker holding the SHA-256 of go.mod + go.sum:
a later fetch with the same pin returns at once, a changed pin rebuilds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# deploy/fetchcache.py: the cache dir and fetch lock the launcher uses too.
# As a script this file's own dir is first on sys.path; imported through the
# launcher, deploy/ already is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fetchcache import Log, cache_root, flock, stderr_log

VERSION = "2.5.0"
"""Toxiproxy version; keep in sync with deploy/wan/go.mod."""
MODULE = "github.com/Shopify/toxiproxy/v2"
HERE = Path(__file__).resolve().parent
PIN_FILES = (HERE / "go.mod", HERE / "go.sum")
COMMANDS = {"toxiproxy-server": f"{MODULE}/cmd/server", "toxiproxy-cli": f"{MODULE}/cmd/cli"}
MARKER_NAME = "fetch.complete"
SERVER_READY_TIMEOUT = 15.0


class ToxiproxyError(RuntimeError):
    """Building, starting or stopping Toxiproxy failed; the message says why."""


def install_dir() -> Path:
    return cache_root() / f"toxiproxy-{VERSION}"


def bin_dir() -> Path:
    return install_dir() / "bin"


def server_binary() -> Path:
    return bin_dir() / "toxiproxy-server"


def pin_digest() -> str:
    """SHA-256 over go.mod and go.sum: what a finished build was built from."""
    h = hashlib.sha256()
    for path in PIN_FILES:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def is_fetched() -> bool:
    try:
        done = json.loads((install_dir() / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    binaries = all((bin_dir() / name).is_file() for name in COMMANDS)
    return binaries and done.get("pin") == pin_digest()


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )
    if go is None:
        raise ToxiproxyError(
            "go not found on PATH (Go >= 1.19 builds Toxiproxy; apt-get install golang-go)"
        )
    return go


def _go_env() -> dict[str, str]:
    gocache = cache_root() / "go"
    env = dict(os.environ)
    env.update(
        GOPATH=str(gocache / "path"),
        GOCACHE=str(gocache / "build"),
        GOFLAGS="-modcacherw -mod=readonly -buildvcs=false",
        GOTOOLCHAIN="local",
        GOWORK="off",
        CGO_ENABLED="0",
    )
    return env


def fetch(*, log: Log = stderr_log) -> Path:
    """Build the pinned Toxiproxy into the cache; return its bin dir.

    Returns at once when a build of the same pin is there. Safe to call
    concurrently (a file lock); a half-finished build is redone."""
    if is_fetched():
        return bin_dir()
    with flock(cache_root() / f".toxiproxy-{VERSION}.lock"):
        if is_fetched():
            return bin_dir()
        go = _go()
        inst = install_dir()
        if inst.exists():
            shutil.rmtree(inst)
        staging = inst / "bin.partial"
        staging.mkdir(parents=True)
        log(
            f"building toxiproxy {VERSION} (go build, pinned by {HERE / 'go.sum'}) into {bin_dir()}"
        )
        t0 = time.monotonic()
        for name, package in COMMANDS.items():
            proc = subprocess.run(
                [go, "build", "-trimpath", "-o", str(staging / name), package],
                cwd=HERE,
                env=_go_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.splitlines()[-30:])
                raise ToxiproxyError(f"go build {package} failed (rc={proc.returncode}):\n{tail}")
        staging.rename(bin_dir())
        elapsed = time.monotonic() - t0
        done = {"version": VERSION, "pin": pin_digest(), "seconds": round(elapsed, 1)}
        (inst / MARKER_NAME).write_text(json.dumps(done, indent=1) + "\n")
        log(f"built toxiproxy {VERSION} in {elapsed:.1f}s")
        return bin_dir()


# --------------------------------------------------------------------------- the server


def api_answers(api: str, timeout: float = 1.0) -> bool:
    """True if a Toxiproxy API answers ``GET /version`` on ``host:port``."""
    try:
        with urllib.request.urlopen(f"http://{api}/version", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_our_server(pid: int, api: str) -> bool:
    """pid is a live toxiproxy-server serving ``api`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    host, port = api.rsplit(":", 1)
    return (
        bool(argv)
        and argv[0].endswith(b"toxiproxy-server")
        and host.encode() in argv
        and port.encode() in argv
    )


def start_server(api: str, run_dir: Path, *, log: Log = stderr_log) -> int:
    """Start ``toxiproxy-server`` with its API on ``api`` (host:port); its pid in
    ``run_dir/pid``, its output in ``run_dir/toxiproxy.log``. Returns the pid once
    the API answers."""
    binary = fetch(log=log) / "toxiproxy-server"
    if api_answers(api):
        raise ToxiproxyError(f"a Toxiproxy already answers on {api} (another cluster's WAN?)")
    run_dir.mkdir(parents=True, exist_ok=True)
    host, port = api.rsplit(":", 1)
    with open(run_dir / "toxiproxy.log", "ab") as out:
        proc = subprocess.Popen(
            [str(binary), "-host", host, "-port", port],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    (run_dir / "pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + SERVER_READY_TIMEOUT
    while not api_answers(api):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(api, run_dir)
            tail = (run_dir / "toxiproxy.log").read_text(errors="replace")[-2000:]
            raise ToxiproxyError(f"toxiproxy-server did not answer on {api}:\n{tail}")
        time.sleep(0.05)
    log(f"toxiproxy: API on {api}, pid {proc.pid}")
    return proc.pid


def stop_server(api: str, run_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the server whose pid is in ``run_dir/pid`` (SIGTERM, then SIGKILL).
    Returns True if it was running. Idempotent."""
    try:
        pid = int((run_dir / "pid").read_text().strip())
    except (OSError, ValueError):
        return False
    running = _is_our_server(pid, api)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        (run_dir / "pid").unlink()
    return running


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["fetch"]:
        print("usage: toxiproxy.py fetch", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        path = fetch()
    except ToxiproxyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{path} ({time.monotonic() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
