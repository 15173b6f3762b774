"""Configuration precedence and validation (flags > env > TOML > defaults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rossby.config import Settings, load_settings
from rossby.errors import ConfigError
from rossby.pushspec import host_allowed, parse_allowed_hosts, parse_gateways
from rossby.server.hawkkeys import HawkKeyring


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


CASSANDRA = "cassandra://127.0.0.1:9042/ks?local_dc=dc1"


def test_store_login_from_files_tls_settings_and_redaction(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("rossby\n")
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "keys").write_text(f"2:{'cd' * 32}\n1:{'ab' * 32}\n")
    env = {
        "ROSSBY_STORE": CASSANDRA,
        "ROSSBY_CASSANDRA_USERNAME_FILE": str(tmp_path / "user"),
        "ROSSBY_CASSANDRA_PASSWORD_FILE": str(tmp_path / "pw"),
        "ROSSBY_CASSANDRA_TLS_CA": __file__,
        "ROSSBY_CASSANDRA_TLS_CHECK_HOSTNAME": "false",
        "ROSSBY_HAWK_KEYS_FILE": str(tmp_path / "keys"),
    }
    s = load_settings({}, environ=env)
    assert (s.cassandra_username, s.cassandra_password) == ("rossby", "s3cret")
    assert s.cassandra_tls_check_hostname is False
    assert load_settings({}, environ={}).cassandra_tls_check_hostname is True
    shown = s.redacted()
    assert shown["cassandra_password"] == "***" and shown["hawk_keys"] == "***"
    assert shown["cassandra_username"] == "rossby"
    assert HawkKeyring.from_text(s.hawk_keys).key_ids == (2, 1)


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
        ({"hawk_keys": "1:abcd"}, "hawk_keys"),
        ({"hawk_keys": "x:" + "ab" * 16}, "hawk_keys"),
        ({"hawk_keys": f"1:{'ab' * 16},1:{'cd' * 16}"}, "hawk_keys"),
        ({"hawk_keys": "0:" + "ab" * 16}, "hawk_keys"),
        ({"cassandra_username": "rossby", "cassandra_password": "pw"}, "cassandra_username"),
        ({"store": CASSANDRA, "cassandra_username": "rossby"}, "cassandra_password"),
        ({"store": CASSANDRA, "cassandra_tls_ca": "/nonexistent/ca.pem"}, "cassandra_tls_ca"),
        ({"store": CASSANDRA, "cassandra_tls_cert": __file__}, "cassandra_tls_key"),
        (
            {"store": CASSANDRA, "cassandra_tls_cert": __file__, "cassandra_tls_key": __file__},
            "cassandra_tls_ca",
        ),
        (
            {"store": CASSANDRA, "cassandra_tls_check_hostname": "maybe"},
            "cassandra_tls_check_hostname",
        ),
        ({"presence_cache_ttl": "-1"}, "presence_cache_ttl"),
        ({"presence_cache_ttl": "11"}, "presence_cache_ttl"),
        ({"presence_cache_ttl": "5", "presence_ttl": "5"}, "presence_cache_ttl"),
    ],
)
def test_invalid_setting_names_it(flags: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid setting {named}"):
        load_settings(flags, environ={})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"register_contact_limit": "-1"}, "register_contact_limit: must be 0 (off) to 1000"),
        ({"register_contact_limit": "1001"}, "register_contact_limit: must be 0 (off) to 1000"),
        ({"register_contact_limit": "5.5"}, "register_contact_limit: '5.5' is not an integer"),
        ({"register_contact_ceiling": "-1"}, "register_contact_ceiling: must be 0 (off) to"),
        (
            {"register_contact_limit": "5", "register_contact_ceiling": "4"},
            "register_contact_ceiling: below register_contact_limit",
        ),
        ({"register_contact_window": "0"}, "register_contact_window: must be positive"),
        ({"register_contact_window": "4e7"}, "register_contact_window: must be positive"),
        ({"register_rate_per_address": "lots"}, "register_rate_per_address: 'lots' is not a"),
        ({"register_rate_per_address": "0/hour"}, "register_rate_per_address: '0/hour' is"),
        ({"authorize_failures_per_address": "5/fortnight"}, "authorize_failures_per_address:"),
    ],
)
def test_invalid_abuse_limits_are_one_line_errors(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, environ={})
    text = str(caught.value)
    assert text.startswith(f"invalid setting {message}"), text
    assert "\n" not in text


def test_abuse_limits_default_on_and_zero_is_off() -> None:
    s = load_settings({}, environ={})
    assert (s.register_contact_limit, s.register_contact_window) == (5, 3600.0)
    assert s.register_contact_ceiling == 20
    assert s.register_rate_per_address == "30/hour"
    # Per registration attempts are exact; the address one is a NAT-sized ceiling.
    assert s.authorize_failures_per_address == "300/hour"
    off = {
        "register_contact_limit": "0",
        "register_rate_per_address": "0",
        "authorize_failures_per_address": "off",
    }
    assert load_settings(off, environ={}).register_contact_limit == 0


def test_cli_refuses_a_bad_address_limit_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rossby", "serve", "--register-rate-per-address", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rossby: invalid setting register_rate_per_address: 'lots' is not a rate like"
        " '20/hour' or '0' (off)"
    ]


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


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_help_lists_every_setting(command: str) -> None:
    """argparse %-formats help text: one stray "%" in a doc broke ``--help``."""
    from dataclasses import fields

    done = subprocess.run(
        [sys.executable, "-m", "rossby", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for f in fields(Settings):
        assert f"--{f.name.replace('_', '-')}" in done.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"send_rate_per_device": "lots"}, "send_rate_per_device: 'lots' is not a rate"),
        ({"send_rate_per_device": "0/minute"}, "send_rate_per_device: '0/minute' is not a rate"),
        ({"send_rate_per_device": "999/minute"}, "send_rate_per_device: '999/minute' allows fewer"),
        (
            {"send_rate_per_device": "50/minute", "max_recipients": "51"},
            "send_rate_per_device: '50/minute' allows fewer messages than one Send of "
            "max_recipients (51)",
        ),
        ({"account_rate_per_device": "1/fortnight"}, "account_rate_per_device: '1/fortnight'"),
        ({"stream_max_age": "0"}, "stream_max_age: must be positive"),
        ({"stream_write_timeout": "-1"}, "stream_write_timeout: must be positive"),
        ({"stream_write_timeout": "10"}, "stream_write_timeout: must be at least stream_stall"),
        ({"keepalive_time": "0"}, "keepalive_time: must be positive"),
        ({"keepalive_timeout": "0"}, "keepalive_timeout: must be positive"),
        ({"keepalive_min_interval": "61"}, "keepalive_min_interval: at most 60"),
        ({"connection_idle": "soon"}, "connection_idle: 'soon' is not a number"),
    ],
)
def test_invalid_send_and_stream_limits_are_one_line_errors(
    flags: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, environ={})
    text = str(caught.value)
    assert text.startswith(f"invalid setting {message}"), text
    assert "\n" not in text


@pytest.mark.parametrize("off", ["0", "off", ""])
def test_send_rate_zero_is_off_whatever_max_recipients(off: str) -> None:
    s = load_settings({"send_rate_per_device": off, "max_recipients": "5000"}, environ={})
    assert s.send_rate_per_device == off


def test_default_limits_fit_and_keep_sdk_clients_connected() -> None:
    from rossby.client.channel import KEEPALIVE_OPTIONS, KEEPALIVE_TIME_MS
    from rossby.config import SDK_PING_INTERVAL
    from rossby.server.ratelimit import parse_limit

    s = load_settings({}, environ={})
    send = parse_limit("send_rate_per_device", s.send_rate_per_device)
    assert send is not None and send.amount >= s.max_recipients  # one full group Send fits
    # The SDK never pings faster than the server accepts, and config cannot
    # be set to want slower pings than the SDK sends.
    assert KEEPALIVE_TIME_MS == SDK_PING_INTERVAL * 1000
    assert s.keepalive_min_interval * 1000 <= KEEPALIVE_TIME_MS
    # Without this gRPC stops pinging after two pings on a receive-only stream.
    assert dict(KEEPALIVE_OPTIONS)["grpc.http2.max_pings_without_data"] == 0
    assert s.stream_write_timeout >= s.stream_stall


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"push_gateways": "com.example.app"}, "push_gateways: entries are"),
        ({"push_gateways": "=https://gw.example"}, "push_gateways: entries are"),
        ({"push_gateways": "a=ftp://gw.example"}, "push_gateways: the gateway of 'a'"),
        ({"push_gateways": "a=https://gw.example?t=1"}, "push_gateways: the gateway of 'a'"),
        ({"push_gateways": "a=https://x.example,a=https://y.example"}, "push_gateways: 'a'"),
        ({"push_webpush_allowed_hosts": "*.a.example,*"}, "push_webpush_allowed_hosts"),
        ({"push_webpush_allowed_hosts": "a.example/path"}, "push_webpush_allowed_hosts"),
        ({"push_coalesce_seconds": "0"}, "push_coalesce_seconds"),
        ({"push_retry_attempts": "0"}, "push_retry_attempts"),
        ({"push_concurrency": "0"}, "push_concurrency"),
        ({"push_target_cache_ttl": "61"}, "push_target_cache_ttl"),
        ({"push_vapid_private_key_file": "/nonexistent/vapid.pem"}, "push_vapid_private_key"),
    ],
)
def test_bad_push_settings_are_refused(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, environ={})
    text = str(caught.value)
    assert text.startswith(f"invalid setting {message}"), text
    assert "gw.example" not in text  # a gateway URL is never echoed


def test_push_gateways_and_allowed_hosts_parse() -> None:
    gateways = parse_gateways("g", " com.a = https://gw.example/base/ , org.b=http://10.0.0.2:5000")
    assert gateways == {
        "com.a": "https://gw.example/base/_matrix/push/v1/notify",
        "org.b": "http://10.0.0.2:5000/_matrix/push/v1/notify",
    }
    patterns = parse_allowed_hosts("h", load_settings({}, environ={}).push_webpush_allowed_hosts)
    assert host_allowed("fcm.googleapis.com", patterns)
    assert host_allowed("updates.push.services.mozilla.com", patterns)
    assert host_allowed("WEB.PUSH.APPLE.COM", patterns)
    assert not host_allowed("googleapis.com", patterns)  # *.domain is below it only
    assert not host_allowed("evilgoogleapis.com", patterns)
    assert not host_allowed("fcm.googleapis.com.evil.example", patterns)
    assert not host_allowed("127.0.0.1", patterns)
    assert host_allowed("127.0.0.1", parse_allowed_hosts("h", "127.0.0.1"))
