"""Translations between the protocol's messages (rossby.v1) and the client's types.

Kept in one place so the directory, the account calls and the message
paths read and write the wire the same way; none of it talks to a server.
"""

from __future__ import annotations

import uuid

from rossby.client.errors import KeyLogError
from rossby.client.models import KeyLogRecord, MessagesDropped, ProfileInfo
from rossby.client.state import HeldEnvelope
from rossby.contacts import NormalizedContact
from rossby.crypto.keylog import NO_ACTOR, ChangeKind, LogEntry
from rossby.crypto.pqxdh import Bundle, IdentityKeys
from rossby.v1 import rossby_pb2 as pb

_KINDS = {int(k): k for k in ChangeKind}
ACCEPT_PB = {
    "anyone": pb.ACCEPT_FROM_ANYONE,
    "contacts-only": pb.ACCEPT_FROM_CONTACTS_ONLY,
}
_ACCEPT_NAME = {v: k for k, v in ACCEPT_PB.items()}
RULE_PB = {"blocked": pb.SENDER_RULE_BLOCKED, "accepted": pb.SENDER_RULE_ACCEPTED}


def bundle_from(b: pb.PrekeyBundle, identity: IdentityKeys) -> Bundle:
    """A claimed bundle for PQXDH, under ``identity``: the keys the caller trusts
    for that device (its pin), which it has checked against ``b.device``."""
    has_one_time = b.HasField("one_time_prekey")
    return Bundle(
        identity=identity,
        signed_prekey_id=b.signed_prekey.key_id,
        signed_prekey=bytes(b.signed_prekey.public_key),
        signed_prekey_signature=bytes(b.signed_prekey.signature),
        one_time_prekey_id=b.one_time_prekey.key_id if has_one_time else None,
        one_time_prekey=bytes(b.one_time_prekey.public_key) if has_one_time else None,
        kem_prekey_id=b.kem_prekey.key_id,
        kem_prekey=bytes(b.kem_prekey.public_key),
        kem_prekey_signature=bytes(b.kem_prekey.signature),
        kem_last_resort=b.kem_last_resort,
    )


def pb_contact(contact: NormalizedContact) -> pb.Contact:
    return pb.Contact(kind=contact.kind.to_proto(), value=contact.value)  # type: ignore[arg-type]


def profile_info(p: pb.Profile) -> ProfileInfo:
    return ProfileInfo(
        display_name=p.display_name,
        description=p.description,
        avatar_ref=p.avatar_ref,
        discoverable=p.discoverable,
        accept_from=_ACCEPT_NAME.get(p.accept_from, "anyone"),
    )


def _actor(e: pb.KeyLogEntry) -> uuid.UUID:
    """An entry nobody made (IDLE_UNLINK) names no actor; ``replay`` then
    refuses it as anything but such an entry."""
    return NO_ACTOR if not e.actor_device_id else uuid.UUID(e.actor_device_id)


def log_entry(box_id: uuid.UUID, e: pb.KeyLogEntry) -> LogEntry:
    try:
        kind = _KINDS[int(e.kind)]
        return LogEntry(
            box_id=box_id,
            seq=int(e.seq),
            prev_hash=bytes(e.prev_hash),
            timestamp_ms=int(e.timestamp_ms),
            kind=kind,
            device_id=uuid.UUID(e.device_id),
            actor_device_id=_actor(e),
            encryption_key=bytes(e.encryption_key),
            signing_key=bytes(e.signing_key),
            signature=bytes(e.signature),
            hash=bytes(e.hash),
        )
    except (KeyError, ValueError):
        raise KeyLogError(f"key log entry {e.seq} of box {box_id} is malformed") from None


def record(e: LogEntry) -> KeyLogRecord:
    return KeyLogRecord(
        seq=e.seq,
        kind=e.kind.label,
        device_id=e.device_id,
        actor_device_id=e.actor_device_id,
        timestamp_ms=e.timestamp_ms,
        encryption_key=e.encryption_key,
        signing_key=e.signing_key,
        hash=e.computed_hash(),
    )


def dropped_from(gap: pb.DeliveryGap) -> MessagesDropped:
    """A Fetch page's or a Subscribe event's overflow gap."""
    return MessagesDropped(missed=gap.missed, after=gap.after, through=gap.through)


def queued_from(held: HeldEnvelope) -> pb.QueuedMessage:
    """A held envelope back in the shape it arrived in, to process it again."""
    return pb.QueuedMessage(
        position=held.position,
        message_id=held.message_id,
        sender_box_id=held.sender_box,
        sender_device_id=held.sender_device,
        received_at_ms=held.received_at_ms,
        ciphertext=held.ciphertext,
    )


__all__ = [
    "ACCEPT_PB",
    "RULE_PB",
    "dropped_from",
    "log_entry",
    "pb_contact",
    "profile_info",
    "queued_from",
    "record",
]
