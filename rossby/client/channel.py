"""Channels to a Rossby server: plaintext, TLS, or mutual TLS.

One helper for the SDK, the ``rossby client`` CLI, the load generator and
tests, so every caller dials the same way::

    channel = make_channel("rossby.example.org:1205", tls=True)            # system roots
    channel = make_channel(target, tls=True, ca=Path("ca.pem").read_bytes())
    channel = make_channel(target, ca=ca, client_cert=cert, client_key=key)  # mutual TLS

Giving ``ca`` or a client certificate implies TLS. Hawk is unaffected: it
signs the server's public host and port whatever the transport.

CLIs add the options with ``add_tls_arguments(parser)`` and build the
channel with ``channel_from_args(target, args)``: ``--tls``, ``--ca FILE``,
``--client-cert FILE``, ``--client-key FILE``, ``--server-name NAME``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import grpc

from rossby.client.state import TlsConfig

#: The SDK's HTTP/2 keepalive. It pings only while a call is open (a
#: ``listen`` stream, a slow unary call), so a connection that died without
#: a FIN or RST (a phone changing networks, a NAT that forgot the flow) is
#: given up after about 80 s instead of a TCP timeout of many minutes, and
#: ``listen`` reconnects. The server refuses pings closer together than its
#: ``keepalive_min_interval`` (30 s by default, at most 60: config refuses
#: more) with GOAWAY "too_many_pings" after two strikes, so this interval
#: must stay at or above it. ``max_pings_without_data`` 0: without it gRPC
#: stops pinging after two pings on a stream that only receives, which is
#: exactly the long-lived Subscribe stream.
KEEPALIVE_TIME_MS: Final = 60_000
KEEPALIVE_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.ping_timeout_ms", 20_000),  # what gRPC core waits for the ack
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)


def make_channel(
    target: str,
    *,
    tls: bool = False,
    ca: bytes | None = None,
    client_cert: bytes | None = None,
    client_key: bytes | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``target`` ("host:port").

    ``ca``: PEM roots that signed the server's certificate (None: the
    system's). ``client_cert``/``client_key``: PEM certificate chain and key
    for a server that requires mutual TLS; both or neither.
    ``server_name``: the name to check the server certificate against when
    it differs from the host dialled. ``options`` are added to (and
    override, by name) ``KEEPALIVE_OPTIONS``.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    merged: dict[str, Any] = dict(KEEPALIVE_OPTIONS)
    merged.update(dict(options))
    opts = list(merged.items())
    if not (tls or ca is not None or client_cert is not None):
        if server_name is not None:
            raise ValueError("server_name needs TLS")
        return grpc.aio.insecure_channel(target, options=opts)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=client_key, certificate_chain=client_cert
    )
    if server_name is not None:
        opts.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(target, credentials, options=opts)


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls``, ``--ca``, ``--client-cert``, ``--client-key``, ``--server-name``."""
    group = parser.add_argument_group("transport security")
    group.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    group.add_argument("--ca", metavar="FILE", help="PEM CA that signed the server (implies --tls)")
    group.add_argument("--client-cert", metavar="FILE", help="PEM client certificate (mutual TLS)")
    group.add_argument("--client-key", metavar="FILE", help="PEM key of --client-cert")
    group.add_argument("--server-name", metavar="NAME", help="expected name in the server cert")


def channel_from_args(
    target: str, args: argparse.Namespace, *, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """``make_channel`` from options added by ``add_tls_arguments``.

    Raises ``ValueError`` with a one-line message for an unreadable file or
    an incomplete pair.
    """
    return make_channel(
        target,
        tls=bool(getattr(args, "tls", False)),
        ca=_read(getattr(args, "ca", None), "--ca"),
        client_cert=_read(getattr(args, "client_cert", None), "--client-cert"),
        client_key=_read(getattr(args, "client_key", None), "--client-key"),
        server_name=getattr(args, "server_name", None),
        options=options,
    )


def tls_config_from_args(args: argparse.Namespace) -> TlsConfig | None:
    """The ``TlsConfig`` a client keeps from ``init``/``join``; None without ``--tls``."""
    if not getattr(args, "tls", False):
        return None
    return TlsConfig(
        ca=_read(getattr(args, "ca", None), "--ca"),
        client_cert=_read(getattr(args, "client_cert", None), "--client-cert"),
        client_key=_read(getattr(args, "client_key", None), "--client-key"),
        server_name=getattr(args, "server_name", None),
    )


__all__ = [
    "KEEPALIVE_OPTIONS",
    "KEEPALIVE_TIME_MS",
    "add_tls_arguments",
    "channel_from_args",
    "make_channel",
    "tls_config_from_args",
]
