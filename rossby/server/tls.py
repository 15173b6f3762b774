"""TLS from the ``tls_*`` settings: the server's credentials and its channels to peers.

The public port and the Peer port serve the same certificate, and a process
dials its peers with the matching client side; both read the same files,
so they live together here (used by the server, the real-time Peer port and
the ``--workers`` preflight).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from rossby.config import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from ``tls_cert``/``tls_key`` (None: plaintext).

    With ``tls_client_ca`` the server asks for a client certificate and
    refuses a client without one signed by that CA (mutual TLS).
    """
    if not settings.tls_cert:
        return None
    try:
        cert = Path(settings.tls_cert).read_bytes()
        key = Path(settings.tls_key).read_bytes()
        client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise OSError(f"cannot read TLS files: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def peer_channel_factory(settings: Settings) -> Callable[[str], grpc.aio.Channel]:
    """Channels to peers: plaintext, or TLS when this server serves TLS.

    With TLS, peers' certificates are checked against ``peer_tls_ca`` (else
    the system roots) under the name ``public_host`` when set; with mutual
    TLS the server presents its own certificate as the client certificate.
    """
    if not settings.tls_cert:
        return lambda address: grpc.aio.insecure_channel(address)
    ca = Path(settings.peer_tls_ca).read_bytes() if settings.peer_tls_ca else None
    cert = key = None
    if settings.tls_client_ca:
        cert = Path(settings.tls_cert).read_bytes()
        key = Path(settings.tls_key).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    options = []
    if settings.public_host:
        options.append(("grpc.ssl_target_name_override", settings.public_host))
    return lambda address: grpc.aio.secure_channel(address, credentials, options=options)


__all__ = ["peer_channel_factory", "server_credentials"]
