"""The Rossby gRPC service (filled in by the API work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from rossby.server.app import RossbyServer


def add_rossby_service(server: grpc.aio.Server, app: RossbyServer) -> None:
    """Register the Rossby service's handlers on ``server``."""
