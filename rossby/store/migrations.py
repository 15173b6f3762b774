"""Reading a backend's numbered schema files: one loader for both backends.

Each backend keeps its files in a package of its own
(``rossby/store/sqlite/migrations/NNNN_name.sql``,
``rossby/store/cassandra/schema/NNNN_name.cql``) and applies them its own
way; what they share is how the files are found, ordered and checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its number, file name and statements in order."""

    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(
    package: str,
    extension: str,
    split: Callable[[str], list[str]],
    *,
    substitute: dict[str, str] | None = None,
) -> tuple[Migration, ...]:
    """Every ``NNNN_name.<extension>`` file of ``package``, in version order.

    ``substitute`` replaces ``${name}`` placeholders (the Cassandra
    keyspace) before ``split`` cuts the text into statements. Versions must
    run 1..N without gaps: a gap would mean a file went missing from the
    package, and applying around it would leave a schema no version number
    describes.
    """
    pattern = re.compile(rf"^(\d{{4}})_[a-z0-9_]+\.{re.escape(extension)}$")
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = pattern.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        for key, value in (substitute or {}).items():
            text = text.replace("${" + key + "}", value)
        found.append(Migration(int(match.group(1)), entry.name, tuple(split(text))))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(
            f"{package}: schema files must be numbered 1..n without gaps, got {versions}"
        )
    return tuple(found)


__all__ = ["Migration", "load_migrations"]
