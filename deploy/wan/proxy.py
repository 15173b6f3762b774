"""A typed client for Toxiproxy's REST API (stdlib ``urllib``).

PyPI's ``toxiproxy-python`` (0.1.1, 2019) is unmaintained; the API is a
handful of JSON calls (https://github.com/Shopify/toxiproxy#http-api):

* a *proxy* listens on ``listen`` and forwards each connection to ``upstream``;
* a *toxic* on a proxy acts on one *stream*: ``upstream`` is the bytes the
  connecting client sends (toward the upstream server), ``downstream`` the
  bytes coming back;
* ``latency`` delays data by ``latency`` ± ``jitter`` ms; removing it lets
  what it holds through at once ("don't drop any data on the floor"), so an
  hour's latency is a *stall* (``stall``): the connection stays open, bytes
  wait, and flow on when it is removed;
* ``bandwidth`` caps a stream at ``rate`` KB/s;
* ``timeout`` with ``timeout=0`` *drops* every byte and keeps the connection
  open (``blackhole``); in 2.5.0 removing it closes the connections it held
  (``TimeoutToxic.Cleanup``), so the peers reconnect;
* disabling a proxy closes its connections and refuses new ones (a reset).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

Stream = Literal["upstream", "downstream"]


class ToxiproxyApiError(RuntimeError):
    """The Toxiproxy API answered with an error status (or not at all)."""


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: Stream
    attributes: dict[str, int | float] = field(default_factory=dict)
    toxicity: float = 1.0

    def body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": self.attributes,
        }


def latency(name: str, ms: float, jitter_ms: float = 0, stream: Stream = "upstream") -> Toxic:
    return Toxic(name, "latency", stream, {"latency": int(ms), "jitter": int(jitter_ms)})


def bandwidth(name: str, kbytes_per_s: int, stream: Stream = "upstream") -> Toxic:
    return Toxic(name, "bandwidth", stream, {"rate": int(kbytes_per_s)})


STALL_MS = 3_600_000
"""A stall's latency: an hour, longer than any test or partition lasts."""


def stall(name: str, stream: Stream) -> Toxic:
    """Hold all data, never close; removing it lets the held bytes through."""
    return Toxic(name, "latency", stream, {"latency": STALL_MS, "jitter": 0})


def blackhole(name: str, stream: Stream) -> Toxic:
    """``timeout`` 0: drop all data, never close (until removed: see the module doc)."""
    return Toxic(name, "timeout", stream, {"timeout": 0})


class Toxiproxy:
    """The API of one ``toxiproxy-server`` at ``host:port``."""

    def __init__(self, api: str, timeout: float = 5.0) -> None:
        self.base = f"http://{api}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise ToxiproxyApiError(f"{method} {path}: HTTP {e.code}: {detail}") from e
        except OSError as e:
            raise ToxiproxyApiError(f"{method} {path}: {e}") from e
        return json.loads(raw) if raw.strip() else None

    def version(self) -> str:
        req = urllib.request.Request(self.base + "/version")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return str(resp.read().decode().strip())
        except OSError as e:
            raise ToxiproxyApiError(f"GET /version: {e}") from e

    def proxies(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/proxies")
        return out

    def create(self, name: str, listen: str, upstream: str) -> str:
        """A proxy from ``listen`` (``host:0``: any free port) to ``upstream``;
        returns the address it listens on."""
        body = {"name": name, "listen": listen, "upstream": upstream}
        created = self._call("POST", "/proxies", body)
        return str(created["listen"])

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabled: connections closed, new ones refused (a reset, unlike ``stall``)."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._call("GET", f"/proxies/{proxy}/toxics")
        return out

    def add(self, proxy: str, toxic: Toxic) -> None:
        self._call("POST", f"/proxies/{proxy}/toxics", toxic.body())

    def put(self, proxy: str, toxic: Toxic) -> None:
        """Add ``toxic`` or replace the one of that name."""
        if any(t["name"] == toxic.name for t in self.toxics(proxy)):
            self.remove(proxy, toxic.name)
        self.add(proxy, toxic)

    def remove(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def discard(self, proxy: str, toxic: str) -> None:
        """Remove ``toxic`` if it is there."""
        if any(t["name"] == toxic for t in self.toxics(proxy)):
            self.remove(proxy, toxic)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self._call("POST", "/reset")
