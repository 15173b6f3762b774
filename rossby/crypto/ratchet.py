"""The Double Ratchet session between one own device and one peer device.

A thin, Rossby-parameterised wrapper around the ``doubleratchet`` library
(v1.3), which implements Signal's Double Ratchet
(https://signal.org/docs/specifications/doubleratchet/, section 3) with the
algorithms section 5 recommends, which we pick:

    DH ratchet          X25519 (doubleratchet.recommended curve25519)
    KDF_RK (root)       HKDF-SHA-256, salt = root key, ikm = DH output,
                        info = "rossby/v2/ratchet-root", 64 bytes -> (RK', CK)
    KDF_CK (chains)     HMAC-SHA-256: CK' = HMAC(CK, 0x02), MK = HMAC(CK, 0x01)
    ENCRYPT (AEAD)      HKDF-SHA-256(MK, salt = 0^32, info = "rossby/v2/ratchet-message",
                        80 bytes) -> AES-256-CBC key, HMAC key, IV;
                        ciphertext = AES-256-CBC/PKCS#7 || HMAC-SHA-256(AD || ciphertext)

Section 7 ("Integration with X3DH", here PQXDH): the PQXDH SK is the
initial root key and the responder's signed prekey is its initial ratchet
key pair, so the initiator can send at once.

Bounds (section 3.5's MAX_SKIP): a message may skip at most ``MAX_SKIP``
keys of one chain (more is refused without computing anything, so a forged
header cannot make us derive a million keys), and a session stores at most
``MAX_SKIPPED_KEYS`` skipped message keys, oldest dropped first. A skipped
key is deleted once used, so a replay of any message is refused.

A failed ``decrypt`` leaves the session exactly as it was (the library works
on a copy and keeps it only on success, as section 3.5 asks), so a forged or
damaged message cannot desynchronise a session. Every failure is the one
opaque ``InvalidEnvelope``.

Associated data: ``session_ad`` (the PQXDH AD, fixed for the session's life
and part of its JSON) and the per-message ``associated_data`` are both bound
into every message's MAC, length-prefixed, followed by the encoded header
(section 3.4's CONCAT). Passing ``session_ad`` is how every message, not
only the first, stays bound to the two devices' identity keys.

Wire format of a ratchet message (docs/envelope.md "Double Ratchet")::

    32  DH ratchet public key
    4   PN, previous sending chain length (u32)
    4   N, message number in this chain (u32)
    c   ciphertext || 32-byte HMAC tag, c = 16 * (len(plaintext) // 16 + 1) + 32
"""

from __future__ import annotations

import contextlib
import contextvars
import struct
import warnings
from collections.abc import Iterator
from typing import Any, cast

from doubleratchet import (
    AuthenticationFailedException,
    DecryptionFailedException,
    DoSProtectionException,
    DoubleRatchet,
    DuplicateMessageException,
    EncryptedMessage,
    Header,
    InconsistentSerializationException,
)
from doubleratchet.recommended import HashFunction, aead_aes_hmac, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.recommended.diffie_hellman_ratchet_curve25519 import (
    DiffieHellmanRatchet as Curve25519Ratchet,
)

from rossby.crypto._common import KEY_BYTES, Rng, random_bytes, x25519_private
from rossby.crypto.errors import InvalidEnvelope

MAX_SKIP = 1000
"""Most message keys one incoming message may make us skip (and compute) in one chain."""
MAX_SKIPPED_KEYS = 1000
"""Most skipped message keys a session keeps for late messages; oldest dropped first."""

ROOT_INFO = b"rossby/v2/ratchet-root"
MESSAGE_INFO = b"rossby/v2/ratchet-message"
#: KDF_CK inputs in the library's order: next chain key (0x02), then message key (0x01).
CHAIN_CONSTANT = b"\x02\x01"

_HEADER = struct.Struct(">32sII")
HEADER_BYTES = _HEADER.size  # 40
_TAG_BYTES = 32
_U32 = struct.Struct(">I")
JSON_VERSION = 1

_rng: contextvars.ContextVar[Rng | None] = contextvars.ContextVar(
    "rossby_ratchet_rng", default=None
)


@contextlib.contextmanager
def _drawing_from(rng: Rng | None) -> Iterator[None]:
    """Make ratchet key generation inside the library draw from ``rng`` (for the vectors)."""
    token = _rng.set(rng)
    try:
        yield
    finally:
        _rng.reset(token)


class _DiffieHellman(Curve25519Ratchet):
    @staticmethod
    def _generate_priv() -> bytes:
        return x25519_private(random_bytes(_rng.get(), KEY_BYTES)).private_bytes_raw()


class _RootKdf(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ROOT_INFO


class _ChainKdf(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class _Aead(aead_aes_hmac.AEAD):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return MESSAGE_INFO


def encode_header(header: Header) -> bytes:
    if len(header.ratchet_pub) != KEY_BYTES:
        raise ValueError("a ratchet key is 32 bytes")
    return _HEADER.pack(
        header.ratchet_pub, header.previous_sending_chain_length, header.sending_chain_length
    )


class _Ratchet(DoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data: bytes, header: Header) -> bytes:
        # Section 3.4: CONCAT(AD, header) must be unambiguous; the header has a
        # fixed length and comes last, the AD parts are length-prefixed by _ad.
        return associated_data + encode_header(header)


_PARAMS: dict[str, Any] = {
    "diffie_hellman_ratchet_class": _DiffieHellman,
    "root_chain_kdf": _RootKdf,
    "message_chain_kdf": _ChainKdf,
    "message_chain_constant": CHAIN_CONSTANT,
    "dos_protection_threshold": MAX_SKIP,
    "max_num_skipped_message_keys": MAX_SKIPPED_KEYS,
    "aead": _Aead,
}

_FAILURES = (
    AuthenticationFailedException,
    DecryptionFailedException,
    DoSProtectionException,
    DuplicateMessageException,
    ValueError,
    struct.error,
)


def _ad(session_ad: bytes, associated_data: bytes) -> bytes:
    return (
        _U32.pack(len(session_ad)) + session_ad + _U32.pack(len(associated_data)) + associated_data
    )


def _encode(message: EncryptedMessage) -> bytes:
    return encode_header(message.header) + message.ciphertext


def _decode(data: bytes) -> EncryptedMessage:
    # The smallest ciphertext is one AES block plus the tag.
    if not isinstance(data, bytes) or len(data) < HEADER_BYTES + 16 + _TAG_BYTES:
        raise ValueError
    if (len(data) - HEADER_BYTES - _TAG_BYTES) % 16:
        raise ValueError
    pub, pn, n = _HEADER.unpack_from(data)
    return EncryptedMessage(Header(pub, pn, n), data[HEADER_BYTES:])


def message_size(plaintext_len: int) -> int:
    """Exact size of a ratchet message carrying ``plaintext_len`` bytes (120 for a 32-byte key)."""
    return HEADER_BYTES + 16 * (plaintext_len // 16 + 1) + _TAG_BYTES


class RatchetSession:
    """One Double Ratchet session; persist it with ``to_json`` after every use."""

    def __init__(self, ratchet: _Ratchet, session_ad: bytes) -> None:
        self._ratchet = ratchet
        self._session_ad = session_ad

    @classmethod
    async def initiate(
        cls,
        shared_secret: bytes,
        peer_ratchet_public: bytes,
        plaintext: bytes,
        associated_data: bytes,
        *,
        session_ad: bytes = b"",
        rng: Rng | None = None,
    ) -> tuple[RatchetSession, bytes]:
        """Alice (section 7): SK from PQXDH, Bob's signed prekey as his first ratchet key.

        ``rng`` is asked for Alice's first ratchet private key (32 bytes).
        """
        if len(shared_secret) != KEY_BYTES or len(peer_ratchet_public) != KEY_BYTES:
            raise ValueError("the shared secret and the ratchet key are 32 bytes")
        with _drawing_from(rng):
            ratchet, message = await _Ratchet.encrypt_initial_message(
                shared_secret=shared_secret,
                recipient_ratchet_pub=peer_ratchet_public,
                message=plaintext,
                associated_data=_ad(session_ad, associated_data),
                **_PARAMS,
            )
        return cls(ratchet, session_ad), _encode(message)

    @classmethod
    async def respond(
        cls,
        shared_secret: bytes,
        own_ratchet_private: bytes,
        message: bytes,
        associated_data: bytes,
        *,
        session_ad: bytes = b"",
        rng: Rng | None = None,
    ) -> tuple[RatchetSession, bytes]:
        """Bob (section 7): his signed prekey private is the first ratchet key; InvalidEnvelope.

        ``rng`` is asked for Bob's next ratchet private key (32 bytes).
        """
        if len(shared_secret) != KEY_BYTES or len(own_ratchet_private) != KEY_BYTES:
            raise ValueError("the shared secret and the ratchet key are 32 bytes")
        try:
            with _drawing_from(rng):
                ratchet, plaintext = await _Ratchet.decrypt_initial_message(
                    shared_secret=shared_secret,
                    own_ratchet_priv=own_ratchet_private,
                    message=_decode(message),
                    associated_data=_ad(session_ad, associated_data),
                    **_PARAMS,
                )
        except _FAILURES:
            raise InvalidEnvelope from None
        return cls(ratchet, session_ad), plaintext

    async def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """The next message of this device's sending chain (section 3.4 RatchetEncrypt)."""
        message = await self._ratchet.encrypt_message(
            plaintext, _ad(self._session_ad, associated_data)
        )
        return _encode(message)

    async def decrypt(
        self, message: bytes, associated_data: bytes, *, rng: Rng | None = None
    ) -> bytes:
        """Section 3.5 RatchetDecrypt; InvalidEnvelope, and the session unchanged, on any failure.

        ``rng`` is asked for the new ratchet private key when the message
        starts a new chain (a DH ratchet step).
        """
        try:
            parsed = _decode(message)
            if self._ratchet.receiving_chain_length is None and parsed.header.ratchet_pub == (
                self._ratchet.model.diffie_hellman_ratchet.other_ratchet_pub
            ):
                # An initiator that has not heard back has no receiving chain; a
                # message claiming the peer's initial ratchet key would trip the
                # library's internal assert instead of failing like any forgery.
                raise ValueError
            with _drawing_from(rng), warnings.catch_warnings():
                # The library warns (and skips the lost keys) when the previous
                # chain left more than MAX_SKIP messages behind; that is the
                # documented bound, not news for the caller.
                warnings.simplefilter("ignore", UserWarning)
                return await self._ratchet.decrypt_message(
                    parsed, _ad(self._session_ad, associated_data)
                )
        except _FAILURES:
            raise InvalidEnvelope from None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe state (it holds secrets: store it only inside the encrypted client state)."""
        return {
            "v": JSON_VERSION,
            "session_ad": self._session_ad.hex(),
            "ratchet": dict(self._ratchet.json),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RatchetSession:
        """Inverse of ``to_json``; ValueError for a document that is not one."""
        try:
            if data["v"] != JSON_VERSION:
                raise ValueError("unknown ratchet session version")
            session_ad = bytes.fromhex(data["session_ad"])
            ratchet = _Ratchet.from_json(cast(dict[str, Any], data["ratchet"]), **_PARAMS)
        except (KeyError, TypeError, InconsistentSerializationException) as exc:
            raise ValueError("not a ratchet session") from exc
        return cls(ratchet, session_ad)


__all__ = [
    "HEADER_BYTES",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "MESSAGE_INFO",
    "ROOT_INFO",
    "RatchetSession",
    "message_size",
]
