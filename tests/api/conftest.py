"""A real Rossby server on loopback per test, on each store backend.

The server runs in the test's event loop and is reached through a real
grpc.aio channel, exactly as a client would reach it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from rossby.client import RossbyClient
from rossby.config import load_settings
from rossby.contacts import normalize
from rossby.server.app import RossbyServer, store_options
from rossby.server.notify import read_outbox_code
from rossby.store import open_store
from tests.api.device import email
from tests.conftest import cassandra_url
from tests.support.clocks import WallClock

PASS = "correct horse battery staple"
FAST = 2**10  # scrypt cost for test keyfiles; production uses 2**17

#: ``await people("alice")`` / ``await clients(api, "alice")``: an SDK device.
Join = Callable[..., Awaitable[RossbyClient]]


class Api:
    """A running server plus what tests need to drive it. Its clock is real
    time (Hawk needs it) that expiry tests may move ahead."""

    def __init__(self, server: RossbyServer, outbox: Path, clock: WallClock) -> None:
        self.server = server
        self.outbox = outbox
        self.clock = clock
        self.target = f"127.0.0.1:{server.port}"
        self.channel = grpc.aio.insecure_channel(self.target)

    @property
    def store(self) -> Any:
        return self.server.store

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(0)


def migrate_in_thread(url: str) -> None:
    """Migrate on a private event loop, so sync fixtures can prepare stores."""

    async def go() -> None:
        async with open_store(url) as store:
            await store.migrate()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


@pytest.fixture(scope="session")
def cassandra_api_url(cassandra_hosts: list[str]) -> str:
    url = cassandra_url(cassandra_hosts, "rossby_api", replication="dc1:1")
    migrate_in_thread(url)
    return url


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'rossby.db'}"
        migrate_in_thread(url)
        return url
    return str(request.getfixturevalue("cassandra_api_url"))


#: ``await make_api(setting=value, ...)``: a started server (see ``make_api``).
MakeApi = Callable[..., Awaitable["Api"]]


@pytest.fixture
async def make_api(store_url: str, tmp_path: Path) -> AsyncIterator[MakeApi]:
    """Start servers with chosen settings; all share one store database."""
    url = store_url
    started: list[Api] = []

    async def make(**overrides: Any) -> Api:
        outbox = tmp_path / "outbox"
        flags = {
            "listen": "127.0.0.1:0",
            "store": url,
            "state_dir": str(tmp_path / "state"),
            "outbox_dir": str(outbox),
            "log_format": "json",
            "log_level": "warning",
            **{k: str(v) for k, v in overrides.items()},
        }
        settings = load_settings(flags, environ={})
        clock = WallClock()
        server = RossbyServer(
            settings, store=open_store(url, store_options(settings, clock)), clock=clock
        )
        await server.start()
        api = Api(server, outbox, clock)
        started.append(api)
        return api

    yield make
    for api in started:
        await api.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[Join]:
    """``await clients(api, "alice")``: a registered, verified SDK device of
    ``api``'s server, at home in ``tmp_path / "alice"``; its contact is a
    fresh address unless given (``clients(api, "alice", contact)``)."""
    async with AsyncExitStack() as stack:

        async def join(api: Api, name: str, contact: str | None = None) -> RossbyClient:
            contact = contact or email(name)
            client = await stack.enter_async_context(
                RossbyClient.create(
                    tmp_path / name,
                    PASS,
                    server=api.target,
                    contacts=[contact],
                    device_name=f"{name}-phone",
                    scrypt_n=FAST,
                )
            )
            await client.register()
            code = read_outbox_code(api.outbox, normalize("email", contact))
            assert code is not None
            await client.authorize([code])
            return client

        yield join


@pytest.fixture
def people(api: Api, clients: Join) -> Join:
    """``await people("alice")``: ``clients`` on the test's own server."""
    return functools.partial(clients, api)
