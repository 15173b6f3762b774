"""A bare test device speaking the raw API (no SDK), so API tests see
exactly what the server answers."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from rossby.client.hawk import HawkSigner, call_signed
from rossby.contacts import normalize
from rossby.crypto import DeviceKeyPair, credentials_aad, unseal
from rossby.server.notify import read_outbox_code
from rossby.v1 import rossby_pb2 as pb
from tests.support.grpc_errors import reason as reason  # tests import it from here too

Resp = TypeVar("Resp", bound=Message)
SERVICE = "/rossby.v1.Rossby/"


def email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


def contact(value: str) -> pb.Contact:
    kind = pb.CONTACT_KIND_EMAIL if "@" in value else pb.CONTACT_KIND_PHONE
    return pb.Contact(kind=kind, value=value)


class Device:
    def __init__(self, api: Any, *contacts: str, name: str = "phone") -> None:
        self.api = api
        self.contacts = list(contacts)
        self.name = name
        self.keys = DeviceKeyPair.generate()
        self.device_id = uuid.uuid4()
        self._box_id: uuid.UUID | None = None
        self.signer: HawkSigner | None = None
        self.hawk_key = b""

    @property
    def box_id(self) -> uuid.UUID:
        """The device's box; it has one once it has authorized (or been
        linked), and a test that asks earlier is wrong."""
        assert self._box_id is not None, "authorize first: the device has no box yet"
        return self._box_id

    @box_id.setter
    def box_id(self, box_id: uuid.UUID) -> None:
        self._box_id = box_id

    @property
    def stub_channel(self) -> grpc.aio.Channel:
        return self.api.channel

    def register_request(self) -> pb.RegisterRequest:
        pub = self.keys.public()
        return pb.RegisterRequest(
            device_id=str(self.device_id),
            contacts=[contact(c) for c in self.contacts],
            device_name=self.name,
            keys=pb.DeviceKeys(
                encryption_key=pub.encryption_public,
                signing_key=pub.signing_public,
                key_signature=self.keys.key_signature(self.device_id),
            ),
        )

    async def public(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        call = self.stub_channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return await call(request, timeout=30)  # type: ignore[no-any-return]  # grpc is untyped

    async def register(self) -> pb.RegisterResponse:
        return await self.public("Register", self.register_request(), pb.RegisterResponse)

    def codes(self) -> list[str]:
        out = []
        for c in self.contacts:
            kind = "email" if "@" in c else "phone"
            code = read_outbox_code(self.api.outbox, normalize(kind, c))
            assert code is not None, f"no code for {c} in the outbox"
            out.append(code)
        return out

    def authorize_request(self, codes: list[str] | None = None) -> pb.AuthorizeRequest:
        codes = self.codes() if codes is None else codes
        return pb.AuthorizeRequest(
            device_id=str(self.device_id),
            codes=codes,
            signature=self.keys.authorize_signature(self.device_id, codes),
        )

    async def authorize(self, codes: list[str] | None = None) -> pb.AuthorizeResponse:
        reply = await self.public("Authorize", self.authorize_request(codes), pb.AuthorizeResponse)
        creds = pb.HawkCredentials.FromString(
            unseal(
                self.keys.encryption_private_bytes(),
                reply.sealed_credentials,
                aad=credentials_aad(self.device_id),
            )
        )
        self.box_id = uuid.UUID(reply.box_id)
        self.hawk_key = creds.key
        self.signer = HawkSigner(
            creds.id, creds.key, "127.0.0.1", self.api.server.port, clock=self.api.clock
        )
        return reply

    async def join(self) -> Device:
        await self.register()
        await self.authorize()
        return self

    async def call(self, method: str, request: Message, response_type: type[Resp]) -> Resp:
        assert self.signer is not None, "authorize first"
        return await call_signed(
            self.stub_channel,
            self.signer,
            SERVICE + method,
            request,
            response_type,
            deadline=30,
            require_server_authorization=True,
        )

    async def request_key(self, value: str) -> pb.RequestKeyResponse:
        return await self.call(
            "RequestKey", pb.RequestKeyRequest(contact=contact(value)), pb.RequestKeyResponse
        )

    async def send(
        self, *items: tuple[uuid.UUID | str, bytes, uuid.UUID | None]
    ) -> pb.SendResponse:
        messages = [
            pb.OutgoingMessage(
                recipient_box_id=str(box), ciphertext=body, message_id=str(mid or uuid.uuid4())
            )
            for box, body, mid in items
        ]
        return await self.call("Send", pb.SendRequest(messages=messages), pb.SendResponse)

    async def fetch(self, after: int = 0, limit: int = 0) -> pb.FetchResponse:
        return await self.call("Fetch", pb.FetchRequest(after=after, limit=limit), pb.FetchResponse)

    async def ack(self, through: int) -> pb.AckResponse:
        return await self.call("Ack", pb.AckRequest(through=through), pb.AckResponse)

    async def drain(self) -> list[pb.QueuedMessage]:
        """Fetch every page, dedupe by message id, ack the last position."""
        seen: dict[str, pb.QueuedMessage] = {}
        after = 0
        while True:
            page = await self.fetch(after=after)
            for m in page.messages:
                seen.setdefault(m.message_id, m)
            after = page.next_after
            if not page.more:
                break
        if seen:
            await self.ack(max(m.position for m in seen.values()))
        return sorted(seen.values(), key=lambda m: m.position)

    async def fetch_positions(
        self, positions: dict[str, set[int]] | None = None
    ) -> dict[str, set[int]]:
        """One pass through the queue (paging), adding message id -> every
        position it came at to ``positions``, then ack the top: for checks
        that no id was ever stored at two positions."""
        positions = {} if positions is None else positions
        after = 0
        while True:
            page = await self.fetch(after=after, limit=500)
            for m in page.messages:
                positions.setdefault(m.message_id, set()).add(m.position)
            after = page.next_after
            if not page.more:
                break
        if positions:
            await self.ack(max(max(p) for p in positions.values()))
        return positions
