"""Two regions on the session's two-datacenter Cassandra.

One keyspace replicated to both DCs (``dc1:1,dc2:1``), migrated once; a
store URL per region (dc1 through 127.0.0.1, dc2 through 127.0.0.2). The
servers of these tests are real ``rossby serve`` subprocesses, one per
region, sharing one state dir (the shared secrets) and one outbox.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import migrate_in_thread
from tests.conftest import CassandraCluster, cassandra_url

KEYSPACE = "rossby_geo"
REPLICATION = "dc1:1,dc2:1"


class Regions:
    """Store URLs of the two regions over one keyspace."""

    def __init__(self, cluster: CassandraCluster, keyspace: str = KEYSPACE) -> None:
        self.cluster = cluster
        self.keyspace = keyspace

    def url(self, dc: str, **params: str) -> str:
        return cassandra_url(
            self.cluster.hosts(dc), self.keyspace, local_dc=dc, replication=REPLICATION, **params
        )


@pytest.fixture(scope="session")
def regions(cassandra_cluster: CassandraCluster) -> Regions:
    out = Regions(cassandra_cluster)
    migrate_in_thread(out.url("dc1"))
    return out
