"""The inter-datacenter links of one launcher cluster, through Toxiproxy.

Node ``i`` listens on ``127.0.0.i:7000`` and *broadcasts* ``127.0.1.i:7000``,
where a proxy named ``node<i>`` forwards to it. With
``prefer_local=true`` (GossipingPropertyFileSnitch), nodes of one DC
reconnect to each other's listen address, so only traffic between DCs
crosses a proxy. Cassandra 4+ sends a node's messages on connections *it*
opens, so the bytes into node ``i`` from another DC are the ``upstream``
stream of proxy ``node<i>``: a latency toxic there is the one-way delay into
that node, and a round trip between two DCs crosses two such toxics.

A partition of DC ``d`` acts on both streams of every proxy of ``d``'s
nodes: nothing from another DC reaches ``d``, no answer of ``d`` to it goes
back, and no connection is reset. By default it *stalls* (the bytes wait in
Toxiproxy and flow on at ``heal``); ``drop=True`` *drops* them (Toxiproxy's
``timeout`` 0, which closes those connections at ``heal``).

What ``d``'s nodes send on connections they open (their own writes'
replicas, gossip syns) goes through the *other* DCs' proxies, which
Toxiproxy cannot tell from the third DC's traffic: a proxy knows its
destination, not its source, and a node has one broadcast address for all
peers. So a partition is "nothing reaches ``d``", which is what makes a
write elsewhere miss ``d``; and as the other DCs get no gossip answers from
``d``, their failure detectors mark ``d`` down after a while.
"""

from __future__ import annotations

from dataclasses import dataclass

from .proxy import Toxiproxy, ToxiproxyApiError, bandwidth, blackhole, latency, stall

__all__ = ["ToxiproxyApiError", "WanLinks", "WanSettings", "api_address", "node_ip", "proxy_ip"]

STORAGE_PORT = 7000
LATENCY = "wan-latency"
BANDWIDTH = "wan-bandwidth"
PARTITION = ("partition-up", "partition-down")


def node_ip(i: int) -> str:
    return f"127.0.0.{i}"


def proxy_ip(i: int) -> str:
    """The broadcast address of node ``i``: its proxy's listen address."""
    return f"127.0.1.{i}"


def api_address(first: int) -> str:
    """The Toxiproxy API of the cluster whose first node index is ``first``."""
    return f"127.0.2.{first}:8474"


@dataclass(frozen=True)
class WanSettings:
    """One-way latency (± jitter) into every node from another DC; optional
    bandwidth cap on each node's inbound link, in KB/s (kilobytes: Toxiproxy's unit)."""

    latency_ms: float = 40.0
    jitter_ms: float = 0.0
    bandwidth_kbytes: int | None = None


class WanLinks:
    """The proxies of one cluster: ``dcs`` maps node index to its DC."""

    def __init__(self, api: str, dcs: dict[int, str]) -> None:
        self.api = Toxiproxy(api)
        self.dcs = dcs

    @staticmethod
    def proxy(i: int) -> str:
        return f"node{i}"

    def members(self, dc: str) -> list[int]:
        found = [i for i, d in sorted(self.dcs.items()) if d == dc]
        if not found:
            raise ValueError(f"no node in {dc} (DCs: {sorted(set(self.dcs.values()))})")
        return found

    def create(self, settings: WanSettings) -> None:
        """One proxy per node, then the settings' toxics on all of them."""
        for i in sorted(self.dcs):
            self.api.create(
                self.proxy(i), f"{proxy_ip(i)}:{STORAGE_PORT}", f"{node_ip(i)}:{STORAGE_PORT}"
            )
        self.set_latency(settings.latency_ms, settings.jitter_ms)
        self.set_bandwidth(settings.bandwidth_kbytes)

    def set_latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        """One-way delay into every node from another DC (0: none)."""
        for i in sorted(self.dcs):
            if ms > 0 or jitter_ms > 0:
                self.api.put(self.proxy(i), latency(LATENCY, ms, jitter_ms))
            else:
                self.api.discard(self.proxy(i), LATENCY)

    def set_bandwidth(self, kbytes_per_s: int | None) -> None:
        for i in sorted(self.dcs):
            if kbytes_per_s:
                self.api.put(self.proxy(i), bandwidth(BANDWIDTH, kbytes_per_s))
            else:
                self.api.discard(self.proxy(i), BANDWIDTH)

    def partition(self, dc: str, *, drop: bool = False) -> None:
        """Stall (``drop``: drop) every link into ``dc`` (the module doc); no reset."""
        toxic = blackhole if drop else stall
        for i in self.members(dc):
            self.api.put(self.proxy(i), toxic(PARTITION[0], "upstream"))
            self.api.put(self.proxy(i), toxic(PARTITION[1], "downstream"))

    def heal(self, dc: str) -> None:
        """Undo ``partition(dc)``: stalled bytes flow on (dropped ones are gone)."""
        for i in self.members(dc):
            for name in PARTITION:
                self.api.discard(self.proxy(i), name)
