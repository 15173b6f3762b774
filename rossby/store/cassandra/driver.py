"""The asyncio side of cassandra-driver.

The driver runs its own I/O thread (libev) and completes requests there;
``call_soon_threadsafe`` hands each answer to the caller's loop. The
``Cluster`` is built on first use, in a worker thread (connecting blocks),
so opening a store never blocks and a forked worker builds its own instead
of sharing its parent's sockets and threads.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Sequence
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from rossby.errors import StoreUnavailable
from rossby.store.base import Connection
from rossby.store.cassandra.config import Settings, execution_profiles
from rossby.store.cassandra.errors import DeadlineExceeded, translate

#: Native protocol v4, not v5: the driver's v5 framing (checksummed segments)
#: failed fresh connections three times in two full test runs with "CRC mismatch on
#: header" while reading the schema (PYTHON-1337; not reproduced in isolation).
#: v4 frames carry no checksum of their own (TCP's and TLS's remain); v5's
#: result-metadata id only matters for SELECT *, which no statement here uses.
PROTOCOL_VERSION = 4
CONNECT_TIMEOUT = 5.0


class Bridge:
    """One lazily connected session, its prepared statements and an
    in-flight bound (past the client's CPU saturation, more concurrency only
    adds queueing delay, and a queued write eats into the settle window)."""

    def __init__(self, settings: Settings, connection: Connection | None = None) -> None:
        self._settings = settings
        self._connection = connection or Connection()
        self._cluster: Any = None
        self._session: Any = None
        self._pid = os.getpid()
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._prepared: dict[str, Any] = {}
        self._closed = False
        #: When a list, every request is traced and its response future
        #: appended (tests and the tombstone bench read the traces).
        self.traces: list[Any] | None = None

    def _forget_if_forked(self) -> None:
        if os.getpid() != self._pid:
            # The parent's driver threads did not survive the fork; its
            # sockets belong to the parent. Start over without touching them.
            self._pid = os.getpid()
            self._cluster = self._session = None
            self._prepared = {}
            self._lock = asyncio.Lock()
            self._slots = asyncio.Semaphore(self._settings.max_in_flight)

    def _connect_blocking(self) -> tuple[Any, Any]:
        s, c = self._settings, self._connection
        auth = PlainTextAuthProvider(c.username, c.password) if c.username else None
        cluster = Cluster(
            contact_points=list(s.hosts),
            port=s.port,
            execution_profiles=execution_profiles(s),
            protocol_version=PROTOCOL_VERSION,
            connect_timeout=CONNECT_TIMEOUT,
            control_connection_timeout=CONNECT_TIMEOUT,
            auth_provider=auth,
            ssl_context=ssl_context(c) if c.tls else None,
        )
        try:
            session = cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise
        # Every query carries a LIMIT (or touches one partition of a handful
        # of rows); paging would only hide a missing bound.
        session.default_fetch_size = None
        self._await_pools(cluster, session)
        return cluster, session

    def _await_pools(self, cluster: Any, session: Any) -> None:
        """``connect`` returns once the *first* host's pool is up. A store
        that routes to several DCs needs each one's pool, or its first
        request to another DC fails with "Host has been marked down or
        removed"; wait (boundedly) for the pools of every live host of the
        DCs it routes to."""
        dcs = set(self._settings.topology.datacenters)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while time.monotonic() < deadline:
            pooled = {pool.host for pool in session.get_pools()}
            wanted = {
                h
                for h in cluster.metadata.all_hosts()
                if h.datacenter in dcs and h.is_up is not False
            }
            if wanted <= pooled:
                return
            time.sleep(0.01)

    async def session(self) -> Any:
        self._forget_if_forked()
        if self._session is not None:
            return self._session
        async with self._lock:
            if self._closed:
                raise StoreUnavailable("store: closed", applied=False)
            if self._session is None:
                try:
                    self._cluster, self._session = await asyncio.to_thread(self._connect_blocking)
                except Exception as exc:
                    raise self._explain(translate(exc)) from exc
        return self._session

    def _explain(self, exc: BaseException) -> BaseException:
        """A node that requires TLS drops a plaintext client without a word
        (the driver sees a reset or a closed connection); say what that
        most likely means when TLS is off here."""
        if (
            isinstance(exc, StoreUnavailable)
            and exc.reason == "STORE_UNAVAILABLE"
            and not self._connection.tls
            and any(word in str(exc) for word in ("reset by peer", "Connection", "closed"))
        ):
            return StoreUnavailable(
                f"{exc} (the nodes closed a plaintext connection: if the cluster requires "
                "TLS, set cassandra_tls_ca)",
                applied=False,
            )
        return exc

    async def prepare(self, cql: str) -> Any:
        stmt = self._prepared.get(cql)
        if stmt is None:
            session = await self.session()
            try:
                stmt = await asyncio.to_thread(session.prepare, cql)
            except Exception as exc:
                raise translate(exc) from exc
            self._prepared[cql] = stmt
        return stmt

    async def execute(
        self,
        query: Any,
        params: Sequence[Any] | None = None,
        *,
        profile: str,
        deadline: float | None = None,
    ) -> list[Any]:
        """Run one statement; answer its rows (first page; queries are bounded).

        ``deadline`` (``time.monotonic()``) caps the request's timeout at the
        time left, measured after waiting for a slot: a write that must be
        visible within a budget may not spend it queueing here.
        """
        if isinstance(query, str):
            query = await self.prepare(query)
        session = await self.session()
        async with self._slots:
            kwargs: dict[str, Any] = {"execution_profile": profile}
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise translate(DeadlineExceeded("time budget spent before sending"))
                kwargs["timeout"] = left
            if self.traces is not None:
                kwargs["trace"] = True
            loop = asyncio.get_running_loop()
            done: asyncio.Future[list[Any]] = loop.create_future()

            def ok(rows: Any) -> None:
                try:
                    loop.call_soon_threadsafe(_settle, done, rows, None)
                except RuntimeError:  # the loop closed while we waited
                    pass

            def failed(exc: BaseException) -> None:
                try:
                    loop.call_soon_threadsafe(_settle, done, None, exc)
                except RuntimeError:
                    pass

            try:
                future = session.execute_async(query, params, **kwargs)
            except Exception as exc:
                raise translate(exc) from exc
            if self.traces is not None:
                self.traces.append(future)
            future.add_callbacks(ok, failed)
            try:
                return await done
            except Exception as exc:
                raise translate(exc) from exc

    async def wait_for_schema_agreement(self, wait: float = 60.0) -> bool:
        await self.session()
        control = self._cluster.control_connection
        return bool(await asyncio.to_thread(control.wait_for_schema_agreement, wait_time=wait))

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            cluster, self._cluster, self._session = self._cluster, None, None
            if cluster is not None and self._pid == os.getpid():
                await asyncio.to_thread(cluster.shutdown)


def ssl_context(connection: Connection) -> ssl.SSLContext:
    """A client context that trusts only ``tls_ca`` (not the system store:
    a cluster's CA is private), presents ``tls_cert`` when given, and checks
    that each node's certificate names the address it is dialled at unless
    ``tls_check_hostname`` is off. The driver passes the node's address as
    the server name whenever the context checks hostnames, so certificates
    need the nodes' IP addresses (or the names in the contact points) as
    subject alternative names."""
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=connection.tls_ca)
        if connection.tls_cert:
            context.load_cert_chain(connection.tls_cert, connection.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StoreUnavailable(
            f"store TLS: cannot load the CA or client certificate: {exc}",
            applied=False,
            reason="STORE_TLS_FAILED",
        ) from None
    context.check_hostname = connection.tls_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _settle(done: asyncio.Future[list[Any]], rows: Any, exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(list(rows) if rows is not None else [])
