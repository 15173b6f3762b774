"""Stored and ephemeral messages in their wire form (``QueuedMessage``).

Fetch pages, Subscribe pushes and ephemeral Sends all hand a client the same
message shape; one module converts, so the three cannot drift apart and
neither the inbox nor the real-time side imports the other for it.
"""

from __future__ import annotations

from rossby.store import Gap, NewMessage, StoredMessage
from rossby.v1 import rossby_pb2


def queued_message(m: StoredMessage) -> rossby_pb2.QueuedMessage:
    """The wire form of a stored message (Fetch pages and Subscribe pushes)."""
    return rossby_pb2.QueuedMessage(
        position=m.position,
        message_id=str(m.message_id),
        sender_box_id=str(m.sender_box),
        sender_device_id=str(m.sender_device),
        received_at_ms=int(m.received_at * 1000),
        ciphertext=m.ciphertext,
        expires_at_ms=int(m.expires_at * 1000),
    )


def delivery_gap(gap: Gap | None) -> rossby_pb2.DeliveryGap | None:
    """The wire form of a device's overflow gap (Fetch and Subscribe alike)."""
    if gap is None:
        return None
    return rossby_pb2.DeliveryGap(missed=gap.missed, after=gap.after, through=gap.through)


def ephemeral_message(message: NewMessage, received_at: float) -> rossby_pb2.QueuedMessage:
    """The wire form of an ephemeral message: never stored, so no position (0)."""
    return rossby_pb2.QueuedMessage(
        position=0,
        message_id=str(message.message_id),
        sender_box_id=str(message.sender_box),
        sender_device_id=str(message.sender_device),
        received_at_ms=int(received_at * 1000),
        ciphertext=message.ciphertext,
    )


__all__ = ["delivery_gap", "ephemeral_message", "queued_message"]
