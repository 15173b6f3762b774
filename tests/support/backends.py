"""The store backends every backend-parametrized test runs on.

``-k "not cassandra"`` (or ``-m "not cassandra"``) runs the SQLite half
alone; the Cassandra half needs the session's cluster (tests/conftest.py).
"""

from __future__ import annotations

import pytest

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("cassandra", id="cassandra", marks=pytest.mark.cassandra),
]

#: Backends whose rows expire by themselves (Cassandra's TTLs): their
#: ``purge_expired`` and ``purge_presence`` have nothing to remove and answer
#: 0. The others (SQLite) delete expired rows there and count them. The Store
#: contract does not declare this (rossby/store/base.py); tests need it to
#: know what a purge must answer.
EXPIRES_NATIVELY = {"sqlite": False, "cassandra": True}


def purged(backend: str, expired: int) -> int:
    """What a purge must answer on ``backend`` when ``expired`` rows are due."""
    return 0 if EXPIRES_NATIVELY[backend] else expired
