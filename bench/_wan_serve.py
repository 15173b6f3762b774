"""``rossby serve`` whose Cassandra driver reaches other DCs' nodes through a proxy.

bench/wan.py's "wan" server links: the launcher's WAN delays only the
traffic *between* Cassandra nodes, while a Rossby server's driver talks CQL
to every DC's node at its own address, undelayed. Here the driver gets an
address translator (``ROSSBY_BENCH_CQL_VIA``: ``ip=proxy_ip,...``), so the
requests it routes to another DC's node cross a Toxiproxy proxy with the
WAN's latency each way. Nothing else changes: then ``rossby.cli.main``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from cassandra import cluster
from cassandra.policies import AddressTranslator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Via(AddressTranslator):  # type: ignore[misc]  # untyped driver base class
    def __init__(self, spec: str) -> None:
        self.table = dict(part.split("=", 1) for part in spec.split(",") if part)

    def translate(self, addr: str) -> str:
        return self.table.get(addr, addr)


def patch(spec: str) -> None:
    original = cluster.Cluster.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("address_translator", Via(spec))
        original(self, *args, **kwargs)

    cluster.Cluster.__init__ = init


if __name__ == "__main__":
    patch(os.environ.get("ROSSBY_BENCH_CQL_VIA", ""))
    from rossby.cli import main

    sys.exit(main())
