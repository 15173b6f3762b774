"""``Settings``: every setting of the server, with its default and its documentation.

The one typed, frozen object the rest of the code reads; how it is loaded
(file, environment, flags) is ``rossby.config``, how it is checked
``rossby.configcheck``. Kept apart from both so that anything that only
needs the shape (the store options, the docs generator) reads it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

#: Seconds a code's row (a registration, a contact challenge) outlives
#: ``code_ttl``, so a late call hears CODE_EXPIRED rather than a not-found
#: reason; the store keeps registrations that long (``registration_ttl``).
EXPIRED_GRACE = 3600.0
#: The longest push_webpush_ttl: four weeks, the most the big push services
#: keep a message (FCM's limit); longer would be cut silently.
MAX_WEBPUSH_TTL = 28 * 86400

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
    pending_cap: int = field(default=10_000, metadata={"doc": "per box, above its top cursor"})
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
    device_idle_days: float = field(
        default=45.0,
        metadata={
            "doc": "days without a signed call after which a device is unlinked by the "
            "server (a key-log IDLE_UNLINK entry); the box's most recently seen device is "
            "never unlinked; 0: never"
        },
    )
    device_idle_warning_days: float = field(
        default=7.0,
        metadata={
            "doc": "days before an idle unlink that the box's other devices see the idle "
            "device in Fetch (idle_devices); 0: no warning"
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
    prekey_pool_max: int = field(
        default=200,
        metadata={
            "doc": "one-time prekeys a device may hold in each pool (X25519, ML-KEM-768); "
            "also the most keys of a kind one UploadPrekeys carries"
        },
    )
    prekey_low_water: int = field(
        default=20,
        metadata={
            "doc": "a device is told prekeys_low (Fetch, Subscribe, GetPrekeyStatus) once a "
            "pool (any region's share) holds fewer keys than this; at most prekey_pool_max"
        },
    )
    prekey_claim_rate_per_device: str = field(
        default="120/hour",
        metadata={
            "doc": "ClaimPrekeys calls one device may make per serving process (each claims "
            "one bundle per device of one box); 0: off"
        },
    )
    prekey_claim_rate_per_box: str = field(
        default="60/hour",
        metadata={
            "doc": "ClaimPrekeys calls on one target box per serving process, from every "
            "requester together: how fast anyone can drain a box's one-time prekeys; 0: off"
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
    push_vapid_private_key_file: str = field(
        default="",
        metadata={
            "doc": "path of the VAPID private key (P-256: PEM, or py_vapid raw base64url); "
            "unset: Web Push off. `rossby admin vapid-keygen PATH` makes one"
        },
    )
    push_vapid_subject: str = field(
        default="",
        metadata={
            "doc": "VAPID contact the push services see: mailto:ops@example.com or "
            "https://example.com, an origin (needed with a key)"
        },
    )
    push_webpush_ttl: int = field(
        default=86400,
        metadata={
            "doc": "seconds a push service keeps a wake-up for an offline browser "
            f"(0: only if online now; at most {MAX_WEBPUSH_TTL})"
        },
    )
    push_gateways: str = field(
        default="",
        metadata={
            "doc": "Matrix-style push gateways (Sygnal ...): `app_id=https://base` entries, "
            "comma separated; wake-ups POST to <base>/_matrix/push/v1/notify; empty: none"
        },
    )
    push_webpush_allowed_hosts: str = field(
        default=(
            "*.googleapis.com,*.push.services.mozilla.com,*.notify.windows.com,"
            "*.push.apple.com,web.push.apple.com"
        ),
        metadata={
            "doc": "hosts a Web Push endpoint may name (comma separated; `*.example.com`: "
            "any subdomain): SetPushTarget refuses others, so a client cannot make the "
            "server POST to an address of the operator's network"
        },
    )
    push_coalesce_seconds: float = field(
        default=30.0,
        metadata={
            "doc": "a sleeping device gets at most one wake-up per this many seconds "
            "(messages in between get one more at its end)"
        },
    )
    push_retry_attempts: int = field(
        default=5,
        metadata={"doc": "attempts per wake-up while the push service answers 429/5xx"},
    )
    push_retry_base: float = field(
        default=1.0,
        metadata={
            "doc": "seconds before the first retry of a wake-up, doubling each time (the "
            "push service's Retry-After when longer)"
        },
    )
    push_timeout: float = field(
        default=10.0, metadata={"doc": "seconds one request to a push service may take"}
    )
    push_concurrency: int = field(
        default=16, metadata={"doc": "requests to push services in flight per process"}
    )
    push_target_cache_ttl: float = field(
        default=5.0,
        metadata={
            "doc": "seconds a process trusts its read of a box's push targets (one read "
            "per box per period, not per Send); a target set on another process is "
            "used after at most this long"
        },
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


__all__ = [
    "CASSANDRA_KEYS",
    "EXPIRED_GRACE",
    "FILE_KEYS",
    "MAX_WEBPUSH_TTL",
    "SECRET_KEYS",
    "Settings",
]
