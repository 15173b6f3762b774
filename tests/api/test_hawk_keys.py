"""Hawk keys at rest (docs/security.md, "Hawk keys at rest").

* A database dump is not enough: the device row read straight from the
  database (SQL, CQL) holds no value that signs a call, and the clear key
  is nowhere in it (nor, on SQLite, anywhere in the database files).
* Rotation: a device minted under master key 1 keeps working once key 2 is
  current and key 1 still listed; once key 1 is retired it is refused,
  unless ``rossby rotate-keys`` re-wrapped its key under key 2 first.
* Upgrade: a clear key as releases before the keyring stored it still
  signs, and ``rossby rotate-keys`` wraps it in place, the device keeping
  its key.

All through a real server and a real gRPC channel, on both backends. The
Cassandra variant uses its own keyspace, so every device in it was wrapped
under this module's master keys (``rotate-keys`` counts the whole store).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import logging
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from cassandra.cluster import Cluster
from cassandra.query import dict_factory

from rossby.cli import main as rossby_main
from rossby.client.hawk import HawkSigner
from rossby.server.hawkkeys import HAWK_KEY_BYTES, WRAPPED_BYTES, is_legacy, stored_key_id
from rossby.store import Box, DeviceKeys, DeviceState, parse_store_url
from rossby.store import Device as StoredDevice
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from tests.api.conftest import Api, MakeApi, migrate_in_thread
from tests.api.device import Device, email, reason
from tests.conftest import cassandra_url

K1 = "1:" + "11" * 32
K2 = "2:" + "22" * 32
K3 = "3:" + "33" * 32
KEYSPACE = "rossby_hawk_keys"


@pytest.fixture(scope="module")
def cassandra_api_url(cassandra_hosts: list[str]) -> str:
    """This module's own keyspace (overrides the session's ``rossby_api``),
    made afresh: rows left by an earlier run, wrapped under keys this run
    does not know, would make every ``rotate-keys`` exit 1."""
    url = cassandra_url(cassandra_hosts, KEYSPACE, replication="dc1:1")
    parsed = parse_store_url(url)
    cluster = Cluster(list(parsed.hosts), port=parsed.port, protocol_version=PROTOCOL_VERSION)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=60)
    finally:
        cluster.shutdown()
    migrate_in_thread(url)
    return url


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """Every server of this module knows key 1, so ``rotate-keys`` can open
    every row in the store."""
    return await make_api(hawk_keys=K1)


def via(device: Device, api: Api) -> Device:
    """The same device, same credentials, talking to another server."""
    assert device.signer is not None
    other = copy.copy(device)
    other.api = api
    other.signer = HawkSigner(
        device.signer.credentials_id, device.hawk_key, "127.0.0.1", api.server.port
    )
    return other


def signing_with(device: Device, key: bytes) -> Device:
    assert device.signer is not None
    other = copy.copy(device)
    other.signer = HawkSigner(
        device.signer.credentials_id, key, "127.0.0.1", device.api.server.port
    )
    return other


async def refused(device: Device) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await device.fetch()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    return reason(caught.value)


def raw_device_row(api: Api, box_id: uuid.UUID, device_id: uuid.UUID) -> dict[str, Any]:
    """The device's row as a dump shows it: every column, straight from the
    database, without Rossby's code in between."""
    url = parse_store_url(api.server.settings.store)
    if url.scheme == "sqlite":
        with sqlite3.connect(url.path) as db:
            db.row_factory = sqlite3.Row
            row = db.execute(
                "SELECT * FROM devices WHERE box_id = ? AND device_id = ?",
                (box_id.bytes, device_id.bytes),
            ).fetchone()
            assert row is not None
            return dict(row)
    cluster = Cluster(list(url.hosts), port=url.port, protocol_version=PROTOCOL_VERSION)
    try:
        session = cluster.connect()
        session.row_factory = dict_factory
        found = session.execute(
            f"SELECT * FROM {url.keyspace}.boxes WHERE box_id = %s AND device_id = %s",
            (box_id, device_id),
        ).one()
        assert found is not None
        return dict(found)
    finally:
        cluster.shutdown()


def candidate_keys(row: dict[str, Any]) -> Iterator[bytes]:
    """Everything in the row an attacker could try as a Hawk key: each
    value's bytes, and every 32-byte window of each."""
    for value in row.values():
        if isinstance(value, bytes | bytearray | memoryview):
            blob = bytes(value)
        elif isinstance(value, str | uuid.UUID):
            blob = str(value).encode()
        else:
            continue
        yield blob
        for i in range(max(len(blob) - HAWK_KEY_BYTES + 1, 0)):
            yield blob[i : i + HAWK_KEY_BYTES]


async def test_a_database_dump_holds_nothing_that_signs(api: Api) -> None:
    alice = await Device(api, email("dumped")).join()
    assert alice.box_id is not None
    await alice.fetch()  # the real key works
    row = await asyncio.to_thread(raw_device_row, api, alice.box_id, alice.device_id)
    tried = set(candidate_keys(row))
    assert len(tried) > 30
    for key in tried:
        assert await refused(signing_with(alice, key)) == "HAWK_BAD_MAC"
    stored = bytes(row["hawk_key"])
    assert len(stored) == WRAPPED_BYTES and stored_key_id(stored) is not None
    for value in row.values():
        if isinstance(value, bytes | bytearray | memoryview):
            assert alice.hawk_key not in bytes(value), "the clear Hawk key is in the row"
    url = parse_store_url(api.server.settings.store)
    if url.scheme == "sqlite":
        for path in Path(url.path).parent.glob(Path(url.path).name + "*"):
            assert alice.hawk_key not in path.read_bytes(), f"the clear Hawk key is in {path}"


async def test_a_wrapped_key_moved_to_another_device_does_not_open(api: Api) -> None:
    """The box and device ids are bound in: an attacker who can write the
    database cannot give a victim device a wrapped key he knows."""
    alice = await Device(api, email("alice")).join()
    mallory = await Device(api, email("mallory")).join()
    assert alice.box_id is not None and mallory.box_id is not None
    theirs = await api.store.get_device(mallory.box_id, mallory.device_id)
    own = await api.store.get_device(alice.box_id, alice.device_id)
    await api.store.set_hawk_key(alice.box_id, alice.device_id, theirs.hawk_key)
    try:
        assert await refused(signing_with(alice, mallory.hawk_key)) == "HAWK_UNKNOWN_ID"
        assert await refused(alice) == "HAWK_UNKNOWN_ID"
    finally:  # leave no unopenable row for the rotate-keys tests
        await api.store.set_hawk_key(alice.box_id, alice.device_id, own.hawk_key)
    await alice.fetch()


async def rotate_keys(api: Api, keys: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """``rossby rotate-keys`` as an operator runs it, against the test's store."""
    settings = api.server.settings
    argv = ["rotate-keys", "--store", settings.store, "--hawk-keys", keys, *extra]
    argv += ["--state-dir", settings.state_dir, "--log-level", "error"]
    out: list[str] = []

    def run() -> int:
        # The CLI configures logging for the whole process (level error
        # here); put it back, or later tests' info events vanish.
        saved = structlog.get_config()
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                code = rossby_main(argv)
        finally:
            structlog.configure(**saved)
            root.handlers[:] = handlers
            root.setLevel(level)
        out.append(buffer.getvalue())
        return code

    code = await asyncio.to_thread(run)
    return code, json.loads(out[0].strip().splitlines()[-1])


async def stored(api: Api, device: Device) -> bytes:
    assert device.box_id is not None
    row = await api.store.get_device(device.box_id, device.device_id)
    return bytes(row.hawk_key)


async def test_rotation_keeps_old_devices_until_their_key_is_retired(
    make_api: Callable[..., Any],
) -> None:
    one = await make_api(hawk_keys=K1)
    old = await Device(one, email("old")).join()
    assert stored_key_id(await stored(one, old)) == 1

    # Key 2 is current, key 1 still listed: the old device keeps working,
    # a new one is minted under key 2.
    both = await make_api(hawk_keys=f"{K2},{K1}")
    await via(old, both).fetch()
    new = await Device(both, email("new")).join()
    assert stored_key_id(await stored(both, new)) == 2

    # Key 1 retired before re-wrapping: the old device is refused (and
    # stays refused: refusals are not cached), the new one is not.
    only_two = await make_api(hawk_keys=K2)
    assert await refused(via(old, only_two)) == "HAWK_UNKNOWN_ID"
    await via(new, only_two).fetch()
    # rotate-keys without key 1 cannot help, and says so.
    code, report = await rotate_keys(one, K2)
    assert code == 1 and report["unavailable"].get("1", 0) >= 1

    # A dry run changes nothing; the real run re-wraps under key 2.
    code, report = await rotate_keys(one, f"{K2},{K1}", "--dry-run")
    assert code == 0 and report["rewrapped"].get("1", 0) >= 1
    assert stored_key_id(await stored(one, old)) == 1
    code, report = await rotate_keys(one, f"{K2},{K1}")
    assert code == 0 and report["rewrapped"].get("1", 0) >= 1 and report["unavailable"] == {}
    assert stored_key_id(await stored(one, old)) == 2
    # Now key 1 can go: the device, with the key it always had, works
    # with key 2 alone, and not under a keyring without key 2.
    await via(old, only_two).fetch()
    code, report = await rotate_keys(one, f"{K2},{K1}")
    assert code == 0 and report["rewrapped"] == {} and report["legacy"] == 0
    only_three = await make_api(hawk_keys=K3)
    assert await refused(via(old, only_three)) == "HAWK_UNKNOWN_ID"


async def test_upgrade_wraps_clear_keys_left_by_schema_6(make_api: Callable[..., Any]) -> None:
    """A device as a release before the keyring stored it: the Hawk key
    in clear in its row. It still signs on the new release (a rolling
    upgrade keeps it working); ``rotate-keys`` wraps it, and it keeps
    working with the same key."""
    api = await make_api(hawk_keys=f"{K2},{K1}")
    legacy = await Device(api, email("legacy")).join()
    assert legacy.box_id is not None
    clear = secrets.token_bytes(HAWK_KEY_BYTES)
    # What a schema-6 server wrote for a new box: the same columns, clear key.
    box_id, device_id = uuid.uuid4(), uuid.uuid4()
    pub = legacy.keys.public()
    await api.store.create_box(
        Box(box_id, "dc1", api.clock()),
        StoredDevice(
            box_id=box_id,
            device_id=device_id,
            name="old phone",
            keys=DeviceKeys(
                pub.encryption_public, pub.signing_public, legacy.keys.key_signature(device_id)
            ),
            hawk_key=clear,
            state=DeviceState.ACTIVE,
            created_at=api.clock(),
        ),
    )
    old = copy.copy(legacy)
    old.box_id, old.device_id, old.hawk_key = box_id, device_id, clear
    old.signer = HawkSigner(f"{box_id}.{device_id}", clear, "127.0.0.1", api.server.port)
    await old.fetch()
    assert is_legacy(await stored(api, old))

    code, report = await rotate_keys(api, f"{K2},{K1}")
    assert code == 0 and report["legacy"] >= 1 and report["unavailable"] == {}
    wrapped = await stored(api, old)
    assert stored_key_id(wrapped) == 2 and clear not in wrapped
    row = await asyncio.to_thread(raw_device_row, api, box_id, device_id)
    assert all(clear not in bytes(v) for v in row.values() if isinstance(v, bytes))
    fresh = await make_api(hawk_keys=K2)  # a server with no cached key
    await via(old, fresh).fetch()
