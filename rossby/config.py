"""Server configuration: one frozen, typed object built once at start-up.

Precedence: command-line flags, then ``ROSSBY_*`` environment variables,
then an optional TOML file (``--config`` / ``ROSSBY_CONFIG``), then the
defaults, which are a working single-node SQLite setup. Every key is a
field of ``Settings`` (``rossby.settings``); its flag is
``--key-with-dashes`` and its variable ``ROSSBY_KEY_IN_CAPS``. Secrets may
also come from ``<key>_file``.

This module loads; validation (``rossby.configcheck``) happens before any
port is bound and fails with one ``ConfigError`` line that names the
setting. ``Settings`` and the key sets are importable from here as before.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from rossby.configcheck import MAX_CONTACT_WINDOW, SDK_PING_INTERVAL, validate
from rossby.errors import ConfigError
from rossby.settings import CASSANDRA_KEYS, EXPIRED_GRACE, FILE_KEYS, SECRET_KEYS, Settings

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
    return validate(replace(Settings(), **merged))


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
    "CASSANDRA_KEYS",
    "EXPIRED_GRACE",
    "FILE_KEYS",
    "MAX_CONTACT_WINDOW",
    "SDK_PING_INTERVAL",
    "SECRET_KEYS",
    "Settings",
    "add_flags",
    "load_settings",
    "settings_from_args",
]
