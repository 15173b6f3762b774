"""Validation of the operations settings, and the client channel helper's arguments."""

from __future__ import annotations

import argparse

import pytest

from rossby.client.channel import add_tls_arguments, channel_from_args, make_channel
from rossby.config import Settings, load_settings
from rossby.errors import ConfigError
from rossby.server.workers import worker_count


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"workers": "-1"}, "workers"),
        ({"workers": "many"}, "workers"),
        ({"metrics_listen": "9205"}, "metrics_listen"),
        ({"metrics_listen": "127.0.0.1:99999"}, "metrics_listen"),
        ({"metrics_listen": "127.0.0.1:1205", "listen": "127.0.0.1:1205"}, "metrics_listen"),
        ({"health_interval": "0"}, "health_interval"),
        ({"health_timeout": "-2"}, "health_timeout"),
    ],
)
def test_operations_settings_are_validated(flags: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid setting {named}"):
        load_settings(flags, environ={})


def test_metrics_can_be_disabled_and_workers_default_to_the_cpus() -> None:
    settings = load_settings({"metrics_listen": ""}, environ={"ROSSBY_WORKERS": "3"})
    assert settings.metrics_listen == "" and worker_count(settings) == 3
    assert worker_count(Settings()) >= 1


def test_redacted_hides_secrets_in_the_webhook_url() -> None:
    s = Settings(webhook_url="https://user:pw@hooks.example.org:8443/T0K3N?sig=abc")
    assert s.redacted()["webhook_url"] == "https://hooks.example.org:8443/***"
    assert Settings(webhook_url="https://h.example").redacted()["webhook_url"] == (
        "https://h.example"
    )


async def test_make_channel_refuses_incomplete_arguments() -> None:
    with pytest.raises(ValueError, match="go together"):
        make_channel("127.0.0.1:1", client_cert=b"cert")
    with pytest.raises(ValueError, match="needs TLS"):
        make_channel("127.0.0.1:1", server_name="x")
    parser = argparse.ArgumentParser()
    add_tls_arguments(parser)
    args = parser.parse_args(["--ca", "/nonexistent/ca.pem"])
    with pytest.raises(ValueError, match="cannot read --ca"):
        channel_from_args("127.0.0.1:1", args)
    plain = channel_from_args("127.0.0.1:1", parser.parse_args([]))
    await plain.close()
