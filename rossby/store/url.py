"""Store URLs (``--store``): which backend, where, with which parameters."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from rossby.errors import ConfigError


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed ``--store`` URL.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``sqlite://:memory:`` or
    ``cassandra://host1,host2:9042/keyspace?local_dc=dc1``.
    """

    scheme: str
    path: str = ""
    hosts: tuple[str, ...] = ()
    port: int = 9042
    keyspace: str = "rossby"
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str, default: str | None = None) -> str | None:
        return dict(self.params).get(name, default)


def parse_store_url(url: str) -> StoreURL:
    """Parse and validate a store URL; ``ConfigError`` names what is wrong."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if rest == ":memory:":
            return StoreURL("sqlite", path=":memory:")
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(f"store: expected sqlite:///path/to.db, got {url!r}")
        return StoreURL("sqlite", path=rest[1:])
    if url.startswith("cassandra://"):
        parts = urlsplit(url)
        netloc = parts.netloc
        port = 9042
        hosts_part = netloc
        if ":" in netloc.rsplit(",", 1)[-1]:
            hosts_part, _, port_text = netloc.rpartition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise ConfigError(f"store: bad port {port_text!r} in {url!r}") from None
        hosts = tuple(h for h in hosts_part.split(",") if h)
        if not hosts:
            raise ConfigError(f"store: no Cassandra host in {url!r}")
        keyspace = parts.path.strip("/") or "rossby"
        if not keyspace.replace("_", "").isalnum() or keyspace[0].isdigit():
            raise ConfigError(f"store: bad keyspace name {keyspace!r}")
        params = tuple(
            sorted((k, v[-1]) for k, v in parse_qs(parts.query, keep_blank_values=True).items())
        )
        return StoreURL("cassandra", hosts=hosts, port=port, keyspace=keyspace, params=params)
    raise ConfigError(f"store: unsupported URL {url!r} (use sqlite:/// or cassandra://)")


__all__ = ["StoreURL", "parse_store_url"]
