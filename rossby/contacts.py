"""Contacts (e-mail addresses, phone numbers): normalization, keyed hashing, masking.

A contact is the handle other users look a box up by, so two spellings of
the same address must land on the same box: every contact is normalized
once, at the edge, before it is hashed, stored or used for delivery.

Privacy: the store never sees a raw contact, only ``ContactHasher.hash`` —
an HMAC under a server-side key — so a database dump alone does not reveal
anyone's phone number or e-mail address (an unkeyed hash of a phone number
is reversed by enumerating the numbering plan in minutes). Logs only ever
carry ``mask(contact)``.

E-mail normalization choice: the whole address is lower-cased, local part
included. RFC 5321 lets a server treat the local part case-sensitively, but
virtually none does, and treating ``Alice@x`` and ``alice@x`` as different
boxes would let a second box claim what is, to its owner, the same address.
No provider-specific rewriting is done (dots and ``+tags`` are kept):
those rules differ per provider and guessing wrong merges strangers.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from rossby.errors import InvalidArgument

MAX_CONTACT_LENGTH = 254
"""Longest contact value accepted (RFC 5321 path limit; also the proto's limit)."""

_MAX_LOCAL_PART = 64
_MIN_HASH_KEY = 16

# Specials that are legal in a quoted RFC 5322 local part but would turn the
# address into something else when put in a header or handed to an MTA (a
# comma adds a recipient). Quoted local parts are not supported.
_EMAIL_FORBIDDEN = frozenset('()<>[]:;,\\"')

# proto ContactKind numbers; kept here so this module does not import protobuf.
_PROTO_EMAIL = 1
_PROTO_PHONE = 2


class ContactKind(StrEnum):
    """How a contact is reached; the value is part of the hashed input."""

    EMAIL = "email"
    PHONE = "phone"

    @classmethod
    def from_proto(cls, value: int) -> ContactKind:
        """Map ``rossby.v1.ContactKind``; UNSPECIFIED or unknown is the client's error."""
        if value == _PROTO_EMAIL:
            return cls.EMAIL
        if value == _PROTO_PHONE:
            return cls.PHONE
        raise InvalidArgument("contact kind is unspecified", reason="CONTACT_KIND_UNSPECIFIED")

    def to_proto(self) -> int:
        return _PROTO_EMAIL if self is ContactKind.EMAIL else _PROTO_PHONE


@dataclass(frozen=True, slots=True)
class NormalizedContact:
    """A contact in canonical form; only ``normalize`` should build one from input.

    ``repr`` is masked so a contact that ends up in a log line or a test
    failure by accident does not leak the address.
    """

    kind: ContactKind
    value: str

    def __repr__(self) -> str:
        return f"NormalizedContact({self.kind.value}, {mask(self)!r})"


def normalize(
    kind: ContactKind | int | str, raw: str, default_region: str = "US"
) -> NormalizedContact:
    """Canonicalize ``raw``; raise ``InvalidArgument`` with a stable reason.

    ``kind`` may be a ``ContactKind``, its string value, or the proto enum
    number, so handlers can pass ``request.contact.kind`` straight through.
    ``default_region`` (ISO 3166 alpha-2) is used only for phone numbers
    written without a leading "+".

    The length limit applies to what the client sent, before trimming, so
    no amount of padding makes the server parse more than 254 characters.
    """
    contact_kind = _coerce_kind(kind)
    if len(raw) > MAX_CONTACT_LENGTH:
        raise InvalidArgument(
            f"contact is longer than {MAX_CONTACT_LENGTH} characters", reason="CONTACT_TOO_LONG"
        )
    if contact_kind is ContactKind.EMAIL:
        return NormalizedContact(ContactKind.EMAIL, _normalize_email(raw))
    return NormalizedContact(ContactKind.PHONE, _normalize_phone(raw, default_region))


def _coerce_kind(kind: ContactKind | int | str) -> ContactKind:
    if isinstance(kind, ContactKind):
        return kind
    if isinstance(kind, int):
        return ContactKind.from_proto(kind)
    try:
        return ContactKind(kind)
    except ValueError:
        raise InvalidArgument(
            "contact kind is unspecified", reason="CONTACT_KIND_UNSPECIFIED"
        ) from None


def _invalid_email(why: str) -> InvalidArgument:
    # The message never echoes the address: it may be logged server-side.
    return InvalidArgument(f"invalid e-mail address: {why}", reason="CONTACT_INVALID_EMAIL")


def _normalize_email(raw: str) -> str:
    # NFC first so that composed and decomposed spellings of a non-ASCII
    # address hash the same; then lower-case (see the module docstring).
    value = unicodedata.normalize("NFC", raw.strip()).lower()
    if not value:
        raise _invalid_email("empty")
    for ch in value:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise _invalid_email("whitespace or control character")
        if ch in _EMAIL_FORBIDDEN:
            raise _invalid_email("unsupported character")
    if value.count("@") != 1:
        raise _invalid_email("needs exactly one '@'")
    local, domain = value.split("@")
    if not local or not domain:
        raise _invalid_email("empty local part or domain")
    if len(local) > _MAX_LOCAL_PART:
        raise _invalid_email("local part longer than 64 characters")
    if "." not in domain:
        raise _invalid_email("domain needs a dot")
    labels = domain.split(".")
    if any(not label for label in labels):
        raise _invalid_email("empty domain label")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        raise _invalid_email("domain label starts or ends with '-'")
    if len(value) > MAX_CONTACT_LENGTH:  # NFC can lengthen a string
        raise InvalidArgument(
            f"contact is longer than {MAX_CONTACT_LENGTH} characters", reason="CONTACT_TOO_LONG"
        )
    return value


def _invalid_phone(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid phone number: {why}", reason="CONTACT_INVALID_PHONE")


def _normalize_phone(raw: str, default_region: str) -> str:
    text = raw.strip()
    if not text:
        raise _invalid_phone("empty")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise _invalid_phone("control character")
    try:
        number = phonenumbers.parse(text, default_region.upper() or None)
    except phonenumbers.NumberParseException:
        raise _invalid_phone("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid_phone("not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class ContactHasher:
    """Keyed, deterministic contact hashes: the only form the store sees.

    Deterministic so a contact can be looked up; keyed so the hashes are
    useless without the key. Every region must use the same key or a
    contact registered in one region is unknown in another.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_HASH_KEY:
            raise ValueError(f"contact hash key must be at least {_MIN_HASH_KEY} bytes")
        self._key = bytes(key)

    def hash(self, contact: NormalizedContact) -> bytes:
        """HMAC-SHA256(key, kind || 0x00 || value): 32 bytes.

        The kind and the separator keep an e-mail and a phone contact with
        the same text apart (the NUL cannot occur in either).
        """
        message = contact.kind.value.encode() + b"\x00" + contact.value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "ContactHasher(<key>)"


def mask(contact: NormalizedContact) -> str:
    """A log-safe rendering: enough to tell contacts apart while debugging.

    E-mail keeps the first character of the local part and the domain
    ("a***@example.com"); phone keeps the country code and the last four
    digits ("+1******0100"), fewer for short numbers.
    """
    if contact.kind is ContactKind.EMAIL:
        local, sep, domain = contact.value.rpartition("@")
        if not sep:
            return "***"
        head = local[0] if len(local) > 1 else ""
        return f"{head}***@{domain}"
    return _mask_phone(contact.value)


def _mask_phone(value: str) -> str:
    digits = value[1:] if value.startswith("+") else value
    try:
        country = str(phonenumbers.parse(value, None).country_code)
    except phonenumbers.NumberParseException:
        country = ""
    if not digits.startswith(country):
        country = ""
    national = digits[len(country) :]
    # Always hide at least half of the national number.
    tail = min(4, len(national) // 2)
    shown_tail = national[len(national) - tail :] if tail else ""
    hidden = len(national) - tail
    prefix = f"+{country}" if country else ""
    return f"{prefix}{'*' * max(hidden, 1)}{shown_tail}"


__all__ = [
    "MAX_CONTACT_LENGTH",
    "ContactHasher",
    "ContactKind",
    "NormalizedContact",
    "mask",
    "normalize",
]
