"""Server-side secrets: from configuration, or generated once for dev.

A production region configures ``contact_hash_key``, ``server_secret`` and
``hawk_keys`` (environment or ``*_file``); every region must share the same
values: the contact-hash key or lookups diverge, the Hawk keyring or a
device registered in one region is refused in the other. For ``make run``
they are generated into the state directory on first start so a fresh
machine serves with nothing set up.

A generated file is created whole or not at all (written to a private
temporary file, then hard-linked into place, which fails if the name
exists), so this code never leaves an empty or partial key behind. A key
file that does not hold a usable key (empty, truncated, not hex) was
damaged by something else, and it is refused at start-up rather than
replaced: data depends on the key (every stored contact hash on
``contact_hash_key``; pending codes, log tags and peer MACs on
``server_secret``; every stored Hawk key on ``hawk_keys``), and silently
using a new one would orphan it, while using the empty one would make
every HMAC keyed by nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from rossby.config import Settings
from rossby.errors import ConfigError
from rossby.logging import get_logger
from rossby.server.hawkkeys import HawkKeyring, new_keyring_text

log = get_logger(__name__)

#: Bytes a key must have; the configuration check asks the same of configured ones.
MIN_SECRET_BYTES = 16
GENERATED_BYTES = 32


def secret_path(settings: Settings, name: str) -> Path:
    return Path(settings.state_dir) / f"{name.replace('_', '-')}.key"


def _generated(settings: Settings, name: str, make: Callable[[], str]) -> str:
    """The dev value of setting ``name`` from the state directory, made by
    ``make`` on first use (once, even with several processes racing)."""
    path = secret_path(settings, name)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    if not _create(path, (value + "\n").encode()):
        return path.read_text().strip()  # another process won the race; use its value
    log.warning(
        "generated_secret",
        setting=name,
        path=str(path),
        hint="dev only: configure it explicitly in production and back it up",
    )
    return value


def _create(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data``, mode 0600, whole or not at all; False
    if it exists already."""
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_secret(settings: Settings, name: str) -> bytes:
    configured = getattr(settings, name)
    if configured:
        return bytes.fromhex(configured)
    text = _generated(settings, name, lambda: secrets.token_bytes(GENERATED_BYTES).hex())
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"invalid setting {name}: {secret_path(settings, name)} holds no usable key "
            f"(at least {2 * MIN_SECRET_BYTES} hex digits needed). If nothing was ever stored "
            "with it, delete the file to generate a new one; otherwise restore it from a backup"
        )
    return value


def load_hawk_keyring(settings: Settings) -> HawkKeyring:
    """The master keys that wrap Hawk keys at rest (``rossby.server.hawkkeys``)."""
    text = settings.hawk_keys or _generated(settings, "hawk_keys", new_keyring_text)
    return HawkKeyring.from_text(text)
