"""Where the dev-mode outbox keeps each contact's latest code, and reading it back.

The server's ``OutboxNotifier`` (rossby.server.notify.outbox) writes these
files; ``rossby client dev-code``, the load test and the integration tests
read them. The layout lives here, below both the server and the client, so
the client can read a code without depending on the server package.

DEV MODE ONLY: see rossby.server.notify.outbox.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

from rossby.contacts import NormalizedContact

# Leaves room under the usual 255-byte name limit for the temp-file suffix.
_MAX_STEM = 200


def outbox_path(directory: str | os.PathLike[str], contact: NormalizedContact) -> Path:
    """The file holding the latest code for ``contact``.

    Percent-encoding keeps the mapping one-to-one (no two contacts share a
    file) and path-safe ('/' in a local part cannot escape the directory;
    the kind prefix rules out "." and ".."). Names too long for a file
    system fall back to a digest of the value.
    """
    stem = f"{contact.kind.value}-{quote(contact.value, safe='@.+-_')}"
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(contact.value.encode("utf-8")).hexdigest()
        stem = f"{contact.kind.value}-sha256-{digest}"
    return Path(directory) / f"{stem}.json"


def read_outbox_code(directory: str | os.PathLike[str], contact: NormalizedContact) -> str | None:
    """The latest code sent to ``contact``, or None if none was sent.

    Expiry is not checked: the server decides whether a code is still
    good, and a test may want to prove that an expired one is refused.
    """
    try:
        record = json.loads(outbox_path(directory, contact).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    code = record.get("code") if isinstance(record, dict) else None
    return code if isinstance(code, str) else None


__all__ = ["outbox_path", "read_outbox_code"]
