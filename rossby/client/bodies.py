"""What is inside an envelope: the plaintext formats of each message kind.

The server sees only ciphertext and a kind it cannot read; these bodies are
what the sender signs and the reader parses. Senders and readers live in
different modules (messaging, live, devices), so each format is written and
read here, side by side.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from rossby import errors
from rossby.client.state import ClientState, contact_key, parse_contact_key

TEXT_KIND = "text"
TYPING_KIND = "typing"
RECEIPT_KIND = "receipt"
SYNC_KIND = "sync.contacts"


def encode_text(text: str, boxes: Sequence[uuid.UUID]) -> bytes:
    """The body of a ``text`` message: the text and every box it went to.

    The box list is inside the signed ciphertext so a group member sees who
    else got the message, and the sender's other devices see where it went.
    """
    doc = {"text": text, "to": [str(b) for b in boxes]}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_text(body: bytes) -> tuple[str, tuple[uuid.UUID, ...]]:
    doc = json.loads(body.decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise ValueError("not a text body")
    to = doc.get("to")
    if not isinstance(to, list) or not to or not all(isinstance(b, str) for b in to):
        raise ValueError("bad recipient list")
    return doc["text"], tuple(uuid.UUID(b) for b in to)


def encode_typing(active: bool) -> bytes:
    return json.dumps({"typing": active}, separators=(",", ":")).encode()


def encode_receipt(message_ids: Sequence[uuid.UUID], read_at_ms: int) -> bytes:
    doc = {"read": [str(m) for m in message_ids], "at": read_at_ms}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_receipt(body: bytes) -> tuple[tuple[uuid.UUID, ...], int]:
    doc = json.loads(body.decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("read"), list):
        raise ValueError("not a receipt")
    at = doc.get("at")
    if not isinstance(at, int) or not all(isinstance(m, str) for m in doc["read"]):
        raise ValueError("not a receipt")
    return tuple(uuid.UUID(m) for m in doc["read"]), at


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_sync(state: ClientState) -> bytes:
    """Our contacts and address book, for our other devices (``sync.contacts``)."""
    doc = {
        "own_contacts": [contact_key(c) for c in state.own_contacts],
        "book": {contact_key(c): str(b) for c, b in state.book.items()},
    }
    return _body(doc)


def apply_sync(state: ClientState, body: bytes) -> None:
    """Merge a contacts sync from another device of our box."""
    try:
        doc = json.loads(body.decode("utf-8"))
        own = [parse_contact_key(c) for c in doc.get("own_contacts", [])]
        book = {parse_contact_key(c): uuid.UUID(b) for c, b in doc.get("book", {}).items()}
    except (ValueError, AttributeError, TypeError, errors.InvalidArgument):
        return
    for contact in own:
        if contact not in state.own_contacts:
            state.own_contacts.append(contact)
    for contact, box in book.items():
        state.book.setdefault(contact, box)


__all__ = [
    "RECEIPT_KIND",
    "SYNC_KIND",
    "TEXT_KIND",
    "TYPING_KIND",
    "apply_sync",
    "decode_receipt",
    "decode_text",
    "encode_receipt",
    "encode_sync",
    "encode_text",
    "encode_typing",
]
