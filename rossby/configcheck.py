"""Validation of ``Settings``: one ``ConfigError`` line that names the setting.

Runs once at start-up, before any port is bound (``rossby.config`` calls
``validate`` on what it loaded). Split from the loading so each stays one
job: what a setting may hold is here, where it comes from is there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rossby.errors import ConfigError
from rossby.masterkeys import parse_keyring
from rossby.pushspec import parse_allowed_hosts, parse_gateways
from rossby.ratespec import parse_limit
from rossby.replication.topology import resolve as resolve_topology
from rossby.settings import CASSANDRA_KEYS, MAX_WEBPUSH_TTL, Settings
from rossby.store import parse_store_url

_CHOICES: Mapping[str, Sequence[str]] = {
    "log_format": ("auto", "console", "json"),
    "log_level": ("debug", "info", "warning", "error"),
    "notifier": ("outbox", "smtp", "webhook", "route"),
    "smtp_security": ("none", "starttls", "tls"),
    "phone_via": ("webhook", "outbox"),
}


def validate(s: Settings) -> Settings:
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
        "push_coalesce_seconds",
        "push_retry_base",
        "push_timeout",
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
    if s.device_idle_days != 0 and not 1 <= s.device_idle_days <= 3650:
        raise ConfigError("invalid setting device_idle_days: must be 0 (never) or 1 to 3650")
    if s.device_idle_warning_days < 0 or (
        s.device_idle_days and s.device_idle_warning_days >= s.device_idle_days
    ):
        raise ConfigError(
            "invalid setting device_idle_warning_days: must be 0 (none) or below device_idle_days"
        )
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
    _validate_webpush(s)
    _validate_push(s)
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
    _validate_prekeys(s)
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


#: What py_vapid signs as a JWT ``sub`` (RFC 8292 section 2.1: a mailto: or
#: https: contact; py_vapid takes an https origin only, no path or port).
_VAPID_SUBJECT = re.compile(
    r"mailto:[^@\s/]+@(localhost|[\w-]+(\.[\w-]+)+)|https://(localhost|[\w-]+(\.[\w-]+)+)",
    re.IGNORECASE,
)


def _validate_webpush(s: Settings) -> None:
    if not 0 <= s.push_webpush_ttl <= MAX_WEBPUSH_TTL:
        raise ConfigError(f"invalid setting push_webpush_ttl: must be 0 to {MAX_WEBPUSH_TTL}")
    path = s.push_vapid_private_key_file
    if not path:
        return
    if not Path(path).is_file():
        raise ConfigError(f"invalid setting push_vapid_private_key_file: no such file {path!r}")
    if not s.push_vapid_subject:
        raise ConfigError(
            "invalid setting push_vapid_subject: Web Push (push_vapid_private_key_file) "
            "needs a contact, mailto:ops@example.com or https://example.com"
        )
    if not _VAPID_SUBJECT.fullmatch(s.push_vapid_subject):
        raise ConfigError(
            f"invalid setting push_vapid_subject: {s.push_vapid_subject!r} is neither "
            "mailto:user@domain nor https://host (no path)"
        )


def _validate_push(s: Settings) -> None:
    parse_gateways("push_gateways", s.push_gateways)
    parse_allowed_hosts("push_webpush_allowed_hosts", s.push_webpush_allowed_hosts)
    if not 1 <= s.push_retry_attempts <= 20:
        raise ConfigError("invalid setting push_retry_attempts: must be 1 to 20")
    if not 1 <= s.push_concurrency <= 1024:
        raise ConfigError("invalid setting push_concurrency: must be 1 to 1024")
    if not 0 <= s.push_target_cache_ttl <= 60:
        raise ConfigError("invalid setting push_target_cache_ttl: must be 0 (off) to 60 seconds")


#: The largest prekey_pool_max: an upload of that many ML-KEM-768 keys is
#: about 1.3 KB a key, and the request size cap grows with it
#: (rossby.server.sizes).
MAX_PREKEY_POOL = 2000


def _validate_prekeys(s: Settings) -> None:
    if not 1 <= s.prekey_pool_max <= MAX_PREKEY_POOL:
        raise ConfigError(f"invalid setting prekey_pool_max: must be 1 to {MAX_PREKEY_POOL}")
    if not 0 <= s.prekey_low_water <= s.prekey_pool_max:
        raise ConfigError(
            "invalid setting prekey_low_water: must be 0 (never low while keys remain) "
            "to prekey_pool_max"
        )
    parse_limit("prekey_claim_rate_per_device", s.prekey_claim_rate_per_device)
    parse_limit("prekey_claim_rate_per_box", s.prekey_claim_rate_per_box)


__all__ = ["MAX_CONTACT_WINDOW", "MAX_PREKEY_POOL", "SDK_PING_INTERVAL", "validate"]
