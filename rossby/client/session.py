"""One unlocked device: its keyfile, its state, its home lock and its signed channel.

Every other part of the client (directory, messaging, devices, account)
gets the session at construction and goes through it for the three things
only a device has: the Hawk credentials that sign each call, the keys and
state that must be saved under the device's key, and the lock that keeps a
second process out of the home. The passphrase never leaves it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from rossby.client.channel import make_channel
from rossby.client.errors import ClientError, NotAuthorized, UntrustedKeys
from rossby.client.hawk import HawkSigner, call_signed, stream_signed
from rossby.client.home import (
    initialize_home,
    load_home,
    promote_staged,
    read_staged,
    rewrite_keyfile,
)
from rossby.client.models import Identity
from rossby.client.state import (
    MAX_PREVIOUS_KEYS,
    STATE,
    ClientState,
    HomeLock,
    encode_state,
    state_key,
    write_private,
)
from rossby.crypto import (
    DeviceKeyfile,
    DeviceKeyPair,
    HawkCredentials,
    InvalidSealed,
    credentials_aad,
    unseal,
)
from rossby.crypto.keyfile import DEFAULT_SCRYPT_N
from rossby.status import from_rpc_error
from rossby.v1 import rossby_pb2 as pb

SERVICE = "/rossby.v1.Rossby/"
DEFAULT_TIMEOUT = 30.0

Resp = TypeVar("Resp", bound=Message)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) -> the host and port Hawk signs for."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def now_ms() -> int:
    """Wall-clock milliseconds, as envelopes and pins record time."""
    return time.time_ns() // 1_000_000


class Session:
    """The device's keys, state, lock and channel; see the module doc.

    Build it with ``initialize`` (a new home) or ``load`` (an existing
    one); it holds the home's lock until ``close``.
    """

    def __init__(
        self,
        home: Path,
        passphrase: str,
        keyfile: DeviceKeyfile,
        state: ClientState,
        lock: HomeLock,
        *,
        rpc_timeout: float = DEFAULT_TIMEOUT,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> None:
        self.home = home
        self._passphrase = passphrase
        #: The least keyfile cost: new files get it, rewrites are raised to it.
        self._scrypt_n = scrypt_n
        self.keyfile = keyfile
        self.state = state
        self._state_key = state_key(keyfile.keys, keyfile.device_id)
        self._lock = lock
        self._timeout = rpc_timeout
        tls = state.tls
        self._channel = make_channel(
            state.server,
            tls=tls is not None,
            ca=tls.ca if tls else None,
            client_cert=tls.client_cert if tls else None,
            client_key=tls.client_key if tls else None,
            server_name=tls.server_name if tls else None,
        )
        self._signer = self._make_signer()
        self._closed = False

    @classmethod
    async def initialize(
        cls,
        home: Path,
        passphrase: str,
        keyfile: DeviceKeyfile,
        state: ClientState,
        *,
        scrypt_n: int,
        rpc_timeout: float,
    ) -> Session:
        """A new device: its state, then its keyfile, written to ``home``."""
        lock = await asyncio.to_thread(initialize_home, home, passphrase, keyfile, state, scrypt_n)
        return cls(
            home, passphrase, keyfile, state, lock, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n
        )

    @classmethod
    async def load(
        cls, home: Path, passphrase: str, *, rpc_timeout: float, scrypt_n: int
    ) -> Session:
        """Unlock the device in ``home`` (finishing an interrupted key rotation)."""
        keyfile, state, lock = await asyncio.to_thread(load_home, home, passphrase)
        return cls(
            home, passphrase, keyfile, state, lock, rpc_timeout=rpc_timeout, scrypt_n=scrypt_n
        )

    async def close(self) -> None:
        """Persist state, close the channel, release the home. Safe to call twice."""
        if self._closed:
            return
        try:
            self.save()
            self._closed = True
            await self._channel.close()
        finally:
            self._closed = True
            self._lock.release()

    # -- identity ------------------------------------------------------------

    @property
    def device_id(self) -> uuid.UUID:
        return self.keyfile.device_id

    @property
    def box_id(self) -> uuid.UUID | None:
        return self.keyfile.box_id

    @property
    def authorized(self) -> bool:
        return self.keyfile.box_id is not None and self.keyfile.hawk is not None

    def whoami(self) -> Identity:
        s = self.state
        return Identity(
            device_id=self.device_id,
            device_name=s.device_name,
            box_id=self.box_id,
            contacts=tuple(c.value for c in s.own_contacts),
            server=s.server,
            hawk_address=s.hawk_address,
            home_region=self.keyfile.home_region,
            authorized=self.authorized,
        )

    # -- keys and credentials --------------------------------------------------

    async def adopt_credentials(self, box_id: uuid.UUID, sealed: bytes, home_region: str) -> None:
        """Unseal the Hawk credentials the server sealed to this device, check
        they name this device of ``box_id``, and keep them in the keyfile.

        Shared by Authorize (a new box) and device linking (an existing one).
        """
        try:
            creds = pb.HawkCredentials.FromString(
                unseal(
                    self.keyfile.keys.encryption_private,
                    sealed,
                    aad=credentials_aad(self.device_id),
                )
            )
        except (InvalidSealed, DecodeError):
            raise UntrustedKeys(
                "the server's credentials do not open with this device's key"
            ) from None
        if creds.id != f"{box_id}.{self.device_id}" or creds.algorithm != "sha256":
            raise UntrustedKeys("the server's credentials are for another device")
        keyfile = replace(
            self.keyfile,
            box_id=box_id,
            hawk=HawkCredentials(creds.id, bytes(creds.key), creds.algorithm),
            home_region=home_region or None,
        )
        await asyncio.to_thread(
            rewrite_keyfile, self.home, keyfile, self._passphrase, self._scrypt_n
        )
        self.keyfile = keyfile
        self._signer = self._make_signer()

    async def stage_keys(self) -> DeviceKeyPair:
        """The keys a rotation moves to: those an interrupted rotation staged
        (a retry resumes with them), else new ones, staged first."""
        pending = await asyncio.to_thread(read_staged, self.home, self._passphrase)
        if pending is not None:
            return pending.keys
        new = DeviceKeyPair.generate()
        staged = replace(self.keyfile, keys=new)
        await asyncio.to_thread(
            rewrite_keyfile, self.home, staged, self._passphrase, self._scrypt_n, staged=True
        )
        return new

    async def commit_keys(self, new: DeviceKeyPair) -> None:
        """The server took the rotation: move the state to ``new``, then the keyfile."""
        self._switch_keys(new)
        await asyncio.to_thread(promote_staged, self.home)

    def _switch_keys(self, new: DeviceKeyPair) -> None:
        """Adopt ``new`` in memory and re-encrypt the state under it."""
        old = self.keyfile.keys.encryption_private_bytes()
        previous = [old, *self.state.previous_keys]
        self.state.previous_keys = previous[:MAX_PREVIOUS_KEYS]
        self.keyfile = replace(self.keyfile, keys=new)
        self._state_key = state_key(new, self.device_id)
        self.save()

    # -- plumbing ------------------------------------------------------------

    def _make_signer(self) -> HawkSigner | None:
        hawk = self.keyfile.hawk
        if hawk is None:
            return None
        host, port = split_address(self.state.hawk_address)
        return HawkSigner(hawk.id, hawk.key, host, port)

    def require_authorized(self) -> HawkSigner:
        if self._signer is None or self.keyfile.box_id is None:
            raise NotAuthorized(
                "this device is not verified yet: run `rossby client verify "
                "CODE` with the code the server sent"
            )
        return self._signer

    def save(self) -> None:
        # A fetch generator abandoned mid-way is finalized whenever the loop
        # gets to it, possibly after close, when another client may own the
        # home: a closed client must never write.
        if self._closed:
            return
        write_private(self.home / STATE, encode_state(self.state, self._state_key))

    async def call(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        """A Hawk-signed unary call; the server's answer is checked too."""
        signer = self.require_authorized()
        try:
            return await call_signed(
                self._channel,
                signer,
                SERVICE + method,
                request,
                response_type,
                deadline=self._timeout,
                require_server_authorization=True,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    async def call_public(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        """An unsigned call, for what a device does before it has credentials."""
        invoke = self._channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            return await invoke(request, timeout=self._timeout)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    def stream(
        self, method: str, request: Message, response_type: type[Resp]
    ) -> AsyncIterator[Resp]:
        """A Hawk-signed server stream (no deadline: it lives as long as the reader)."""
        signer = self.require_authorized()
        return stream_signed(self._channel, signer, SERVICE + method, request, response_type)


__all__ = ["DEFAULT_TIMEOUT", "Session", "now_ms", "split_address"]
