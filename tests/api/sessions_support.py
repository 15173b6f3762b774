"""Helpers shared by the ratchet-session tests: capture what the server queued."""

from __future__ import annotations

import uuid

from rossby.client import ReceivedMessage, RossbyClient
from rossby.client.models import Event
from rossby.crypto.envelope_v2 import ParsedEnvelope, parse_envelope
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api


async def drain(client: RossbyClient) -> list[Event]:
    return [event async for event in client.fetch_messages()]


def texts(events: list[Event]) -> list[str | None]:
    return [e.text for e in events if isinstance(e, ReceivedMessage)]


def contact_of(client: RossbyClient) -> str:
    return client.whoami().contacts[0]


async def queued(api: Api, reader: RossbyClient) -> list[pb.QueuedMessage]:
    """Every message waiting for ``reader``, read from the server's store, as
    Fetch would answer them: what an attacker who records the traffic (or
    dumps the database) holds."""
    assert reader.box_id is not None
    page = await api.store.fetch(reader.box_id, reader.device_id, after=0, limit=1000)
    return [
        pb.QueuedMessage(
            position=int(m.position),
            message_id=str(m.message_id),
            sender_box_id=str(m.sender_box),
            sender_device_id=str(m.sender_device),
            received_at_ms=int(m.received_at * 1000),
            ciphertext=m.ciphertext,
        )
        for m in page.messages
    ]


async def captured(api: Api, reader: RossbyClient, message_id: uuid.UUID) -> pb.QueuedMessage:
    """The one queued message with ``message_id`` (it must be there)."""
    (found,) = [m for m in await queued(api, reader) if m.message_id == str(message_id)]
    return found


def entry_for(reader: RossbyClient, message: pb.QueuedMessage) -> ParsedEnvelope:
    """The envelope as ``reader`` parses it (unverified): to look at its entry."""
    assert reader.box_id is not None
    return parse_envelope(
        bytes(message.ciphertext),
        my_device_id=reader.device_id,
        expected_recipient_box=reader.box_id,
    )
