"""A ``rossby loadtest`` run (its Python API) on a background thread, so the
caller can break things (kill the server, stop a Cassandra node) while the
harness sends, and then read the harness's own report and delivery audit.

Used by the crash runs (``crashrun.py``) and the node-fault runs
(``nodefault.py``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rossby.loadtest.config import LoadConfig
from rossby.loadtest.coordinator import Coordinator, Outcome, Snapshots
from rossby.loadtest.report import build_report

#: The harness's phase in which the mix runs (and sends happen).
RUN_PHASE = "run"


class LoadRun:
    """A ``rossby loadtest`` run in a background thread."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.run_seen: float | None = None
        #: Set once the run phase is over (drain, audit) or the harness failed.
        self.run_over = threading.Event()
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="loadtest", daemon=True)

    def _progress(self, phase: str, elapsed: float, snapshots: Snapshots) -> None:
        if phase == RUN_PHASE:
            if self.run_seen is None:
                self.run_seen = time.time()
        elif self.run_seen is not None:
            self.run_over.set()

    def _main(self) -> None:
        try:
            self._outcome = Coordinator(self.config, self._progress).run()
        except BaseException as exc:  # re-raised by finish()
            self._error = exc
        finally:
            self.run_over.set()

    def start(self) -> LoadRun:
        self._thread.start()
        return self

    def wait_running(self, timeout: float) -> None:
        """Until the users are registered and the mix runs."""
        deadline = time.monotonic() + timeout
        while self.run_seen is None:
            if not self._thread.is_alive():
                self.finish(0)  # raises the harness's error
                raise AssertionError("the load test ended before its run phase")
            if time.monotonic() > deadline:
                raise AssertionError(f"the load test did not start running in {timeout}s")
            time.sleep(0.1)

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the run (load, drain, audit); answer its report."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the load test did not finish within {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return build_report(self._outcome)


__all__ = ["RUN_PHASE", "LoadRun"]
