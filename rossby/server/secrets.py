"""Server-side secrets: from configuration, or generated once for dev.

A production region configures ``contact_hash_key`` and ``server_secret``
(environment or ``*_file``); every region must share the same contact-hash
key or lookups diverge. For ``make run`` they are generated into the state
directory on first start so a fresh machine serves with nothing set up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from rossby.config import Settings
from rossby.logging import get_logger

log = get_logger(__name__)


def load_secret(settings: Settings, name: str) -> bytes:
    configured = getattr(settings, name)
    if configured:
        return bytes.fromhex(configured)
    path = Path(settings.state_dir) / f"{name.replace('_', '-')}.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex() + "\n")
    log.warning(
        "generated_secret",
        setting=name,
        path=str(path),
        hint="dev only: configure it explicitly in production and back it up",
    )
    return value
