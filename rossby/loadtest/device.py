"""One simulated device on the raw gRPC API: register through the dev outbox, then signed calls.

Deliberately not the SDK: the load generator must cost as little CPU per
call as possible and see exactly what the server answers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Final, TypeVar

import grpc
from google.protobuf.message import Message

from rossby.client.hawk import HawkSigner, call_signed, stream_signed
from rossby.contacts import normalize
from rossby.crypto import DeviceKeyPair, credentials_aad, unseal
from rossby.loadtest.audit import DeviceAudit
from rossby.server.notify import read_outbox_code
from rossby.v1 import rossby_pb2 as pb

SERVICE: Final = "/rossby.v1.Rossby/"
CODE_POLL: Final = 0.02
CODE_WAIT: Final = 10.0

Resp = TypeVar("Resp", bound=Message)


class RegistrationFailed(RuntimeError):
    pass


def contact_for(run_id: str, user: int, device: int) -> str:
    """A contact no other run (or user) can collide with."""
    return f"lt-{run_id}-u{user}-d{device}@loadtest.example.com"


class SimDevice:
    """A device of simulated user ``user``. With linking not implemented yet,
    every device is the single device of its own box (see docs)."""

    def __init__(
        self,
        user: int,
        index: int,
        channel: grpc.aio.Channel,
        outbox: str,
        hawk_address: tuple[str, int],
        run_id: str,
    ) -> None:
        self.user = user
        self.index = index
        self.channel = channel
        self.outbox = outbox
        self.hawk_address = hawk_address
        self.contact = contact_for(run_id, user, index)
        self.keys = DeviceKeyPair.generate()
        self.device_id = uuid.uuid4()
        self.box_id = ""
        self.signer: HawkSigner | None = None
        self.audit = DeviceAudit()
        self.lock = asyncio.Lock()

    @property
    def label(self) -> str:
        return f"user {self.user} device {self.index} (box {self.box_id})"

    async def _public(
        self, method: str, request: Message, response_type: type[Resp], deadline: float
    ) -> Resp:
        call = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        reply: Resp = await call(request, timeout=deadline)
        return reply

    async def register(self, deadline: float) -> None:
        pub = self.keys.public()
        await self._public(
            "Register",
            pb.RegisterRequest(
                device_id=str(self.device_id),
                contacts=[pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value=self.contact)],
                device_name=f"loadtest {self.index}",
                keys=pb.DeviceKeys(
                    encryption_key=pub.encryption_public,
                    signing_key=pub.signing_public,
                    key_signature=self.keys.key_signature(self.device_id),
                ),
            ),
            pb.RegisterResponse,
            deadline,
        )

    async def code(self) -> str:
        """The code from the outbox; the notifier writes it before Register answers,
        but a shared file system may lag, so poll briefly (bounded)."""
        normalized = normalize("email", self.contact)
        deadline = time.monotonic() + CODE_WAIT
        while True:
            code = read_outbox_code(self.outbox, normalized)
            if code is not None:
                return code
            if time.monotonic() > deadline:
                raise RegistrationFailed(f"no code for {self.contact} in {self.outbox}")
            await asyncio.sleep(CODE_POLL)

    async def authorize(self, code: str, deadline: float) -> None:
        reply = await self._public(
            "Authorize",
            pb.AuthorizeRequest(
                device_id=str(self.device_id),
                codes=[code],
                signature=self.keys.authorize_signature(self.device_id, [code]),
            ),
            pb.AuthorizeResponse,
            deadline,
        )
        creds = pb.HawkCredentials.FromString(
            unseal(
                self.keys.encryption_private_bytes(),
                reply.sealed_credentials,
                aad=credentials_aad(self.device_id),
            )
        )
        self.box_id = reply.box_id
        host, port = self.hawk_address
        self.signer = HawkSigner(creds.id, creds.key, host, port)

    def subscribe(self, after: int, deadline: float) -> AsyncIterator[pb.SubscribeEvent]:
        """A Hawk-signed Subscribe stream for this device."""
        assert self.signer is not None, "authorize first"
        return stream_signed(
            self.channel,
            self.signer,
            SERVICE + "Subscribe",
            pb.SubscribeRequest(after=after),
            pb.SubscribeEvent,
            deadline=deadline,
        )

    async def call(
        self, method: str, request: Message, response_type: type[Resp], deadline: float
    ) -> Resp:
        assert self.signer is not None, "authorize first"
        return await call_signed(
            self.channel, self.signer, SERVICE + method, request, response_type, deadline=deadline
        )


__all__ = ["RegistrationFailed", "SimDevice", "contact_for"]
