"""Contacts as the SDK takes them: a string or an already normalized contact.

Every part of the client that accepts "alice@example.com" or "+1 415..."
from a caller turns it into a ``NormalizedContact`` here, the same way the
server does, so the address book keys one person once.
"""

from __future__ import annotations

from rossby.contacts import ContactKind, NormalizedContact, normalize

ContactLike = str | NormalizedContact


def parse_contact(raw: ContactLike, default_region: str = "US") -> NormalizedContact:
    """An e-mail address if it has an "@", else a phone number; normalized like the server.

    The server normalizes too, but the address book must key contacts the
    same way the server does, or one person would get two entries.
    """
    if isinstance(raw, NormalizedContact):
        return raw
    kind = ContactKind.EMAIL if "@" in raw else ContactKind.PHONE
    return normalize(kind, raw, default_region)


__all__ = ["ContactLike", "parse_contact"]
