"""Which connect failures the Cassandra bridge tries again (``garbled_handshake``):
only the driver's checksum error on every host's first frame, never a
refused, timed-out or rejected connection (those must fail at once)."""

from __future__ import annotations

from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionShutdown

from rossby.store.cassandra.driver import garbled_handshake

CRC = ConnectionShutdown('CRC mismatch on header e302bb. Received 85c0d0", computed 1008c9.')


def test_a_checksum_error_on_every_host_is_tried_again() -> None:
    payload = ConnectionShutdown('CRC mismatch on payload. Received 1", computed 2.')
    failed = NoHostAvailable("Unable to connect to any servers", {"a:9042": CRC, "b": payload})
    assert garbled_handshake(failed)


def test_any_other_failure_is_not() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    mixed = NoHostAvailable("Unable", {"a:9042": CRC, "b:9042": refused})
    assert not garbled_handshake(mixed)
    assert not garbled_handshake(NoHostAvailable("Unable", {"a:9042": refused}))
    login = AuthenticationFailed("bad credentials")
    assert not garbled_handshake(NoHostAvailable("Unable", {"a:9042": login}))
    assert not garbled_handshake(NoHostAvailable("Unable", {}))
    assert not garbled_handshake(ConnectionShutdown("CRC mismatch on header 1"))  # not wrapped
    assert not garbled_handshake(
        NoHostAvailable("Unable", {"a:9042": ConnectionShutdown("closed")})
    )
