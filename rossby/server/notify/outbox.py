"""Dev-mode notifier: codes land in files (and the log) instead of an inbox.

``make run`` and the integration tests need a code without a mail server
or an SMS provider. Each contact has one file, overwritten on resend, so
"the latest code for this contact" is a single read (``read_outbox_code``,
in rossby.outbox: the file layout both this notifier and the client use).

DEV MODE ONLY: this notifier writes the code to disk and logs it in clear
text — the one place Rossby does so. Never configure it on a server that
real users can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rossby.contacts import NormalizedContact, mask
from rossby.logging import get_logger
from rossby.outbox import outbox_path, read_outbox_code
from rossby.server.notify.base import Notifier, clean_device_name, delivery_failed

log = get_logger(__name__)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file + rename, so a reader never sees a half-written code."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class OutboxNotifier(Notifier):
    """Writes ``<directory>/<kind>-<contact>.json`` per code (dev mode only)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = Path(directory)
        self._clock = clock
        log.warning(
            "outbox_notifier_enabled",
            directory=str(self.directory),
            hint="dev only: one-time codes are written to disk and logged",
        )

    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        now = self._clock()
        record = {
            "contact_kind": contact.kind.value,
            "contact": contact.value,
            "code": code,
            "ttl_seconds": ttl_seconds,
            "expires_at": _iso(now + ttl_seconds),
            "device_name": clean_device_name(device_name),
            "sent_at": _iso(now),
        }
        path = outbox_path(self.directory, contact)
        data = (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        try:
            await asyncio.to_thread(_write_atomic, path, data)
        except OSError as exc:
            log.warning(
                "notifier_failed",
                channel="outbox",
                contact=mask(contact),
                error=type(exc).__name__,
                errno=exc.errno,
            )
            raise delivery_failed() from None
        # Dev mode only: the code in clear text, so `make run` needs no files.
        log.info("outbox_code", contact=mask(contact), code=code, path=str(path))


__all__ = ["OutboxNotifier", "outbox_path", "read_outbox_code"]
