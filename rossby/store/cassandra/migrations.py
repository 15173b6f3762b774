"""Reading the versioned schema files; applying them lives in the store."""

from __future__ import annotations

from rossby.store.cassandra.config import Settings
from rossby.store.migrations import Migration, load_migrations


def split_statements(text: str) -> list[str]:
    """Statements of a schema file: ``--`` comments dropped, split on a
    ``;`` that ends a line."""
    out: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("--", 1)[0].rstrip()
        if not line.strip():
            continue
        current.append(line)
        if line.endswith(";"):
            out.append("\n".join(current)[:-1].strip())
            current = []
    if any(part.strip() for part in current):
        out.append("\n".join(current).strip())
    return out


def migrations(keyspace: str) -> tuple[Migration, ...]:
    """Every schema version this code knows, in order."""
    return load_migrations(
        "rossby.store.cassandra.schema", "cql", split_statements, substitute={"keyspace": keyspace}
    )


def latest_version(keyspace: str = "rossby") -> int:
    return len(migrations(keyspace))


def keyspace_cql(settings: Settings) -> str:
    """The keyspace, replicated per datacenter as the URL asks.

    Only ever created, never altered: changing replication on a live
    cluster needs a repair plan, not a side effect of ``migrate``.
    """
    dcs = ", ".join(f"'{dc}': {rf}" for dc, rf in settings.replication)
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', {dcs}}}"
    )


def version_table_cql(keyspace: str) -> str:
    """Bookkeeping that must exist before any version can be recorded."""
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_version ("
        " component text, version int, applied_at timestamp,"
        " PRIMARY KEY (component, version)"
        ") WITH CLUSTERING ORDER BY (version DESC)"
    )
