"""The Cassandra backend. The reasoning is in docs/store.md ("Cassandra
backend", "Cursor edge"); comments here only point at the rule applied."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from cassandra.query import BatchStatement, BatchType, SimpleStatement

from rossby.errors import AlreadyExists, FailedPrecondition, NotFound, StoreUnavailable
from rossby.logging import get_logger
from rossby.replication.consistency import Op, profile_name
from rossby.replication.homes import HomeCache, HomeRecord, HomeRegionUnavailable, Reconciled
from rossby.replication.topology import format_replication
from rossby.store import StoreURL
from rossby.store.base import (
    Box,
    Compaction,
    Device,
    DeviceKeys,
    DeviceState,
    Enqueued,
    NewMessage,
    Page,
    PendingCapExceeded,
    Position,
    Profile,
    Registration,
    Store,
    StoredMessage,
    StoreOptions,
)
from rossby.store.cassandra.accounts import CassandraAccounts
from rossby.store.cassandra.attempts import reserve
from rossby.store.cassandra.codesends import CassandraCodeSends
from rossby.store.cassandra.config import (
    CONTACTS,
    KEYS,
    REGISTRATIONS,
    SCHEMA,
    parse_settings,
)
from rossby.store.cassandra.driver import Bridge
from rossby.store.cassandra.errors import translate
from rossby.store.cassandra.locks import KeyedLocks
from rossby.store.cassandra.migrations import (
    keyspace_cql,
    migrations,
    version_table_cql,
)
from rossby.store.cassandra.nonces import CassandraNonces
from rossby.store.cassandra.pending import PendingEstimates
from rossby.store.cassandra.positions import (
    Allocator,
    bucket_of,
    position_at,
    span,
    time_of,
    write_timestamp,
)
from rossby.store.cassandra.presence import CassandraPresence

log = get_logger(__name__)

COMPONENT = "store"
APPLIED = "[applied]"
CAS_ROUNDS = 64  # compare-and-set retries before reporting contention
CLAIM_TRIES = 6  # contact claims timing out in cross-DC Paxos contention
POLL = 0.05  # seconds between looks at a row another attempt is writing
MAX_LIMIT = 2**31 - 1


async def _nothing() -> None:
    return None


_DEVICE_COLUMNS = (
    "device_id, name, encryption_key, signing_key, key_signature, hawk_key, state,"
    " device_created_at, start_position, cursor, purged_through"
)
# A queue operation's view of the box partition: the device columns, then
# the statics that route it (docs/replication.md, "Home region").
_VIEW_COLUMNS = f"{_DEVICE_COLUMNS}, home_region, recovery_floor"
V_HOME = 11
V_RECOVERY = 12
_REGISTRATION_COLUMNS = (
    "device_id, box_id, contact_hashes, code_hashes, encryption_key, signing_key,"
    " key_signature, device_name, created_at, expires_at, sent_at, attempts, completed"
)


class _Cql:
    """Every statement, qualified with the keyspace (the session has none:
    it must work before ``migrate`` created the keyspace)."""

    def __init__(self, ks: str) -> None:
        # schema bookkeeping
        self.version_get = f"SELECT version FROM {ks}.schema_version WHERE component = ? LIMIT 1"
        self.version_put = (
            f"INSERT INTO {ks}.schema_version (component, version, applied_at) VALUES (?, ?, ?)"
        )
        self.ping = "SELECT release_version FROM system.local"
        self.keyspace_replication = (
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?"
        )
        # boxes partition: box + profile (static), devices (rows)
        self.box_get = f"SELECT home_region, created_at FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        self.box_insert = (
            f"INSERT INTO {ks}.boxes (box_id, home_region, created_at, display_name,"
            " description, avatar_ref, discoverable, accept_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.profile_get = (
            f"SELECT home_region, display_name, description, avatar_ref, discoverable,"
            f" accept_from FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        )
        self.profile_put = (
            f"UPDATE {ks}.boxes SET display_name = ?, description = ?, avatar_ref = ?,"
            " discoverable = ?, accept_from = ? WHERE box_id = ?"
        )
        self.device_insert = (
            f"INSERT INTO {ks}.boxes (box_id, device_id, name, encryption_key, signing_key,"
            " key_signature, hawk_key, state, device_created_at, start_position)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.device_get = (
            f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id = ?"
        )
        self.devices_all = f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ?"
        self.device_keys = (
            f"UPDATE {ks}.boxes SET encryption_key = ?, signing_key = ?, key_signature = ?"
            " WHERE box_id = ? AND device_id = ?"
        )
        self.device_state = f"UPDATE {ks}.boxes SET state = ? WHERE box_id = ? AND device_id = ?"
        self.device_hawk_key = (
            f"UPDATE {ks}.boxes SET hawk_key = ? WHERE box_id = ? AND device_id = ?"
        )
        # full scans for operator commands (token order, then device id)
        self.devices_first = f"SELECT box_id, {_DEVICE_COLUMNS} FROM {ks}.boxes LIMIT ?"
        self.devices_scan = (
            f"SELECT box_id, {_DEVICE_COLUMNS} FROM {ks}.boxes"
            " WHERE token(box_id) > token(?) LIMIT ?"
        )
        self.devices_rest = (
            f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id > ?"
        )
        # grow-only cells: the write timestamp is derived from the value
        self.cursor_set = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET cursor = ? WHERE box_id = ? AND device_id = ?"
        )
        self.purged_get = f"SELECT purged_through FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        self.purged_set = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET purged_through = ? WHERE box_id = ?"
        )
        # home regions (read in the box's home DC by every queue operation)
        self.view_all = f"SELECT {_VIEW_COLUMNS} FROM {ks}.boxes WHERE box_id = ?"
        self.view_device = (
            f"SELECT {_VIEW_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id = ?"
        )
        self.home_get = (
            f"SELECT home_region, home_epoch, home_moved_at, recovery_floor, purged_through"
            f" FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        )
        self.home_move = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET home_region = ?, home_epoch = ?,"
            " home_moved_at = ?, recovery_floor = ? WHERE box_id = ?"
        )
        self.recovery_clear = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET recovery_floor = 0 WHERE box_id = ?"
        )
        # the queue
        self.message_insert = (
            f"INSERT INTO {ks}.messages (box_id, bucket, position, message_id, sender_box,"
            " sender_device, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        self.message_range = (
            f"SELECT position, message_id, sender_box, sender_device, ciphertext"
            f" FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position > ?"
            " AND position <= ? LIMIT ?"
        )
        self.message_top = (
            f"SELECT position FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position > ?"
            " AND position <= ? ORDER BY position DESC LIMIT 1"
        )
        self.message_exists = (
            f"SELECT position FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position = ? AND message_id = ?"
        )
        self.message_count = (
            f"SELECT COUNT(*) FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position > ? AND position <= ?"
        )
        self.messages_delete_below = (
            f"DELETE FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position <= ?"
        )
        self.messages_delete_bucket = f"DELETE FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
        # message ids: plain writes, written before the message row
        self.id_put = (
            f"INSERT INTO {ks}.message_ids (box_id, message_id, position) VALUES (?, ?, ?)"
            " USING TTL ?"
        )
        self.id_get = f"SELECT position FROM {ks}.message_ids WHERE box_id = ? AND message_id = ?"
        self.message_ids_range = (
            f"SELECT position, message_id FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position > ? AND position <= ?"
        )
        # contacts: LWT only
        self.contact_get = f"SELECT box_id FROM {ks}.contacts WHERE contact_hash = ?"
        self.contact_claim = (
            f"INSERT INTO {ks}.contacts (contact_hash, box_id) VALUES (?, ?) IF NOT EXISTS"
        )
        self.contact_release = f"DELETE FROM {ks}.contacts WHERE contact_hash = ? IF box_id = ?"
        # registrations: LWT only
        self.registration_get = (
            f"SELECT {_REGISTRATION_COLUMNS} FROM {ks}.registrations WHERE device_id = ?"
        )
        self.registration_insert = (
            f"INSERT INTO {ks}.registrations ({_REGISTRATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
        )
        self.registration_replace = (
            f"UPDATE {ks}.registrations USING TTL ? SET box_id = ?, contact_hashes = ?,"
            " code_hashes = ?, encryption_key = ?, signing_key = ?, key_signature = ?,"
            " device_name = ?, created_at = ?, expires_at = ?, sent_at = ?, attempts = ?,"
            " completed = ? WHERE device_id = ? IF EXISTS"
        )
        self.registration_attempt = (
            f"UPDATE {ks}.registrations USING TTL ? SET attempts = ? WHERE device_id = ?"
            " IF attempts = ? AND expires_at = ?"
        )
        self.registration_complete = (
            f"UPDATE {ks}.registrations USING TTL ? SET completed = true WHERE device_id = ?"
            " IF expires_at = ?"
        )


def _device(box_id: uuid.UUID, row: Sequence[Any]) -> Device:
    return Device(
        box_id=box_id,
        device_id=row[0],
        name=row[1] or "",
        keys=DeviceKeys(
            encryption_key=row[2] or b"", signing_key=row[3] or b"", key_signature=row[4] or b""
        ),
        hawk_key=row[5] or b"",
        state=DeviceState(row[6]),
        created_at=row[7] or 0.0,
    )


class CassandraStore(
    CassandraPresence, CassandraNonces, CassandraAccounts, CassandraCodeSends, Store
):
    """Apache Cassandra 5.0 backend (see the package docstring for the URL)."""

    def __init__(self, url: StoreURL, options: StoreOptions) -> None:
        self.options = options
        self._settings = parse_settings(url)
        self.settle_window = span(self._settings.settle_seconds)
        self._positions = Allocator(options.clock)
        self._db = Bridge(self._settings, options.connection)
        self._cql = _Cql(self._settings.keyspace)
        self._locks = KeyedLocks()
        self._topology = self._settings.topology
        self._homes = HomeCache()
        self._pending = PendingEstimates()

    # -- helpers -------------------------------------------------------------

    async def _run(self, cql: str, params: Sequence[Any], profile: str, **kw: Any) -> list[Any]:
        return await self._db.execute(cql, params, profile=profile, **kw)

    def _message_ttl(self) -> int:
        return max(1, math.ceil(self.options.message_ttl))

    def _horizon(self) -> Position:
        """Positions at or below this have expired (never read them)."""
        expired_before = self.options.clock() - self.options.message_ttl
        return position_at(expired_before) if expired_before > time_of(0) else 0

    def _upper(self) -> Position:
        """Reads stop here: the head plus the settle window, so a message
        from a writer whose clock runs (tolerably) ahead is not held back."""
        return self._positions.head() + self.settle_window

    def _budget(self) -> float:
        return self._settings.request_timeout

    # -- home regions (docs/replication.md) ----------------------------------

    @property
    def local_dc(self) -> str:
        return self._settings.local_dc

    @property
    def datacenters(self) -> tuple[str, ...]:
        return self._topology.datacenters

    def _route(self, home_region: str | None) -> str:
        """The DC that coordinates a box homed in ``home_region``: that DC,
        or this one for a home the topology does not know (a box created
        before its region was added, or by a single-region setup)."""
        if home_region and self._topology.knows(home_region):
            return home_region
        return self._settings.local_dc

    async def _run_home(
        self, cql: Any, params: Sequence[Any] | None, op: Op, home: str, **kw: Any
    ) -> list[Any]:
        """Run a home-routed operation in ``home``; a remote home that does
        not answer is reported as such (HOME_REGION_UNAVAILABLE)."""
        try:
            return await self._db.execute(cql, params, profile=profile_name(op, home), **kw)
        except StoreUnavailable as exc:
            if home == self._settings.local_dc or isinstance(exc, HomeRegionUnavailable):
                raise
            raise HomeRegionUnavailable(home, str(exc), applied=exc.applied) from exc

    async def home_of(self, box_id: uuid.UUID) -> str | None:
        """The DC coordinating the box's queue, or None for an unknown box.

        Asks this DC first; a box created moments ago in another region may
        not have replicated here yet, so the other DCs are asked next.
        """
        cached = self._homes.get(box_id)
        if cached is not None:
            return cached
        local = self._settings.local_dc
        for dc in (local, *(d for d in self._topology.datacenters if d != local)):
            try:
                rows = await self._run(self._cql.box_get, (box_id,), profile_name(Op.KEYS, dc))
            except StoreUnavailable:
                if dc == local:
                    raise
                continue
            if rows and rows[0][0] is not None:
                home = self._route(rows[0][0])
                self._homes.put(box_id, home)
                return home
        return None

    async def _view(
        self, box_id: uuid.UUID, device_id: uuid.UUID | None = None
    ) -> tuple[str, list[Any]]:
        """(home DC, the box partition read there): every device row, or the
        one asked for, each with the home and recovery statics.

        The fence: the home recorded *in the DC we routed to* must name
        that DC. A move writes the new home to every DC before anything
        else, so a stale route is corrected here, before any queue write.
        """
        home = await self.home_of(box_id) or self._settings.local_dc
        for _ in range(3):
            try:
                if device_id is None:
                    rows = await self._run_home(self._cql.view_all, (box_id,), Op.CURSOR, home)
                else:
                    rows = await self._run_home(
                        self._cql.view_device, (box_id, device_id), Op.CURSOR, home
                    )
            except HomeRegionUnavailable:
                # The home we know is down; a forced move (failover) may
                # have named a new one, written in the surviving DCs.
                self._homes.forget(box_id)
                rows = await self._run(self._cql.box_get, (box_id,), KEYS)
                moved = self._route(rows[0][0]) if rows and rows[0][0] is not None else home
                if moved == home:
                    raise
                home = moved
                self._homes.put(box_id, home)
                continue
            seen = rows[0][V_HOME] if rows else None
            if seen is None or self._route(seen) == home:
                return home, rows
            home = self._route(seen)
            self._homes.put(box_id, home)
        raise StoreUnavailable("store: the box's home region keeps moving", applied=False)

    async def home_record(self, box_id: uuid.UUID, dc: str) -> HomeRecord | None:
        """The box's home statics as ``dc`` holds them (LOCAL_QUORUM there)."""
        rows = await self._run_home(self._cql.home_get, (box_id,), Op.CURSOR, dc)
        if not rows or rows[0][0] is None:
            return None
        home, epoch, moved_at, floor, purged = rows[0]
        return HomeRecord(
            home, int(epoch or 0), int(moved_at or 0), int(floor or 0), int(purged or 0)
        )

    async def _lowest_cursor(self, box_id: uuid.UUID, dcs: Sequence[str], force: bool) -> Position:
        """The lowest active cursor any reachable DC of ``dcs`` holds (with
        ``force``, unreachable ones are skipped; the new home must answer)."""
        cursors: list[int] = []
        for i, dc in enumerate(dcs):
            try:
                rows = await self._run_home(self._cql.view_all, (box_id,), Op.CURSOR, dc)
            except StoreUnavailable:
                if not force or i == 0:
                    raise
                continue
            cursors += [
                int(r[9] or 0) for r in rows if r[0] is not None and r[6] == DeviceState.ACTIVE
            ]
        return min(cursors) if cursors else self._positions.head()

    async def move_home(self, box_id: uuid.UUID, region: str, *, force: bool = False) -> HomeRecord:
        """Make ``region`` the box's home (docs/replication.md, "Moving a home").

        Planned (``force=False``, every DC up): the new home, a bumped epoch
        and a recovery floor are written in every DC at once (EACH_QUORUM),
        so every server's next queue operation for the box is fenced onto
        the new home; then call ``reconcile_home``. Forced (the old home is
        unreachable): written in the new home only; the box re-reads from
        its recovery floor until ``reconcile_home`` succeeds, which needs
        the old home back.
        """
        if not self._topology.knows(region) or self._topology.rf(region) < 1:
            raise FailedPrecondition(
                f"region {region!r} holds no replicas of this keyspace", reason="UNKNOWN_REGION"
            )
        self._homes.forget(box_id)
        old = await self.home_of(box_id)
        if old is None:
            raise NotFound("no such box")
        current = await self.home_record(box_id, region)
        if current is None:
            raise NotFound(f"the box has not reached {region} yet; retry shortly")
        dcs = [region] + ([old] if old != region else [])
        lowest = await self._lowest_cursor(box_id, dcs, force)
        # Everything at or below a cursor less the settle window was
        # delivered to that device (the settle argument, in the old home);
        # the second window is margin for cursors written by a server that
        # had not seen the move yet.
        floor = max(1, lowest - 2 * self.settle_window)
        if current.recovering:
            floor = min(floor, current.recovery_floor)
        moved_at = max(int(time.time() * 1_000_000), current.moved_at_us + 2)
        epoch = current.epoch + 1
        params = (moved_at, region, epoch, moved_at, floor, box_id)
        if force:
            await self._run_home(self._cql.home_move, params, Op.CURSOR, region)
        else:
            await self._run(self._cql.home_move, params, profile_name(Op.EVERYWHERE))
        self._homes.put(box_id, region)
        return HomeRecord(region, epoch, moved_at, floor, current.purged_through)

    async def boxes_homed_in(self, region: str) -> list[uuid.UUID]:
        """Every box whose home is ``region``, as this DC holds them: a full
        scan of the box partitions (paged), for operators (failover)."""
        session = await self._db.session()
        statement = SimpleStatement(
            f"SELECT DISTINCT box_id, home_region FROM {self._settings.keyspace}.boxes",
            fetch_size=1000,
        )

        def scan() -> list[uuid.UUID]:
            rows = session.execute(statement, execution_profile=KEYS, timeout=60)
            return [box for box, home in rows if home == region]

        try:
            return await asyncio.to_thread(scan)
        except Exception as exc:
            raise translate(exc) from exc

    async def reconcile_home(self, box_id: uuid.UUID, *, wait: bool = True) -> Reconciled:
        """End a move's recovery: copy every message above the recovery
        floor from the other DCs into the home, then lift the floor.

        With ``wait`` it first lets two settle windows pass since the move,
        so operations that routed to the old home before the move's write
        have finished. Needs every other DC holding replicas to answer;
        otherwise it raises and the box stays in recovery (safe to re-run).
        """
        self._homes.forget(box_id)
        home = await self.home_of(box_id)
        if home is None:
            raise NotFound("no such box")
        record = await self.home_record(box_id, home)
        if record is None:
            raise NotFound("no such box")
        if not record.recovering:
            return Reconciled(home, 0, (), False)
        if wait:
            ready = record.moved_at_us / 1_000_000 + 2 * self._settings.settle_seconds
            await asyncio.sleep(max(0.0, ready - time.time()))
        sources = tuple(dc for dc, rf in self._topology.replication if rf > 0 and dc != home)
        lower = max(record.recovery_floor, record.purged_through, self._horizon())
        upper = self._upper()
        copied = 0
        for dc in sources:
            after = lower
            while True:
                try:
                    page = await self._read(box_id, dc, after, upper, 500)
                except StoreUnavailable as exc:
                    raise StoreUnavailable(
                        f"store: cannot reconcile from {dc} yet: {exc}", applied=False
                    ) from exc
                for m in page:
                    ttl = math.ceil(self.options.message_ttl - (time.time() - time_of(m.position)))
                    if ttl <= 0:
                        continue
                    await self._run_home(
                        self._cql.message_insert,
                        (
                            box_id,
                            bucket_of(m.position),
                            m.position,
                            m.message_id,
                            m.sender_box,
                            m.sender_device,
                            m.ciphertext,
                            ttl,
                        ),
                        Op.QUEUE,
                        home,
                    )
                    copied += 1
                if len(page) < 500:
                    break
                after = page[-1].position
        await self._run_home(
            self._cql.recovery_clear, (record.moved_at_us + 1, box_id), Op.CURSOR, home
        )
        return Reconciled(home, copied, sources, True)

    # -- lifecycle -----------------------------------------------------------

    async def _schema_version(self) -> int | None:
        """The recorded version, or None when nothing was ever recorded."""
        try:
            rows = await self._run(self._cql.version_get, (COMPONENT,), SCHEMA)
        except FailedPrecondition as exc:
            if exc.reason == "SCHEMA_MISSING":
                return None
            raise
        return int(rows[0][0]) if rows else None

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
        if not rows or not rows[0][0]:
            return
        actual = tuple(
            sorted((dc, int(rf)) for dc, rf in rows[0][0].items() if dc != "class" and rf.isdigit())
        )
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

    # -- contacts ----------------------------------------------------------

    async def lookup_contact(self, contact_hash: bytes) -> uuid.UUID | None:
        rows = await self._run(self._cql.contact_get, (contact_hash,), CONTACTS)
        return rows[0]["box_id"] if rows else None

    async def claim_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> uuid.UUID:
        async with self._locks.hold(("contact", contact_hash)):
            for attempt in range(CLAIM_TRIES):
                try:
                    rows = await self._run(
                        self._cql.contact_claim, (contact_hash, box_id), CONTACTS
                    )
                    break
                except StoreUnavailable as exc:
                    # Racing claims from other regions contend in one Paxos
                    # round across DCs and can time out with the outcome
                    # unknown; the claim is idempotent for our own box, so
                    # ask again (after a jittered pause) to learn the winner.
                    if exc.applied is False or attempt == CLAIM_TRIES - 1:
                        raise
                    await asyncio.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
        row = rows[0]
        owner: uuid.UUID = box_id if row[APPLIED] else row["box_id"]
        return owner

    async def release_contact(self, contact_hash: bytes, box_id: uuid.UUID) -> None:
        async with self._locks.hold(("contact", contact_hash)):
            await self._run(self._cql.contact_release, (contact_hash, box_id), CONTACTS)

    # -- registrations -------------------------------------------------------

    def _registration_ttl(self, expires_at: float, created_at: float | None = None) -> int:
        end = expires_at
        if created_at is not None:
            end = min(end, created_at + self.options.registration_ttl)
        return max(1, math.ceil(end - self.options.clock()))

    async def put_registration(self, registration: Registration) -> None:
        r = registration
        ttl = self._registration_ttl(r.expires_at, r.created_at)
        values = (
            r.box_id,
            list(r.contact_hashes),
            list(r.code_hashes),
            r.keys.encryption_key,
            r.keys.signing_key,
            r.keys.key_signature,
            r.device_name,
            r.created_at,
            r.expires_at,
            r.sent_at,
            r.attempts,
            r.completed,
        )
        async with self._locks.hold(("registration", r.device_id)):
            for _ in range(CAS_ROUNDS):
                rows = await self._run(
                    self._cql.registration_insert, (r.device_id, *values, ttl), REGISTRATIONS
                )
                if rows[0][APPLIED]:
                    return
                rows = await self._run(
                    self._cql.registration_replace, (ttl, *values, r.device_id), REGISTRATIONS
                )
                if rows[0][APPLIED]:
                    return
        raise StoreUnavailable("store: registration kept changing under us", applied=False)

    async def get_registration(self, device_id: uuid.UUID) -> Registration | None:
        rows = await self._run(self._cql.registration_get, (device_id,), REGISTRATIONS)
        if not rows:
            return None
        row = rows[0]
        if row["box_id"] is None or row["expires_at"] is None:
            return None
        lifetime_end = row["expires_at"]
        if row["created_at"] is not None:
            lifetime_end = min(lifetime_end, row["created_at"] + self.options.registration_ttl)
        if lifetime_end <= self.options.clock():
            return None
        return Registration(
            device_id=row["device_id"],
            box_id=row["box_id"],
            contact_hashes=tuple(row["contact_hashes"] or ()),
            code_hashes=tuple(row["code_hashes"] or ()),
            keys=DeviceKeys(
                encryption_key=row["encryption_key"] or b"",
                signing_key=row["signing_key"] or b"",
                key_signature=row["key_signature"] or b"",
            ),
            device_name=row["device_name"] or "",
            created_at=row["created_at"] or 0.0,
            expires_at=row["expires_at"],
            sent_at=row["sent_at"] or 0.0,
            attempts=row["attempts"] or 0,
            completed=bool(row["completed"]),
        )

    async def reserve_attempt(self, device_id: uuid.UUID, *, expires_at: float, limit: int) -> int:
        async with self._locks.hold(("registration", device_id)):
            current = await self.get_registration(device_id)
            if current is None or current.expires_at != expires_at:
                raise NotFound("no such pending registration for this device")

            async def cas(attempts: int, version: Any) -> dict[str, Any]:
                rows = await self._run(
                    self._cql.registration_attempt,
                    (self._registration_ttl(version), attempts + 1, device_id, attempts, version),
                    REGISTRATIONS,
                )
                return dict(rows[0])

            return await reserve(
                current.attempts,
                expires_at,
                cas,
                limit=limit,
                version_column="expires_at",
                what="registration",
            )

    async def complete_registration(self, device_id: uuid.UUID) -> None:
        async with self._locks.hold(("registration", device_id)):
            current = await self.get_registration(device_id)
            if current is None:
                raise NotFound("no pending registration for this device")
            expires_at = current.expires_at
            for _ in range(CAS_ROUNDS):
                if expires_at <= self.options.clock():
                    raise NotFound("no pending registration for this device")
                rows = await self._run(
                    self._cql.registration_complete,
                    (self._registration_ttl(expires_at), device_id, expires_at),
                    REGISTRATIONS,
                )
                row = rows[0]
                if row[APPLIED]:
                    return
                if row.get("expires_at") is None:
                    raise NotFound("no pending registration for this device")
                expires_at = row["expires_at"]
        raise StoreUnavailable("store: registration too contended", applied=False)

    # -- boxes, devices, profiles -----------------------------------------

    async def _device_row(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Any | None:
        rows = await self._run(self._cql.device_get, (box_id, device_id), KEYS)
        return rows[0] if rows and rows[0][0] is not None else None

    async def _box_exists(self, box_id: uuid.UUID) -> bool:
        rows = await self._run(self._cql.box_get, (box_id,), KEYS)
        return bool(rows) and rows[0][0] is not None

    async def _write_device(
        self, device: Device, home: str, *, with_box: Box | None = None
    ) -> None:
        """One single-partition batch: atomic, so a box never exists
        without its first device, nor a device without its cursor. Written
        in the box's home DC, where the queue operations read cursors."""
        start = self._positions.head()
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        if with_box is not None:
            p = Profile(box_id=with_box.box_id)
            batch.add(
                await self._db.prepare(self._cql.box_insert),
                (
                    with_box.box_id,
                    with_box.home_region,
                    with_box.created_at,
                    p.display_name,
                    p.description,
                    p.avatar_ref,
                    p.discoverable,
                    p.accept_from,
                ),
            )
        batch.add(
            await self._db.prepare(self._cql.device_insert),
            (
                device.box_id,
                device.device_id,
                device.name,
                device.keys.encryption_key,
                device.keys.signing_key,
                device.keys.key_signature,
                device.hawk_key,
                device.state.value,
                device.created_at,
                start,
            ),
        )
        batch.add(
            await self._db.prepare(self._cql.cursor_set),
            (write_timestamp(start), start, device.box_id, device.device_id),
        )
        await self._run_home(batch, None, Op.CURSOR, home)

    async def create_box(self, box: Box, first_device: Device) -> None:
        if await self._device_row(box.box_id, first_device.device_id) is not None:
            return  # a retry of a creation that landed
        if await self._box_exists(box.box_id):
            raise AlreadyExists("box already exists")
        home = self._route(box.home_region)
        await self._write_device(first_device, home, with_box=box)
        self._homes.put(box.box_id, home)

    async def get_box(self, box_id: uuid.UUID) -> Box | None:
        rows = await self._run(self._cql.box_get, (box_id,), KEYS)
        if not rows or rows[0][0] is None:
            return None
        self._homes.put(box_id, self._route(rows[0][0]))
        return Box(box_id=box_id, home_region=rows[0][0], created_at=rows[0][1] or 0.0)

    async def add_device(self, device: Device) -> None:
        if not await self._box_exists(device.box_id):
            raise NotFound("no such box")
        if await self._device_row(device.box_id, device.device_id) is not None:
            return  # a retry; never resurrect a revoked device or move a cursor
        home = await self.home_of(device.box_id) or self._settings.local_dc
        await self._write_device(device, home)

    async def get_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        row = await self._device_row(box_id, device_id)
        return _device(box_id, row) if row is not None else None

    async def list_devices(self, box_id: uuid.UUID) -> list[Device]:
        rows = await self._run(self._cql.devices_all, (box_id,), KEYS)
        devices = [
            _device(box_id, r) for r in rows if r[0] is not None and r[6] == DeviceState.ACTIVE
        ]
        devices.sort(key=lambda d: (d.created_at, d.device_id.bytes))
        return devices

    async def _active_device_row(self, box_id: uuid.UUID, device_id: uuid.UUID) -> Any:
        row = await self._device_row(box_id, device_id)
        if row is None or row[6] != DeviceState.ACTIVE:
            raise NotFound("no such device")
        return row

    async def rotate_device_keys(
        self, box_id: uuid.UUID, device_id: uuid.UUID, keys: DeviceKeys
    ) -> None:
        await self._active_device_row(box_id, device_id)
        await self._run(
            self._cql.device_keys,
            (keys.encryption_key, keys.signing_key, keys.key_signature, box_id, device_id),
            KEYS,
        )

    async def set_hawk_key(self, box_id: uuid.UUID, device_id: uuid.UUID, hawk_key: bytes) -> None:
        # Device rows are never deleted, so the read cannot race a delete
        # into an UPDATE that would create a partial row.
        if await self._device_row(box_id, device_id) is None:
            raise NotFound("no such device")
        await self._run(self._cql.device_hawk_key, (hawk_key, box_id, device_id), KEYS)

    async def _devices_rest(self, box_id: uuid.UUID, device_id: uuid.UUID) -> list[Device]:
        """The devices of one box after ``device_id`` (a box has few)."""
        rows = await self._run(self._cql.devices_rest, (box_id, device_id), KEYS)
        return [_device(box_id, r) for r in rows if r[0] is not None]

    async def device_page(
        self, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int
    ) -> list[Device]:
        """Token order of the box partitions, device order within one. A
        range read's LIMIT may cut a partition, so the rest of the last one
        read is fetched on its own before the scan moves past its token; a
        box partition without devices (static columns only) reads as one
        row without a device id and is skipped."""
        out: list[Device] = []
        box: uuid.UUID | None = None
        if after is not None:
            box = after[0]
            out += await self._devices_rest(after[0], after[1])
        while len(out) < limit:
            if box is None:
                rows = await self._run(self._cql.devices_first, (limit,), KEYS)
            else:
                rows = await self._run(self._cql.devices_scan, (box, limit), KEYS)
            out += [_device(r[0], r[1:]) for r in rows if r[1] is not None]
            if not rows:
                break
            box, last_device = rows[-1][0], rows[-1][1]
            if last_device is not None:
                out += await self._devices_rest(box, last_device)
            if len(rows) < limit:
                break
        return out[:limit]

    async def revoke_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> None:
        row = await self._device_row(box_id, device_id)
        if row is None:
            raise NotFound("no such device")
        if row[6] == DeviceState.REVOKED:
            return
        await self._run(
            self._cql.device_state, (DeviceState.REVOKED.value, box_id, device_id), KEYS
        )

    async def get_profile(self, box_id: uuid.UUID) -> Profile | None:
        rows = await self._run(self._cql.profile_get, (box_id,), KEYS)
        if not rows or rows[0][0] is None:
            return None
        _, name, description, avatar, discoverable, accept_from = rows[0]
        defaults = Profile(box_id=box_id)
        return Profile(
            box_id=box_id,
            display_name=name if name is not None else defaults.display_name,
            description=description if description is not None else defaults.description,
            avatar_ref=avatar if avatar is not None else defaults.avatar_ref,
            discoverable=discoverable if discoverable is not None else defaults.discoverable,
            accept_from=accept_from if accept_from is not None else defaults.accept_from,
        )

    async def put_profile(self, profile: Profile) -> None:
        if not await self._box_exists(profile.box_id):
            raise NotFound("no such box")
        await self._run(
            self._cql.profile_put,
            (
                profile.display_name,
                profile.description,
                profile.avatar_ref,
                profile.discoverable,
                profile.accept_from,
                profile.box_id,
            ),
            KEYS,
        )

    # -- the queue -----------------------------------------------------------
    #
    # Every operation below is coordinated in the box's home DC (``_view``
    # finds it and fences stale routes); see docs/replication.md.

    async def _count(self, box_id: uuid.UUID, home: str, floor: Position, cap: int) -> int:
        """Rows in (max(floor, horizon), upper], counted by the server per
        bucket, stopping once past ``cap``. Reads above ``floor`` only, so the
        cost is the rows actually counted, never compacted ones."""
        lower = max(floor, self._horizon())
        upper = self._upper()
        total = 0
        for bucket in range(bucket_of(lower + 1), bucket_of(upper) + 1):
            rows = await self._run_home(
                self._cql.message_count, (box_id, bucket, lower, upper), Op.QUEUE, home
            )
            total += int(rows[0][0]) if rows else 0
            if total > cap:
                return cap + 1
        return total

    async def pending_count(self, box_id: uuid.UUID) -> int:
        home, rows = await self._view(box_id)
        purged = int(rows[0][10] or 0) if rows else 0
        return await self._count(box_id, home, purged, self.options.pending_cap)

    @staticmethod
    def _undelivered_floor(rows: list[Any]) -> tuple[Position, Position]:
        """(purged_through, lowest position some active device still waits
        above). The cap counts undelivered messages: those above the lowest
        active cursor. Acked-but-not-yet-compacted rows (the settle window's
        worth, and whatever compaction lags) are delivered, and counting
        them would make every send to a busy box pay for its recent
        traffic."""
        purged = int(rows[0][10] or 0) if rows else 0
        cursors = [int(r[9] or 0) for r in rows if r[0] is not None and r[6] == DeviceState.ACTIVE]
        return purged, max(purged, min(cursors)) if cursors else purged

    async def _known(self, box_id: uuid.UUID, home: str, message_id: uuid.UUID) -> Position | None:
        """Where an earlier attempt queued (or is queueing) this message id."""
        rows = await self._run_home(self._cql.id_get, (box_id, message_id), Op.QUEUE, home)
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _row_exists(
        self, box_id: uuid.UUID, home: str, position: Position, message_id: uuid.UUID
    ) -> bool:
        rows = await self._run_home(
            self._cql.message_exists,
            (box_id, bucket_of(position), position, message_id),
            Op.QUEUE,
            home,
        )
        return bool(rows)

    async def _point(
        self, box_id: uuid.UUID, home: str, message_id: uuid.UUID
    ) -> tuple[Position, float]:
        """Issue a fresh position and record it as the id's, before any row.

        Answers (position, the deadline its row must be acknowledged by).
        A plain write: attempts that overlap in time may each point the id
        at their own position and both place a row; those copies lie within
        one budget of each other and Fetch hands out only the first
        (docs/store.md, "Idempotent enqueue without Paxos").
        """
        position = self._positions.issue()
        deadline = time.monotonic() + self._budget()
        await self._run_home(
            self._cql.id_put,
            (box_id, message_id, position, self._message_ttl()),
            Op.QUEUE,
            home,
            deadline=deadline,
        )
        return position, deadline

    async def _place(
        self,
        box_id: uuid.UUID,
        home: str,
        message: NewMessage,
        position: Position,
        deadline: float,
    ) -> Position:
        """Write the queue row at the recorded position.

        The row must be acknowledged within the request timeout of its
        position's time (the settle-window argument). If recording the id
        already spent half the budget, the id moves to a fresh position first.
        """
        for _ in range(4):
            if deadline - time.monotonic() >= self._budget() / 2:
                await self._run_home(
                    self._cql.message_insert,
                    (
                        box_id,
                        bucket_of(position),
                        position,
                        message.message_id,
                        message.sender_box,
                        message.sender_device,
                        message.ciphertext,
                        self._message_ttl(),
                    ),
                    Op.QUEUE,
                    home,
                    deadline=deadline,
                )
                return position
            position, deadline = await self._point(box_id, home, message.message_id)
        raise StoreUnavailable("store: too slow to place the message in time", applied=False)

    async def _enqueue_retry(
        self,
        box_id: uuid.UUID,
        home: str,
        message: NewMessage,
        known: Position,
        purged: Position,
    ) -> Enqueued:
        """An earlier attempt recorded this message id at ``known``."""
        if known <= max(purged, self._horizon()):
            return Enqueued(known, duplicate=True)  # delivered and compacted, or expired
        if await self._row_exists(box_id, home, known, message.message_id):
            return Enqueued(known, duplicate=True)
        # The row is missing: the earlier attempt is still writing, or died
        # between recording the id and writing the row. Give it the rest of
        # its budget; after that its row can no longer be acknowledged.
        age = max(0.0, time_of(self._positions.now()) - time_of(known))
        wait_until = time.monotonic() + max(0.0, self._budget() - age)
        while time.monotonic() < wait_until:
            await asyncio.sleep(POLL)
            if await self._row_exists(box_id, home, known, message.message_id):
                return Enqueued(known, duplicate=True)
        position, deadline = await self._point(box_id, home, message.message_id)
        return Enqueued(await self._place(box_id, home, message, position, deadline), False)

    async def _pending_view(
        self, box_id: uuid.UUID, home: str, message_id: uuid.UUID
    ) -> tuple[str, list[Any], Position | None, int | None]:
        """The reads an enqueue needs, side by side (one round trip in
        sequence): the box view (the home fence, cursors, purge mark), the
        message id's record and, unless the box's estimate will do
        (``PendingEstimates``), a count of its queued rows from the floor of
        the last count: a lower floor only counts more, so a count from it that
        reaches the cap is redone from the fresh floor here."""
        cap = self.options.pending_cap
        need_count = self._pending.usable(box_id, cap) is None
        floor = self._pending.floor(box_id)
        # Without any earlier count there is no floor to count from (from 0
        # a count would read a month of day buckets): count after the view.
        early = need_count and floor > 0
        (fresh_home, rows), known, counted = await asyncio.gather(
            self._view(box_id),
            self._known(box_id, home, message_id),
            self._count(box_id, home, floor, cap) if early else _nothing(),
        )
        if fresh_home != home:  # the fence moved the box: ask its new home
            known = await self._known(box_id, fresh_home, message_id)
            early = False
        fresh_floor = self._undelivered_floor(rows)[1]
        stale = early and counted is not None and counted >= cap
        if known is None and need_count and (not early or stale):
            # No count yet, or one from an old floor that reached the cap:
            # count from the fresh floor before anything is refused.
            counted = await self._count(box_id, fresh_home, fresh_floor, cap)
        return fresh_home, rows, known, counted

    async def enqueue(self, box_id: uuid.UUID, message: NewMessage) -> Enqueued:
        # Attempts of one id in this process queue here, so they never race
        # each other; only attempts in different processes can overlap.
        async with self._locks.hold(("enqueue", box_id, message.message_id)):
            home = await self.home_of(box_id) or self._settings.local_dc
            home, rows, known, counted = await self._pending_view(box_id, home, message.message_id)
            purged, floor = self._undelivered_floor(rows)
            # A retry is answered before the cap: the message is already queued.
            if known is not None:
                return await self._enqueue_retry(box_id, home, message, known, purged)
            cap = self.options.pending_cap
            if counted is not None:
                self._pending.counted(box_id, counted, floor)
                if counted >= cap:
                    raise PendingCapExceeded(f"box holds {cap} undelivered messages")
            position, deadline = await self._point(box_id, home, message.message_id)
            placed = await self._place(box_id, home, message, position, deadline)
            self._pending.queued(box_id)
            return Enqueued(placed, False)

    async def _read(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position, want: int
    ) -> list[StoredMessage]:
        """Up to ``want`` messages in (lower, upper], bucket by bucket."""
        out: list[StoredMessage] = []
        for bucket in range(bucket_of(lower + 1), bucket_of(upper) + 1):
            if len(out) >= want:
                break
            rows = await self._run_home(
                self._cql.message_range,
                (box_id, bucket, lower, upper, min(want - len(out), MAX_LIMIT)),
                Op.QUEUE,
                home,
            )
            for position, message_id, sender_box, sender_device, ciphertext in rows:
                out.append(
                    StoredMessage(
                        position=position,
                        message_id=message_id,
                        sender_box=sender_box,
                        sender_device=sender_device,
                        received_at=time_of(position),
                        ciphertext=ciphertext or b"",
                    )
                )
        return out

    async def _queue_device(self, box_id: uuid.UUID, device_id: uuid.UUID) -> tuple[str, Any]:
        """(home, the active device's row read in the home DC) or NotFound."""
        home, rows = await self._view(box_id, device_id)
        row = rows[0] if rows and rows[0][0] is not None else None
        if row is None or row[6] != DeviceState.ACTIVE:
            raise NotFound("no such device")
        return home, row

    async def fetch(
        self,
        box_id: uuid.UUID,
        device_id: uuid.UUID,
        *,
        after: Position = 0,
        limit: int = 100,
    ) -> Page:
        home, row = await self._queue_device(box_id, device_id)
        cursor, start, purged = int(row[9] or 0), int(row[8] or 0), int(row[10] or 0)
        reread = cursor - self.settle_window
        recovery = int(row[V_RECOVERY] or 0)
        if recovery > 0:
            # The box's home moved and the old home may still hold messages
            # acknowledged there and not replicated yet: re-read from the
            # recovery floor until `reconcile` has copied them over.
            reread = min(reread, recovery)
        floor = max(reread, start, purged, self._horizon())
        lower = max(after, floor)
        limit = max(0, limit)
        # Copies of one id from overlapping Send attempts lie within a
        # settle window of each other; only the first is handed out. When
        # the page starts above the window's floor, the ids just below it
        # are read too, so a copy is dropped even on a later page.
        # Like every queue read, it stops at the read bound: nothing lies
        # above it, and a page token past it (any uint64) must not reach CQL.
        upper = self._upper()
        below, ids_upper = max(floor, lower - self.settle_window), min(lower, upper)
        found, earlier = await asyncio.gather(
            self._read(box_id, home, lower, upper, limit + 1),
            self._ids_in(box_id, home, below, ids_upper) if below < ids_upper else _nothing(),
        )
        seen: set[uuid.UUID] = earlier or set()
        kept = []
        for m in found:
            if m.message_id not in seen:
                seen.add(m.message_id)
                kept.append(m)
        if len(kept) > limit or len(found) <= limit:
            return Page(messages=kept[:limit], more=len(kept) > limit, cursor=cursor)
        # Copies were dropped from a full read: every row up to the last one
        # read was either returned or dropped, so the next page starts there.
        return Page(messages=kept, more=True, cursor=cursor, read_through=found[-1].position)

    async def _ids_in(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position
    ) -> set[uuid.UUID]:
        """Message ids queued in (lower, upper] (no ciphertext read out)."""
        ids: set[uuid.UUID] = set()
        for bucket in range(bucket_of(lower + 1), bucket_of(upper) + 1):
            rows = await self._run_home(
                self._cql.message_ids_range, (box_id, bucket, lower, upper), Op.QUEUE, home
            )
            ids.update(r[1] for r in rows)
        return ids

    async def _top(
        self, box_id: uuid.UUID, home: str, lower: Position, upper: Position
    ) -> Position:
        """The highest queued position in (lower, upper], or 0. Reads down
        from ``upper`` and stops at ``lower`` (never into compacted rows)."""
        for bucket in range(bucket_of(upper), bucket_of(lower + 1) - 1, -1):
            rows = await self._run_home(
                self._cql.message_top, (box_id, bucket, lower, upper), Op.QUEUE, home
            )
            if rows:
                return int(rows[0][0])
        return 0

    async def ack(self, box_id: uuid.UUID, device_id: uuid.UUID, through: Position) -> Position:
        home, row = await self._queue_device(box_id, device_id)
        cursor, purged = int(row[9] or 0), int(row[10] or 0)
        head = self._positions.head()
        target = through
        if through > head:
            # Beyond this clock's head: clamp to the last position issued,
            # which may be a bit ahead of our clock when another writer's
            # runs ahead (or a burst outran the clock).
            # Nothing can be queued above the read bound (a writer further
            # ahead is outside the skew the settle window tolerates).
            ceiling = min(through, self._upper())
            top = await self._top(box_id, home, max(cursor, purged, head), ceiling)
            target = max(head, top)
        if target <= cursor:
            return cursor
        await self._run_home(
            self._cql.cursor_set,
            (write_timestamp(target), target, box_id, device_id),
            Op.CURSOR,
            home,
        )
        return target

    async def compact(self, box_id: uuid.UUID) -> Compaction:
        home, rows = await self._view(box_id)
        devices = [r for r in rows if r[0] is not None]
        purged = int(rows[0][10] or 0) if rows else 0
        if not devices:
            return Compaction(purged_through=purged, removed=0)
        active = [int(r[9] or 0) for r in devices if r[6] == DeviceState.ACTIVE]
        floor = min(active) if active else self._positions.head()
        threshold = floor - self.settle_window
        recovery = int(rows[0][V_RECOVERY] or 0)
        if recovery > 0:
            # Never delete where a recovering box may still receive rows
            # from its old home (they would be shadowed by the tombstone).
            threshold = min(threshold, recovery)
        if threshold <= purged:
            return Compaction(purged_through=purged, removed=0)
        # Lowest position that can hold a row: nothing is older than the
        # box's first device (less a settle window for skewed writers).
        oldest = min(int(r[8] or 0) for r in devices) - self.settle_window
        first = max(purged, self._horizon(), oldest, 0)
        last = bucket_of(threshold)
        for bucket in range(bucket_of(first), last):
            await self._run_home(self._cql.messages_delete_bucket, (box_id, bucket), Op.QUEUE, home)
        await self._run_home(
            self._cql.messages_delete_below, (box_id, last, threshold), Op.QUEUE, home
        )
        await self._run_home(
            self._cql.purged_set, (write_timestamp(threshold), threshold, box_id), Op.CURSOR, home
        )
        return Compaction(purged_through=threshold, removed=None)
