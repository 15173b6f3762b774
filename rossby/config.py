"""Server configuration: one frozen, typed object built once at start-up.

Precedence: command-line flags, then ``ROSSBY_*`` environment variables,
then an optional TOML file (``--config`` / ``ROSSBY_CONFIG``), then the
defaults below, which are a working single-node SQLite setup. Every key is
a field of ``Settings``; its flag is ``--key-with-dashes`` and its variable
``ROSSBY_KEY_IN_CAPS``. Secrets may also come from ``<key>_file``.

Validation happens here, before any port is bound, and fails with one
``ConfigError`` line that names the setting.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rossby.errors import ConfigError
from rossby.replication.topology import resolve as resolve_topology
from rossby.server.hawkkeys import parse_keyring
from rossby.server.ratelimit import parse_limit
from rossby.store import parse_store_url

SECRET_KEYS = frozenset(
    {
        "contact_hash_key",
        "smtp_password",
        "webhook_token",
        "server_secret",
        "hawk_keys",
        "cassandra_password",
    }
)
#: Settings that may also be read from a file (``<key>_file``): the
#: secrets, and the Cassandra login, which secret managers hand out beside
#: its password.
FILE_KEYS = SECRET_KEYS | {"cassandra_username"}
#: Settings for the Cassandra connection only; refused with a SQLite store,
#: where they would silently do nothing.
CASSANDRA_KEYS = (
    "cassandra_username",
    "cassandra_password",
    "cassandra_tls_ca",
    "cassandra_tls_cert",
    "cassandra_tls_key",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of ``rossby serve`` and ``rossby migrate``."""

    listen: str = field(default="127.0.0.1:1205", metadata={"doc": "host:port to serve gRPC on"})
    store: str = field(
        default="sqlite:///var/rossby.db",
        metadata={"doc": "sqlite:///path.db or cassandra://h1,h2:9042/keyspace?local_dc=dc1"},
    )
    region: str = field(
        default="",
        metadata={"doc": "this server's region = its Cassandra local DC (default: local_dc, dc1)"},
    )
    replication: str = field(
        default="",
        metadata={"doc": "Cassandra replicas per DC for `migrate`, e.g. dc1:3,dc2:3"},
    )
    public_host: str = field(default="", metadata={"doc": "host clients sign Hawk for"})
    public_port: int = field(default=0, metadata={"doc": "port clients sign Hawk for"})
    state_dir: str = field(default="var", metadata={"doc": "directory for generated dev secrets"})
    log_format: str = field(default="auto", metadata={"doc": "auto | console | json"})
    log_level: str = field(default="info", metadata={"doc": "debug | info | warning | error"})
    notifier: str = field(default="outbox", metadata={"doc": "outbox | smtp | webhook | route"})
    outbox_dir: str = field(default="var/outbox", metadata={"doc": "dev outbox directory"})
    smtp_host: str = field(default="", metadata={"doc": "SMTP server host"})
    smtp_port: int = field(default=0, metadata={"doc": "SMTP port (0: 25/587/465 by security)"})
    smtp_security: str = field(default="starttls", metadata={"doc": "none | starttls | tls"})
    smtp_username: str = field(default="", metadata={"doc": "SMTP login"})
    smtp_password: str = field(default="", metadata={"doc": "SMTP password (secret)"})
    smtp_from: str = field(default="", metadata={"doc": "From address of code e-mails"})
    webhook_url: str = field(default="", metadata={"doc": "URL codes are POSTed to (SMS)"})
    webhook_token: str = field(default="", metadata={"doc": "bearer token for the webhook"})
    phone_via: str = field(default="webhook", metadata={"doc": "route: webhook | outbox"})
    notifier_timeout: float = field(default=10.0, metadata={"doc": "seconds per delivery"})
    contact_hash_key: str = field(default="", metadata={"doc": "hex HMAC key for contacts"})
    server_secret: str = field(default="", metadata={"doc": "hex key for code hashes"})
    hawk_keys: str = field(
        default="",
        metadata={
            "doc": "master keys that wrap the Hawk keys at rest: `id:hex` entries, comma "
            "separated; the first wraps new keys, all open stored ones (rotation: "
            "docs/operations.md)"
        },
    )
    cassandra_username: str = field(
        default="", metadata={"doc": "Cassandra login (PasswordAuthenticator); empty: none"}
    )
    cassandra_password: str = field(default="", metadata={"doc": "password of cassandra_username"})
    cassandra_tls_ca: str = field(
        default="",
        metadata={"doc": "PEM CA file the Cassandra nodes' certificates chain to; enables TLS"},
    )
    cassandra_tls_cert: str = field(
        default="", metadata={"doc": "PEM client certificate for Cassandra (client auth)"}
    )
    cassandra_tls_key: str = field(
        default="", metadata={"doc": "PEM private key of cassandra_tls_cert"}
    )
    cassandra_tls_check_hostname: bool = field(
        default=True,
        metadata={
            "doc": "check that each node's certificate names the address it is dialled at "
            "(false: only that the CA signed it)"
        },
    )
    default_phone_region: str = field(default="US", metadata={"doc": "region for national"})
    message_ttl: float = field(default=30 * 86400.0, metadata={"doc": "seconds a message lives"})
    pending_cap: int = field(default=10_000, metadata={"doc": "undelivered messages per box"})
    max_message_bytes: int = field(default=65_536, metadata={"doc": "ciphertext size limit"})
    max_recipients: int = field(default=1000, metadata={"doc": "messages per Send"})
    max_contacts: int = field(default=3, metadata={"doc": "contacts per Register"})
    code_ttl: int = field(default=600, metadata={"doc": "seconds a code stays valid"})
    code_attempts: int = field(default=5, metadata={"doc": "wrong codes before a new one"})
    resend_interval: float = field(default=30.0, metadata={"doc": "seconds between resends"})
    register_contact_limit: int = field(
        default=5,
        metadata={
            "doc": "codes sent to one contact per register_contact_window on behalf of one "
            "requester (Register: a client address, IPv6 /64; AddContact: a box), counted in "
            "the store across processes; 0: off"
        },
    )
    register_contact_ceiling: int = field(
        default=20,
        metadata={
            "doc": "codes sent to one contact per register_contact_window from all "
            "requesters together (pumping, bombing); at least register_contact_limit; 0: off"
        },
    )
    register_contact_window: float = field(
        default=3600.0, metadata={"doc": "seconds over which register_contact_limit counts"}
    )
    register_rate_per_address: str = field(
        default="30/hour",
        metadata={
            "doc": "Register calls per client address (IPv6: per /64) per serving process, "
            "e.g. 30/hour; 0: off (raise it for load tests)"
        },
    )
    authorize_failures_per_address: str = field(
        default="300/hour",
        metadata={
            "doc": "wrong codes or signatures at Authorize per client address (IPv6: per /64) "
            "per serving process; 0: off"
        },
    )
    hawk_skew: float = field(default=60.0, metadata={"doc": "allowed clock skew, seconds"})
    auth_cache_ttl: float = field(
        default=1.0,
        metadata={
            "doc": "seconds a process may keep using a device's Hawk key or a recipient's "
            "acceptance of a sender after reading it: the bound on how late a revocation, "
            "block or profile change reaches other processes and regions; 0: no cache"
        },
    )
    housekeeping_interval: float = field(
        default=300.0, metadata={"doc": "seconds between purges of expired rows"}
    )
    grace: float = field(default=10.0, metadata={"doc": "seconds in-flight RPCs get on stop"})
    workers: int = field(
        default=0,
        metadata={"doc": "serving processes sharing the port (SO_REUSEPORT); 0: one per CPU"},
    )
    metrics_listen: str = field(
        default="127.0.0.1:9205",
        metadata={"doc": "host:port of the Prometheus /metrics endpoint; empty disables it"},
    )
    health_interval: float = field(
        default=2.0, metadata={"doc": "seconds between the store pings behind health"}
    )
    health_timeout: float = field(
        default=2.0, metadata={"doc": "seconds a store ping may take before NOT_SERVING"}
    )
    tls_cert: str = field(
        default="", metadata={"doc": "PEM server certificate chain file; enables TLS"}
    )
    tls_key: str = field(default="", metadata={"doc": "PEM private key file of tls_cert"})
    tls_client_ca: str = field(
        default="",
        metadata={"doc": "PEM CA file; clients must present a cert it signed (mutual TLS)"},
    )
    peer_listen: str = field(
        default="",
        metadata={
            "doc": "host:port the internal Peer service listens on, never the public port; "
            "default: the listen host and peer_address's port, else a free port (per worker)"
        },
    )
    peer_address: str = field(
        default="",
        metadata={
            "doc": "host[:port] other Rossby processes reach this one's Peer service at "
            "(real-time notify); default: the peer_listen host (or listen host) and bound port"
        },
    )
    peer_tls_ca: str = field(
        default="", metadata={"doc": "PEM CA file that signed peers' certificates (TLS only)"}
    )
    stream_limit: int = field(
        default=3, metadata={"doc": "concurrent Subscribe streams per device per process"}
    )
    stream_buffer: int = field(
        default=256, metadata={"doc": "events queued per Subscribe stream at most"}
    )
    stream_poll: float = field(
        default=5.0, metadata={"doc": "seconds between a stream's safety-net store reads"}
    )
    stream_stall: float = field(
        default=15.0,
        metadata={"doc": "seconds a stream may not read while messages wait, then catch-up"},
    )
    stream_heartbeat: float = field(
        default=20.0, metadata={"doc": "seconds of silence before a stream gets a heartbeat"}
    )
    presence_ttl: float = field(
        default=30.0, metadata={"doc": "seconds a presence row lives unless refreshed"}
    )
    compact_interval: float = field(
        default=1.0,
        metadata={
            "doc": "seconds between compactions of one box by one process: the first Ack "
            "compacts before answering, later ones within the interval leave it to one "
            "trailing compaction; 0: every Ack compacts"
        },
    )
    presence_cache_ttl: float = field(
        default=1.0,
        metadata={
            "doc": "seconds a process may fan stored messages out against a box's presence "
            "read (one read per box per period instead of per message); a new stream "
            "re-reads the store this long after it opens; same value on every process; 0: off"
        },
    )
    send_rate_per_device: str = field(
        default="1200/minute",
        metadata={
            "doc": "messages one device may Send per serving process (a Send costs its "
            "recipients), e.g. 1200/minute; must fit max_recipients; 0: off"
        },
    )
    account_rate_per_device: str = field(
        default="20/hour",
        metadata={
            "doc": "AddContact, RotateKeys, ApproveLink and RevokeDevice calls per device "
            "per serving process; 0: off"
        },
    )
    stream_max_age: float = field(
        default=3600.0,
        metadata={
            "doc": "seconds a Subscribe stream lives at most (less up to 10%), then ends "
            "with OK and the client resubscribes; also the connection age"
        },
    )
    stream_write_timeout: float = field(
        default=60.0,
        metadata={"doc": "seconds one write to a stream may stall, then SLOW_CONSUMER"},
    )
    keepalive_time: float = field(
        default=60.0,
        metadata={"doc": "seconds between the server's HTTP/2 pings on a quiet connection"},
    )
    keepalive_timeout: float = field(
        default=20.0,
        metadata={"doc": "seconds a ping may go unanswered before the connection is closed"},
    )
    keepalive_min_interval: float = field(
        default=30.0,
        metadata={
            "doc": "seconds clients must leave between pings (faster: GOAWAY too_many_pings); "
            "at most 60, the SDK's ping interval"
        },
    )
    connection_idle: float = field(
        default=600.0,
        metadata={"doc": "seconds a connection without calls stays open"},
    )

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def hawk_host(self) -> str:
        return self.public_host or self.listen_host

    @property
    def hawk_port(self) -> int:
        return self.public_port or self.listen_port

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets hidden, for the start-up log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.name in SECRET_KEYS and value else value
        if self.webhook_url:
            # Webhook URLs often carry a credential in the path or query.
            parts = urlsplit(self.webhook_url)
            host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
            hidden = parts.path not in ("", "/") or parts.query or parts.username
            out["webhook_url"] = f"{parts.scheme}://{host}" + ("/***" if hidden else "")
        return out


_CHOICES: Mapping[str, Sequence[str]] = {
    "log_format": ("auto", "console", "json"),
    "log_level": ("debug", "info", "warning", "error"),
    "notifier": ("outbox", "smtp", "webhook", "route"),
    "smtp_security": ("none", "starttls", "tls"),
    "phone_via": ("webhook", "outbox"),
}


_BOOLS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLS.update({"false": False, "no": False, "off": False, "0": False})


def _convert(name: str, raw: Any, kind: Any) -> Any:
    if kind in (bool, "bool"):
        if isinstance(raw, bool):
            return raw
        value = _BOOLS.get(str(raw).strip().lower())
        if value is None:
            raise ConfigError(f"invalid setting {name}: {raw!r} is not true or false")
        return value
    try:
        if kind in (int, "int"):
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        noun = {"int": "an integer", "float": "a number"}.get(str(getattr(kind, "__name__", kind)))
        raise ConfigError(f"invalid setting {name}: {raw!r} is not {noun}") from None


def _validate(s: Settings) -> Settings:
    for name, allowed in _CHOICES.items():
        if getattr(s, name) not in allowed:
            raise ConfigError(f"invalid setting {name}: {getattr(s, name)!r} not in {allowed}")
    host, sep, port = s.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"invalid setting listen: {s.listen!r} is not host:port")
    try:
        parse_store_url(s.store)
        # Region and replication are one topology with the store URL's
        # local_dc and replication (docs/replication.md).
        store, region = resolve_topology(s.store, s.region, s.replication)
        s = replace(s, store=store, region=region)
    except ConfigError as exc:
        raise ConfigError(f"invalid setting {exc}") from None
    for name in (
        "pending_cap",
        "max_message_bytes",
        "max_recipients",
        "max_contacts",
        "code_ttl",
        "code_attempts",
        "stream_limit",
        "stream_buffer",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"invalid setting {name}: must be at least 1")
    for name in (
        "message_ttl",
        "hawk_skew",
        "notifier_timeout",
        "health_interval",
        "housekeeping_interval",
        "stream_poll",
        "stream_stall",
        "stream_heartbeat",
        "presence_ttl",
        "stream_max_age",
        "stream_write_timeout",
        "keepalive_time",
        "keepalive_timeout",
        "keepalive_min_interval",
        "connection_idle",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(f"invalid setting {name}: must be positive")
    if s.health_timeout <= 0:
        raise ConfigError("invalid setting health_timeout: must be positive")
    if not 0 <= s.presence_cache_ttl <= 10 or s.presence_cache_ttl >= s.presence_ttl:
        raise ConfigError(
            "invalid setting presence_cache_ttl: must be 0 (off) to 10 seconds, "
            "and below presence_ttl"
        )
    if not 0 <= s.compact_interval <= 60:
        raise ConfigError("invalid setting compact_interval: must be 0 (every Ack) to 60 seconds")
    if not 0 <= s.auth_cache_ttl <= 60:
        raise ConfigError("invalid setting auth_cache_ttl: must be 0 (off) to 60 seconds")
    if not 0 <= s.workers <= 1024:
        raise ConfigError("invalid setting workers: must be 0 (one per CPU) to 1024")
    if s.metrics_listen:
        m_host, m_sep, m_port = s.metrics_listen.rpartition(":")
        if not m_sep or not m_host or not m_port.isdigit() or not 0 <= int(m_port) < 65536:
            raise ConfigError(
                f"invalid setting metrics_listen: {s.metrics_listen!r} is not host:port"
            )
        if int(m_port) and s.metrics_listen == s.listen:
            raise ConfigError("invalid setting metrics_listen: same address as listen")
    _validate_tls(s)
    _validate_store_connection(s)
    _validate_abuse_limits(s)
    _validate_sends_and_connections(s)
    if s.peer_address:
        p_host, p_sep, p_port = s.peer_address.rpartition(":")
        if p_sep and p_host.startswith("[") is p_host.endswith("]") and p_port.isdigit():
            ok = bool(p_host) and 0 <= int(p_port) < 65536
        else:  # a bare host (an IPv6 one in brackets)
            ok = ":" not in s.peer_address or s.peer_address.endswith("]")
        if not ok:
            raise ConfigError(
                f"invalid setting peer_address: {s.peer_address!r} is not host or host:port"
            )
    if s.peer_listen:
        l_host, l_sep, l_port = s.peer_listen.rpartition(":")
        if not l_sep or not l_host or not l_port.isdigit() or not 0 <= int(l_port) < 65536:
            raise ConfigError(f"invalid setting peer_listen: {s.peer_listen!r} is not host:port")
        if int(l_port) and s.peer_listen == s.listen:
            raise ConfigError(
                "invalid setting peer_listen: the Peer service never shares the public port"
            )
    if s.hawk_keys:
        parse_keyring(s.hawk_keys)
    for name in ("contact_hash_key", "server_secret"):
        value = getattr(s, name)
        if value:
            try:
                if len(bytes.fromhex(value)) < 16:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"invalid setting {name}: need at least 32 hex digits") from None
    if s.notifier in ("smtp", "route") and not (s.smtp_host and s.smtp_from):
        raise ConfigError("invalid setting smtp_host: the smtp notifier needs smtp_host, smtp_from")
    if (s.notifier == "webhook" or (s.notifier == "route" and s.phone_via == "webhook")) and (
        not s.webhook_url
    ):
        raise ConfigError("invalid setting webhook_url: the webhook notifier needs a URL")
    return s


def _validate_tls(s: Settings) -> None:
    if bool(s.tls_cert) != bool(s.tls_key):
        missing = "tls_key" if s.tls_cert else "tls_cert"
        raise ConfigError(f"invalid setting {missing}: tls_cert and tls_key go together")
    if s.tls_client_ca and not s.tls_cert:
        raise ConfigError("invalid setting tls_client_ca: mutual TLS needs tls_cert and tls_key")
    for name in ("tls_cert", "tls_key", "tls_client_ca", "peer_tls_ca"):
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"invalid setting {name}: no such file {path!r}")


def _validate_store_connection(s: Settings) -> None:
    if not s.store.startswith("cassandra://"):
        for name in CASSANDRA_KEYS:
            if getattr(s, name):
                raise ConfigError(f"invalid setting {name}: only for a cassandra:// store")
        return
    if bool(s.cassandra_username) != bool(s.cassandra_password):
        missing = "cassandra_password" if s.cassandra_username else "cassandra_username"
        raise ConfigError(
            f"invalid setting {missing}: cassandra_username and cassandra_password go together"
        )
    if bool(s.cassandra_tls_cert) != bool(s.cassandra_tls_key):
        missing = "cassandra_tls_key" if s.cassandra_tls_cert else "cassandra_tls_cert"
        raise ConfigError(
            f"invalid setting {missing}: cassandra_tls_cert and cassandra_tls_key go together"
        )
    if s.cassandra_tls_cert and not s.cassandra_tls_ca:
        raise ConfigError(
            "invalid setting cassandra_tls_ca: a client certificate needs TLS, which needs the CA"
        )
    for name in ("cassandra_tls_ca", "cassandra_tls_cert", "cassandra_tls_key"):
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"invalid setting {name}: no such file {path!r}")


#: The longest register_contact_window: a window of a year is already no
#: rate, and Cassandra keeps each send that long (TTL).
MAX_CONTACT_WINDOW = 365 * 86400.0


def _validate_abuse_limits(s: Settings) -> None:
    if not 0 <= s.register_contact_limit <= 1000:
        raise ConfigError("invalid setting register_contact_limit: must be 0 (off) to 1000")
    if not 0 <= s.register_contact_ceiling <= 10_000:
        raise ConfigError("invalid setting register_contact_ceiling: must be 0 (off) to 10000")
    if 0 < s.register_contact_ceiling < s.register_contact_limit:
        raise ConfigError(
            "invalid setting register_contact_ceiling: below register_contact_limit, one "
            "requester could never use its share"
        )
    if not 0 < s.register_contact_window <= MAX_CONTACT_WINDOW:
        raise ConfigError(
            "invalid setting register_contact_window: must be positive, at most "
            f"{MAX_CONTACT_WINDOW:.0f} (a year)"
        )
    for name in ("register_rate_per_address", "authorize_failures_per_address"):
        parse_limit(name, getattr(s, name))


#: Seconds between the SDK's keepalive pings (``rossby.client.channel``
#: ``KEEPALIVE_TIME_MS``; a test keeps the two equal). A server that wants
#: pings further apart than this would GOAWAY SDK clients (too_many_pings).
SDK_PING_INTERVAL = 60.0


def _validate_sends_and_connections(s: Settings) -> None:
    send = parse_limit("send_rate_per_device", s.send_rate_per_device)
    if send is not None and send.amount < s.max_recipients:
        # A Send costs its recipients and is refused whole, so a limit below
        # max_recipients would refuse a valid group Send forever.
        raise ConfigError(
            f"invalid setting send_rate_per_device: {s.send_rate_per_device!r} allows fewer "
            f"messages than one Send of max_recipients ({s.max_recipients}) carries"
        )
    parse_limit("account_rate_per_device", s.account_rate_per_device)
    if s.stream_write_timeout < s.stream_stall:
        raise ConfigError(
            "invalid setting stream_write_timeout: must be at least stream_stall, so a "
            "stalled stream is told to catch up before it is aborted"
        )
    if s.keepalive_min_interval > SDK_PING_INTERVAL:
        raise ConfigError(
            f"invalid setting keepalive_min_interval: at most {SDK_PING_INTERVAL:g} "
            "(the SDK pings that often; slower would disconnect it with too_many_pings)"
        )


def _field_kinds() -> dict[str, Any]:
    return {f.name: f.type for f in fields(Settings)}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge file < environment < flags over the defaults and validate."""
    env = os.environ if environ is None else environ
    kinds = _field_kinds()
    merged: dict[str, Any] = {}
    path = config_file or env.get("ROSSBY_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"invalid setting config: cannot read {path}: {exc}") from None
        for key, value in _flatten(data).items():
            merged.update(_one(key, value, kinds, source=f"{path}"))
    for key in kinds:
        for suffix in ("_file", ""):
            var = f"ROSSBY_{key.upper()}{suffix.upper()}"
            if var in env:
                merged.update(_one(key + suffix, env[var], kinds, source=var))
    for key, value in (flags or {}).items():
        if value is not None:
            merged.update(_one(key, value, kinds, source="--" + key.replace("_", "-")))
    return _validate(replace(Settings(), **merged))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML sections are prefixes: ``[smtp] host = ...`` is ``smtp_host``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _one(key: str, value: Any, kinds: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    if key.endswith("_file") and key[: -len("_file")] in FILE_KEYS:
        name = key[: -len("_file")]
        try:
            return {name: Path(str(value)).read_text().strip()}
        except OSError as exc:
            raise ConfigError(f"invalid setting {name}: cannot read {value}: {exc}") from None
    if key not in kinds:
        raise ConfigError(f"invalid setting {key}: unknown key (from {source})")
    return {key: _convert(key, value, kinds[key])}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults stay None so precedence works."""
    parser.add_argument("--config", help="TOML file with settings (env ROSSBY_CONFIG)")
    for f in fields(Settings):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            # argparse %-formats help strings; a doc may say "10%".
            help=f"{f.metadata.get('doc', '').replace('%', '%%')} (env ROSSBY_{f.name.upper()})",
        )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    flags = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(flags, environ, getattr(args, "config", None))


__all__ = [
    "FILE_KEYS",
    "SECRET_KEYS",
    "Settings",
    "add_flags",
    "load_settings",
    "settings_from_args",
]
