"""Server-side secrets: from configuration, or generated once for dev.

A production region configures ``contact_hash_key``, ``server_secret`` and
``hawk_keys`` (environment or ``*_file``); every region must share the same
values: the contact-hash key or lookups diverge, the Hawk keyring or a
device registered in one region is refused in the other. For ``make run``
they are generated into the state directory on first start so a fresh
machine serves with nothing set up.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from rossby.config import Settings
from rossby.logging import get_logger
from rossby.server.hawkkeys import HawkKeyring, new_keyring_text

log = get_logger(__name__)


def _generated(settings: Settings, name: str, make: Callable[[], str]) -> str:
    """The dev value of setting ``name`` from the state directory, made by
    ``make`` on first use (once, even with several processes racing)."""
    path = Path(settings.state_dir) / f"{name.replace('_', '-')}.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning(
        "generated_secret",
        setting=name,
        path=str(path),
        hint="dev only: configure it explicitly in production and back it up",
    )
    return value


def load_secret(settings: Settings, name: str) -> bytes:
    configured = getattr(settings, name)
    if configured:
        return bytes.fromhex(configured)
    return bytes.fromhex(_generated(settings, name, lambda: secrets.token_bytes(32).hex()))


def load_hawk_keyring(settings: Settings) -> HawkKeyring:
    """The master keys that wrap Hawk keys at rest (``rossby.server.hawkkeys``)."""
    text = settings.hawk_keys or _generated(settings, "hawk_keys", new_keyring_text)
    return HawkKeyring.from_text(text)
