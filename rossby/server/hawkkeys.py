"""Hawk keys at rest: wrapped under the server's keyring, never in clear.

A device's Hawk key is 32 random bytes the device holds (sealed to it at
Authorize or link approval). The store keeps only the key *wrapped*:
AES-256-GCM under a key-encryption key derived from one of the server's
``hawk_keys``, with the box and device ids as associated data. A database
dump or backup without ``hawk_keys`` therefore holds nothing that signs a
call, and a wrapped key copied to another device's row does not open.

Why wrapping rather than deriving each key from a master key: a derived
key changes with the master key, so retiring a master key would lock out
every device until it re-registered, and the clear keys of rows written
before this existed (schema <= 6) could never be converted, since nothing
derives to a random key. A wrapped key is re-wrapped under a new master key
by ``rossby rotate-keys`` while the device keeps the key it has.

Stored form (65 bytes)::

    0x01 | key id (uint32, big endian) | nonce (12) | AES-GCM(hawk key) + tag (48)

The first byte and the key id are authenticated too. A 32-byte value is a
legacy clear key (written by a release before the keyring): it is still
accepted, so a rolling upgrade keeps old devices working, until
``rossby rotate-keys`` wraps it (docs/operations.md, release notes).

The keyring is ordered: the first key wraps new keys, every key unwraps.
Rotation therefore is: add the new key after the current one everywhere,
then make it first everywhere, run ``rossby rotate-keys``, and only then
drop the old one (docs/operations.md, "Rotating the Hawk master key").
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rossby.masterkeys import parse_keyring

HAWK_KEY_BYTES = 32
FORMAT_AES_GCM = 0x01
NONCE_BYTES = 12
HEADER_BYTES = 1 + 4
WRAPPED_BYTES = HEADER_BYTES + NONCE_BYTES + HAWK_KEY_BYTES + 16
KEK_INFO = b"rossby/v1 hawk key wrap"
AAD_CONTEXT = b"rossby/v1 hawk key"


class HawkKeyUnavailable(Exception):
    """A stored Hawk key cannot be opened: its master key is not in the
    keyring (retired too early, or a region configured differently), or
    the row was altered. Not a ``RossbyError``: it is the operator's to
    fix, and a client only sees its call refused (or INTERNAL)."""

    def __init__(self, message: str, key_id: int | None) -> None:
        super().__init__(message)
        self.key_id = key_id


def new_keyring_text(key_id: int = 1) -> str:
    """A fresh one-key keyring in the setting's syntax (dev generation)."""
    return f"{key_id}:{secrets.token_bytes(32).hex()}"


def _kek(master: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEK_INFO).derive(master)
    return AESGCM(derived)


def _header(key_id: int) -> bytes:
    return bytes([FORMAT_AES_GCM]) + key_id.to_bytes(4, "big")


def _aad(header: bytes, box_id: uuid.UUID, device_id: uuid.UUID) -> bytes:
    return AAD_CONTEXT + header + box_id.bytes + device_id.bytes


def is_legacy(stored: bytes) -> bool:
    """A clear key as releases before the keyring stored it."""
    return len(stored) == HAWK_KEY_BYTES


def stored_key_id(stored: bytes) -> int | None:
    """The id of the master key that wrapped ``stored``; None for a legacy
    clear key or a value that is neither."""
    if len(stored) != WRAPPED_BYTES or stored[0] != FORMAT_AES_GCM:
        return None
    return int.from_bytes(stored[1:HEADER_BYTES], "big")


@dataclass(frozen=True, slots=True)
class _Master:
    key_id: int
    aead: AESGCM


class HawkKeyring:
    """The server's master keys for Hawk keys at rest (see the module doc).

    Wrapping and unwrapping are one AES-GCM operation on 32 bytes each, a
    few microseconds, and happen only when a key is minted or read from
    the store: the verifier caches the opened key (``AuthCache``), so a
    signed call pays nothing more than before on a cache hit.
    """

    def __init__(self, keys: Sequence[tuple[int, bytes]]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys = {key_id: _Master(key_id, _kek(master)) for key_id, master in keys}
        self._current = self._keys[keys[0][0]]

    @classmethod
    def from_text(cls, text: str) -> HawkKeyring:
        return cls(parse_keyring(text))

    @property
    def current_id(self) -> int:
        return self._current.key_id

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(self._keys)

    def wrap(self, box_id: uuid.UUID, device_id: uuid.UUID, key: bytes) -> bytes:
        """The stored form of ``key`` under the current master key."""
        if len(key) != HAWK_KEY_BYTES:
            raise ValueError(f"a Hawk key is {HAWK_KEY_BYTES} bytes")
        header = _header(self._current.key_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, key, _aad(header, box_id, device_id))
        return header + nonce + sealed

    def mint(self, box_id: uuid.UUID, device_id: uuid.UUID) -> bytes:
        """A new random Hawk key for a device, in its stored form."""
        return self.wrap(box_id, device_id, secrets.token_bytes(HAWK_KEY_BYTES))

    def unwrap(self, box_id: uuid.UUID, device_id: uuid.UUID, stored: bytes) -> bytes:
        """The Hawk key of a stored value, or ``HawkKeyUnavailable``."""
        if is_legacy(stored):
            return bytes(stored)
        key_id = stored_key_id(stored)
        if key_id is None:
            raise HawkKeyUnavailable("not a stored Hawk key", None)
        master = self._keys.get(key_id)
        if master is None:
            raise HawkKeyUnavailable(f"master key {key_id} is not in hawk_keys", key_id)
        header = stored[:HEADER_BYTES]
        nonce = stored[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            return master.aead.decrypt(
                nonce, stored[HEADER_BYTES + NONCE_BYTES :], _aad(header, box_id, device_id)
            )
        except InvalidTag:
            raise HawkKeyUnavailable(
                f"stored Hawk key does not open under master key {key_id}", key_id
            ) from None

    def is_current(self, stored: bytes) -> bool:
        """Is ``stored`` wrapped under the current master key already?"""
        return stored_key_id(stored) == self._current.key_id


__all__ = [
    "HAWK_KEY_BYTES",
    "WRAPPED_BYTES",
    "HawkKeyUnavailable",
    "HawkKeyring",
    "is_legacy",
    "new_keyring_text",
    "parse_keyring",
    "stored_key_id",
]
