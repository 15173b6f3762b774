"""The ``hawk_keys`` setting's syntax: ordered (key id, master key) entries.

Below both the configuration (which refuses a bad keyring before any port
is bound) and the server's keyring (``rossby.server.hawkkeys``, which wraps
and unwraps with the keys), so the configuration does not import the
server to check a setting.
"""

from __future__ import annotations

import re

from rossby.errors import ConfigError

MAX_KEY_ID = 2**32 - 1
#: The shortest master key accepted, as for the other server secrets.
MIN_MASTER_BYTES = 16

_ENTRY = re.compile(r"^(\d+):([0-9a-fA-F]+)$")


def parse_keyring(text: str, *, setting: str = "hawk_keys") -> list[tuple[int, bytes]]:
    """``"2:<hex>,1:<hex>"`` (commas, spaces or newlines between entries):
    key id, master key; the first entry is the current one."""
    entries: list[tuple[int, bytes]] = []
    for raw in re.split(r"[\s,]+", text.strip()):
        if not raw:
            continue
        match = _ENTRY.match(raw)
        if match is None or len(match.group(2)) % 2:
            raise ConfigError(
                f"invalid setting {setting}: entries are <key id>:<hex key>, e.g. 1:{'ab' * 16}"
            )
        key_id, key = int(match.group(1)), bytes.fromhex(match.group(2))
        if not 1 <= key_id <= MAX_KEY_ID:
            raise ConfigError(f"invalid setting {setting}: key ids are 1 to {MAX_KEY_ID}")
        if len(key) < MIN_MASTER_BYTES:
            raise ConfigError(
                f"invalid setting {setting}: key {key_id} needs at least "
                f"{2 * MIN_MASTER_BYTES} hex digits"
            )
        if any(key_id == other for other, _ in entries):
            raise ConfigError(f"invalid setting {setting}: key id {key_id} appears twice")
        entries.append((key_id, key))
    if not entries:
        raise ConfigError(f"invalid setting {setting}: no key")
    return entries


__all__ = ["MAX_KEY_ID", "MIN_MASTER_BYTES", "parse_keyring"]
