"""Configuration precedence and validation (flags > env > TOML > defaults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rossby.config import Settings, load_settings
from rossby.errors import ConfigError


def test_defaults_are_a_working_sqlite_setup() -> None:
    s = load_settings({}, environ={})
    assert s.store.startswith("sqlite:///")
    assert (s.listen_host, s.listen_port) == ("127.0.0.1", 1205)
    assert (s.hawk_host, s.hawk_port) == ("127.0.0.1", 1205)


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "rossby.toml"
    cfg.write_text('listen = "127.0.0.1:1111"\npending_cap = 7\n[smtp]\nfrom = "a@b.c"\n')
    env = {"ROSSBY_PENDING_CAP": "8", "ROSSBY_CONFIG": str(cfg)}
    s = load_settings({}, environ=env)
    assert s.listen == "127.0.0.1:1111"  # from the file
    assert s.pending_cap == 8  # env beats file
    assert s.smtp_from == "a@b.c"  # TOML sections are prefixes
    s = load_settings({"pending_cap": "9"}, environ=env)
    assert s.pending_cap == 9  # flag beats env


def test_secret_from_file_and_redacted(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("ab" * 32 + "\n")
    s = load_settings({}, environ={"ROSSBY_CONTACT_HASH_KEY_FILE": str(key)})
    assert s.contact_hash_key == "ab" * 32
    assert s.redacted()["contact_hash_key"] == "***"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"listen": "nope"}, "listen"),
        ({"store": "mysql://x"}, "store"),
        ({"pending_cap": "0"}, "pending_cap"),
        ({"pending_cap": "many"}, "pending_cap"),
        ({"log_format": "xml"}, "log_format"),
        ({"contact_hash_key": "zz"}, "contact_hash_key"),
        ({"notifier": "webhook"}, "webhook_url"),
        ({"store": "cassandra:///ks"}, "store"),
    ],
)
def test_invalid_setting_names_it(flags: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid setting {named}"):
        load_settings(flags, environ={})


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "rossby.toml"
    cfg.write_text("lisen = 1\n")
    with pytest.raises(ConfigError, match="invalid setting lisen: unknown key"):
        load_settings({}, environ={}, config_file=str(cfg))


def test_cli_exits_2_with_one_line_before_binding() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rossby",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--max-recipients",
            "-3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["rossby: invalid setting max_recipients: must be at least 1"]


def test_every_setting_has_a_doc() -> None:
    from dataclasses import fields

    assert all(f.metadata.get("doc") for f in fields(Settings))
