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

from rossby.errors import ConfigError
from rossby.store import parse_store_url

SECRET_KEYS = frozenset({"contact_hash_key", "smtp_password", "webhook_token", "server_secret"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of ``rossby serve`` and ``rossby migrate``."""

    listen: str = field(default="127.0.0.1:1205", metadata={"doc": "host:port to serve gRPC on"})
    store: str = field(
        default="sqlite:///var/rossby.db",
        metadata={"doc": "sqlite:///path.db or cassandra://h1,h2:9042/keyspace?local_dc=dc1"},
    )
    region: str = field(default="", metadata={"doc": "this server's region (Cassandra local DC)"})
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
    default_phone_region: str = field(default="US", metadata={"doc": "region for national"})
    message_ttl: float = field(default=30 * 86400.0, metadata={"doc": "seconds a message lives"})
    pending_cap: int = field(default=10_000, metadata={"doc": "undelivered messages per box"})
    max_message_bytes: int = field(default=65_536, metadata={"doc": "ciphertext size limit"})
    max_recipients: int = field(default=1000, metadata={"doc": "messages per Send"})
    max_contacts: int = field(default=3, metadata={"doc": "contacts per Register"})
    code_ttl: int = field(default=600, metadata={"doc": "seconds a code stays valid"})
    code_attempts: int = field(default=5, metadata={"doc": "wrong codes before a new one"})
    resend_interval: float = field(default=30.0, metadata={"doc": "seconds between resends"})
    hawk_skew: float = field(default=60.0, metadata={"doc": "allowed clock skew, seconds"})
    grace: float = field(default=10.0, metadata={"doc": "seconds in-flight RPCs get on stop"})

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
        return out


_CHOICES: Mapping[str, Sequence[str]] = {
    "log_format": ("auto", "console", "json"),
    "log_level": ("debug", "info", "warning", "error"),
    "notifier": ("outbox", "smtp", "webhook", "route"),
    "smtp_security": ("none", "starttls", "tls"),
    "phone_via": ("webhook", "outbox"),
}


def _convert(name: str, raw: Any, kind: Any) -> Any:
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
    except ConfigError as exc:
        raise ConfigError(f"invalid setting {exc}") from None
    for name in (
        "pending_cap",
        "max_message_bytes",
        "max_recipients",
        "max_contacts",
        "code_ttl",
        "code_attempts",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"invalid setting {name}: must be at least 1")
    for name in ("message_ttl", "hawk_skew", "notifier_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"invalid setting {name}: must be positive")
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
    if key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
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
            help=f"{f.metadata.get('doc', '')} (env ROSSBY_{f.name.upper()})",
        )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    flags = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(flags, environ, getattr(args, "config", None))


__all__ = ["Settings", "add_flags", "load_settings", "settings_from_args"]
