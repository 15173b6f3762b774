"""Schema and connection lifecycle on Cassandra: a mixin of
``CassandraStore``. ``migrate`` creates the keyspace once (never alters its
replication) and applies the numbered files of ``schema/``, recording each
version in every DC at once.
"""

from __future__ import annotations

import asyncio
import time

from cassandra.query import SimpleStatement

from rossby.errors import FailedPrecondition, StoreUnavailable
from rossby.logging import get_logger
from rossby.replication.consistency import Op, profile_name
from rossby.replication.topology import format_replication
from rossby.store.cassandra.config import KEYS, SCHEMA
from rossby.store.cassandra.migrations import keyspace_cql, migrations, version_table_cql
from rossby.store.cassandra.plumbing import Plumbing

log = get_logger("rossby.store.cassandra.store")

COMPONENT = "store"


class CassandraLifecycle(Plumbing):
    """``migrate``, ``check_schema``, ``ping``, ``close``."""

    async def _schema_version(self) -> int | None:
        """The recorded version, or None when nothing was ever recorded."""
        try:
            rows = await self._run(self._cql.version_get, (COMPONENT,), SCHEMA)
        except FailedPrecondition as exc:
            if exc.reason == "SCHEMA_MISSING":
                return None
            raise
        return int(rows[0]["version"]) if rows else None

    async def _ddl(self, cql: str) -> None:
        await self._db.execute(SimpleStatement(cql), profile=SCHEMA)

    async def _agree(self) -> None:
        if not await self._db.wait_for_schema_agreement():
            raise StoreUnavailable("store: nodes disagree on the schema", applied=None)

    async def migrate(self) -> int:
        ks = self._settings.keyspace
        known = migrations(ks)
        latest = known[-1].version
        current = await self._schema_version()
        if current is not None and current > latest:
            raise FailedPrecondition(
                f"schema version {current} is newer than this code ({latest})",
                reason="SCHEMA_TOO_NEW",
            )
        if current is not None:
            await self._warn_on_replication_drift()
        if current == latest:
            return latest
        await self._ddl(keyspace_cql(self._settings))
        await self._ddl(version_table_cql(ks))
        await self._agree()
        current = await self._schema_version() or 0
        for migration in known:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await self._ddl(statement)
            await self._agree()
            await self._record_version(migration.version)
        return latest

    async def _warn_on_replication_drift(self) -> None:
        """``migrate`` never alters replication (that needs a rebuild and a
        repair, docs/operations.md); it says so when the configured one
        differs from the keyspace's."""
        rows = await self._run(self._cql.keyspace_replication, (self._settings.keyspace,), SCHEMA)
        if not rows or not rows[0]["replication"]:
            return
        found = rows[0]["replication"].items()
        actual = tuple(sorted((dc, int(rf)) for dc, rf in found if dc != "class" and rf.isdigit()))
        if actual != self._settings.replication:
            log.warning(
                "keyspace_replication_differs",
                keyspace=self._settings.keyspace,
                configured=format_replication(self._settings.replication),
                actual=format_replication(actual),
            )

    async def _record_version(self, version: int) -> None:
        """In every DC at once (EACH_QUORUM): a server in any region checks
        it at start. A DC still applying the new tables refuses the write
        for a moment (a write to a table a node does not know yet is lost
        on that node), so it is retried briefly."""
        for attempt in range(10):
            try:
                await self._run(
                    self._cql.version_put,
                    (COMPONENT, version, int(time.time() * 1000)),
                    profile_name(Op.EVERYWHERE),
                )
                return
            except StoreUnavailable:
                if attempt == 9:
                    raise
                await asyncio.sleep(1.0)

    async def check_schema(self) -> int:
        latest = migrations(self._settings.keyspace)[-1].version
        current = await self._schema_version()
        if current is None:
            raise FailedPrecondition(
                "store schema missing; run `rossby migrate`", reason="SCHEMA_MISSING"
            )
        if current < latest:
            raise FailedPrecondition(
                f"store schema version {current} is older than {latest}; run `rossby migrate`",
                reason="SCHEMA_OUTDATED",
            )
        if current > latest:
            raise FailedPrecondition(
                f"store schema version {current} is newer than this code ({latest})",
                reason="SCHEMA_TOO_NEW",
            )
        return current

    async def ping(self) -> None:
        await self._run(self._cql.ping, (), KEYS)

    async def close(self) -> None:
        await self._db.close()


__all__ = ["CassandraLifecycle"]
