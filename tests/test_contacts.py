"""Contact normalization, keyed hashing and masking."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from rossby.contacts import (
    MAX_CONTACT_LENGTH,
    ContactHasher,
    ContactKind,
    NormalizedContact,
    mask,
    normalize,
)
from rossby.errors import InvalidArgument
from rossby.v1 import rossby_pb2

KEY = bytes(range(32))


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (ContactKind.EMAIL, "alice@example.com", "alice@example.com"),
        (ContactKind.EMAIL, "  Alice@Example.COM \n", "alice@example.com"),
        (ContactKind.EMAIL, "ALICE.SMITH+tag@Mail.Example.org", "alice.smith+tag@mail.example.org"),
        (ContactKind.EMAIL, "o'brien@example.ie", "o'brien@example.ie"),
        (ContactKind.EMAIL, "JOSÉ@exämple.com", "josé@exämple.com"),
        # decomposed é (e + U+0301) normalizes to the composed form
        (ContactKind.EMAIL, "jose\u0301@example.com", "jos\u00e9@example.com"),
        (ContactKind.PHONE, "+14155550100", "+14155550100"),
        (ContactKind.PHONE, "+1 (415) 555-0100", "+14155550100"),
        (ContactKind.PHONE, "(415) 555-0100", "+14155550100"),
        (ContactKind.PHONE, " 415.555.0100 ", "+14155550100"),
        (ContactKind.PHONE, "+44 20 7946 0958", "+442079460958"),
        (ContactKind.PHONE, "+33 1 23 45 67 89", "+33123456789"),
        ("email", "Bob@Example.com", "bob@example.com"),
        ("phone", "+14155550100", "+14155550100"),
        (rossby_pb2.CONTACT_KIND_EMAIL, "Bob@Example.com", "bob@example.com"),
        (rossby_pb2.CONTACT_KIND_PHONE, "4155550100", "+14155550100"),
    ],
)
def test_normalize_accepts(kind: ContactKind | int | str, raw: str, expected: str) -> None:
    contact = normalize(kind, raw)
    assert contact.value == expected
    assert contact.kind is ContactKind(contact.kind.value)
    # normalization is idempotent
    assert normalize(contact.kind, contact.value) == contact


def test_normalize_default_region() -> None:
    assert normalize(ContactKind.PHONE, "020 7946 0958", default_region="GB").value == (
        "+442079460958"
    )
    assert normalize(ContactKind.PHONE, "020 7946 0958", default_region="gb").value == (
        "+442079460958"
    )
    # a leading "+" ignores the default region
    assert normalize(ContactKind.PHONE, "+14155550100", default_region="GB").value == (
        "+14155550100"
    )


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        (ContactKind.EMAIL, "", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "   ", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "a@b@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@localhost", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@example..com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@.example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@example.com.", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@-example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "al ice@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@exa\tmple.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice@example.com\r\nBcc: x@evil.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice\x00@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice\u200b@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "alice,eve@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "Alice <alice@example.com>", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, '"alice"@example.com', "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "a" * 65 + "@example.com", "CONTACT_INVALID_EMAIL"),
        (ContactKind.EMAIL, "a" * 60 + "@" + "b" * 190 + ".com", "CONTACT_TOO_LONG"),
        (ContactKind.EMAIL, " " * 250 + "a@example.com", "CONTACT_TOO_LONG"),
        (ContactKind.PHONE, "", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "hello", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "12", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "+1 555 0100", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "+999 1234567", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "+1415555010\x00", "CONTACT_INVALID_PHONE"),
        (ContactKind.PHONE, "1" * 255, "CONTACT_TOO_LONG"),
        (rossby_pb2.CONTACT_KIND_UNSPECIFIED, "alice@example.com", "CONTACT_KIND_UNSPECIFIED"),
        (7, "alice@example.com", "CONTACT_KIND_UNSPECIFIED"),
        ("fax", "alice@example.com", "CONTACT_KIND_UNSPECIFIED"),
    ],
)
def test_normalize_rejects(kind: ContactKind | int | str, raw: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(kind, raw)
    assert info.value.reason == reason
    assert info.value.code == "INVALID_ARGUMENT"
    if len(raw) > 3:  # the message never echoes the contact
        assert raw.strip() not in info.value.message


def test_national_number_without_region_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(ContactKind.PHONE, "415 555 0100", default_region="")
    assert info.value.reason == "CONTACT_INVALID_PHONE"


def test_max_length_boundary() -> None:
    local = "a" * 64
    domain = "b" * (MAX_CONTACT_LENGTH - len(local) - 1 - 4) + ".com"
    value = f"{local}@{domain}"
    assert len(value) == MAX_CONTACT_LENGTH
    assert normalize(ContactKind.EMAIL, value).value == value
    with pytest.raises(InvalidArgument) as info:
        normalize(ContactKind.EMAIL, "a" + value)
    assert info.value.reason == "CONTACT_TOO_LONG"


def test_kind_proto_round_trip() -> None:
    assert ContactKind.EMAIL.to_proto() == rossby_pb2.CONTACT_KIND_EMAIL
    assert ContactKind.PHONE.to_proto() == rossby_pb2.CONTACT_KIND_PHONE
    for kind in ContactKind:
        assert ContactKind.from_proto(kind.to_proto()) is kind


def test_normalized_contact_is_frozen_and_hashable() -> None:
    contact = normalize(ContactKind.EMAIL, "alice@example.com")
    with pytest.raises(AttributeError):
        contact.value = "eve@example.com"  # type: ignore[misc]  # the point: it is frozen
    assert {contact, normalize(ContactKind.EMAIL, "ALICE@example.com")} == {contact}


def test_repr_is_masked() -> None:
    contact = normalize(ContactKind.PHONE, "+14155550100")
    assert "4155550100" not in repr(contact)
    assert "+1******0100" in repr(contact)


# -- hashing -----------------------------------------------------------------


def test_hash_is_hmac_sha256_of_kind_nul_value() -> None:
    contact = normalize(ContactKind.EMAIL, "alice@example.com")
    expected = hmac.new(KEY, b"email\x00alice@example.com", hashlib.sha256).digest()
    assert ContactHasher(KEY).hash(contact) == expected
    assert len(expected) == 32


def test_hash_is_deterministic_across_spellings() -> None:
    hasher = ContactHasher(KEY)
    assert hasher.hash(normalize("phone", "(415) 555-0100")) == hasher.hash(
        normalize("phone", "+1 415 555 0100")
    )


def test_hash_distinct_per_kind_and_value() -> None:
    hasher = ContactHasher(KEY)
    contacts = [
        NormalizedContact(ContactKind.EMAIL, "alice@example.com"),
        NormalizedContact(ContactKind.EMAIL, "bob@example.com"),
        NormalizedContact(ContactKind.PHONE, "+14155550100"),
        NormalizedContact(ContactKind.PHONE, "+14155550101"),
        # same text, different kind
        NormalizedContact(ContactKind.EMAIL, "+14155550100"),
    ]
    hashes = {hasher.hash(c) for c in contacts}
    assert len(hashes) == len(contacts)


def test_hash_is_keyed() -> None:
    contact = normalize(ContactKind.EMAIL, "alice@example.com")
    other = ContactHasher(b"\xff" * 32).hash(contact)
    assert ContactHasher(KEY).hash(contact) != other
    assert hashlib.sha256(b"email\x00alice@example.com").digest() != other


def test_short_key_is_refused_and_key_not_in_repr() -> None:
    with pytest.raises(ValueError):
        ContactHasher(b"short")
    assert KEY.hex() not in repr(ContactHasher(KEY))
    assert repr(KEY) not in repr(ContactHasher(KEY))


# -- masking -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "masked"),
    [
        ("email", "alice@example.com", "a***@example.com"),
        ("email", "a@example.com", "***@example.com"),
        ("email", "ab@example.com", "a***@example.com"),
        ("phone", "+14155550100", "+1******0100"),
        ("phone", "+442079460958", "+44******0958"),
        ("phone", "+33123456789", "+33*****6789"),
    ],
)
def test_mask(kind: str, raw: str, masked: str) -> None:
    contact = normalize(kind, raw)
    assert mask(contact) == masked
    assert contact.value not in mask(contact)


@pytest.mark.parametrize(
    "raw",
    [
        "+14155550100",
        "+442079460958",
        "+33123456789",
        "+6432345678",  # New Zealand
        "+37410123456",  # Armenia
        "+2484217123",  # Seychelles
        "+6837012",  # Niue: four-digit national numbers
        "+6903101",  # Tokelau
    ],
)
def test_mask_never_reveals_most_of_a_phone_number(raw: str) -> None:
    contact = normalize("phone", raw)
    masked = mask(contact)
    visible_digits = sum(ch.isdigit() for ch in masked)
    total_digits = sum(ch.isdigit() for ch in contact.value)
    assert contact.value not in masked
    assert "*" in masked
    assert visible_digits < total_digits
    # at least as many digits hidden as shown after the country code
    assert masked.count("*") >= len(masked.rsplit("*", 1)[1])


def test_mask_of_hand_built_contacts_never_crashes() -> None:
    assert mask(NormalizedContact(ContactKind.EMAIL, "not-an-email")) == "***"
    assert "*" in mask(NormalizedContact(ContactKind.PHONE, "12"))
    assert mask(NormalizedContact(ContactKind.PHONE, "12")) != "12"
