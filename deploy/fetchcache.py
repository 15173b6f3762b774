"""Where the project's fetched tools live, and the lock that guards a fetch.

Shared by the Cassandra launcher (the jars) and the Toxiproxy build so both
honour one ``$ROSSBY_CACHE`` and two test processes fetching at once wait for
each other instead of writing the same files. Stdlib only: both are scripts
run by path on a machine that may not have the venv yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("ROSSBY_CACHE") or "~/.cache/rossby").expanduser()


@contextlib.contextmanager
def flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
