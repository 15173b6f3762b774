"""``StoreOptions`` from the server's ``Settings``.

Everything that opens a store from a configuration (the server, ``rossby
migrate`` and ``rotate-keys``, ``rossby admin``, the ``--workers``
preflight) needs the same options; they live with the store so none of
those has to import the server to get them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rossby.settings import EXPIRED_GRACE, Settings
from rossby.store.base import Connection, StoreOptions


def store_options(settings: Settings, clock: Callable[[], float] = time.time) -> StoreOptions:
    """The store's half of the settings. A registration row outlives its code
    by ``EXPIRED_GRACE``, so a late Authorize hears CODE_EXPIRED."""
    return StoreOptions(
        message_ttl=settings.message_ttl,
        pending_cap=settings.pending_cap,
        registration_ttl=float(settings.code_ttl) + EXPIRED_GRACE,
        clock=clock,
        connection=Connection(
            username=settings.cassandra_username,
            password=settings.cassandra_password,
            tls_ca=settings.cassandra_tls_ca,
            tls_cert=settings.cassandra_tls_cert,
            tls_key=settings.cassandra_tls_key,
            tls_check_hostname=settings.cassandra_tls_check_hostname,
        ),
    )


__all__ = ["store_options"]
