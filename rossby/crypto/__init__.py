"""Client-side cryptography shared by the server and the SDK.

Everything here runs on public ``cryptography`` primitives only (X25519,
Ed25519, HKDF-SHA256, ChaCha20-Poly1305, Scrypt, SHA-512). The byte formats,
the signed strings and test vectors are in ``docs/envelope.md``.

    keys      device key pairs; the key and authorize signatures the server checks
    sealed    anonymous boxes to one X25519 key (Hawk credentials from the server)
    envelope  the signed, multi-device message envelope
    keyfile   the passphrase-protected local keyfile
    safety    safety numbers and QR payloads

Each format has exactly one opaque error (see ``rossby.crypto.errors``);
randomness and time are parameters so the vectors are exact.
"""

from __future__ import annotations

from rossby.crypto.envelope import (
    MAX_RECIPIENTS,
    EnvelopeHeader,
    OpenedMessage,
    RecipientDevice,
    SenderIdentity,
    SenderLookup,
    envelope_size,
    open_envelope,
    peek_header,
    seal_envelope,
)
from rossby.crypto.errors import CryptoError, InvalidEnvelope, InvalidSealed, KeyfileError
from rossby.crypto.keyfile import (
    DeviceKeyfile,
    HawkCredentials,
    decode_keyfile,
    encode_keyfile,
    read_keyfile,
    rewrite_cost,
    scrypt_n_of,
    write_keyfile,
)
from rossby.crypto.keys import (
    DeviceKeyPair,
    PublicDeviceKeys,
    authorize_signature,
    key_signature,
    verify_authorize_signature,
    verify_key_signature,
)
from rossby.crypto.safety import SafetyNumber, fingerprint, safety_number
from rossby.crypto.sealed import credentials_aad, seal, unseal

__all__ = [
    "MAX_RECIPIENTS",
    "CryptoError",
    "DeviceKeyPair",
    "DeviceKeyfile",
    "EnvelopeHeader",
    "HawkCredentials",
    "InvalidEnvelope",
    "InvalidSealed",
    "KeyfileError",
    "OpenedMessage",
    "PublicDeviceKeys",
    "RecipientDevice",
    "SafetyNumber",
    "SenderIdentity",
    "SenderLookup",
    "authorize_signature",
    "credentials_aad",
    "decode_keyfile",
    "encode_keyfile",
    "envelope_size",
    "fingerprint",
    "key_signature",
    "open_envelope",
    "peek_header",
    "read_keyfile",
    "rewrite_cost",
    "safety_number",
    "scrypt_n_of",
    "seal",
    "seal_envelope",
    "unseal",
    "verify_authorize_signature",
    "verify_key_signature",
    "write_keyfile",
]
