"""Client-side cryptography shared by the server and the SDK.

Everything here runs on public ``cryptography`` primitives only (X25519,
Ed25519, ML-KEM-768, HKDF-SHA256, ChaCha20-Poly1305, Scrypt, SHA-512) and the
``doubleratchet`` library's Double Ratchet. The byte formats, the signed
strings and test vectors are in ``docs/envelope.md``.

    keys         device key pairs; the key and authorize signatures the server checks
    sealed       anonymous boxes to one X25519 key (Hawk credentials from the server)
    prekeys      signed and one-time prekeys (X25519, ML-KEM-768) and their signatures
    pqxdh        PQXDH, the first-contact key agreement against a claimed bundle
    ratchet      the Double Ratchet session per (own device, peer device)
    envelope_v2  the message envelope clients send: one ratchet message per reader
    envelope     the v1 envelope (static-key wraps), read-only: queued before the upgrade
    keyfile      the passphrase-protected local keyfile
    safety       safety numbers and QR payloads

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
from rossby.crypto.envelope_v2 import (
    DeviceEntry,
    EnvelopeDraft,
    ParsedEnvelope,
    draft_envelope,
    envelope_v2_size,
    open_body,
    parse_envelope,
    peek_version,
    seal_draft,
    verify_envelope,
)
from rossby.crypto.errors import (
    CryptoError,
    InvalidBundle,
    InvalidEnvelope,
    InvalidSealed,
    KeyfileError,
)
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
from rossby.crypto.pqxdh import Bundle, IdentityKeys, InitialHeader, initiate, respond
from rossby.crypto.prekeys import (
    PrekeyKind,
    PrekeySecret,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    sign_prekey,
    verify_prekey_signature,
)
from rossby.crypto.ratchet import MAX_SKIP, MAX_SKIPPED_KEYS, RatchetSession
from rossby.crypto.safety import SafetyNumber, fingerprint, safety_number
from rossby.crypto.sealed import credentials_aad, seal, unseal

__all__ = [
    "MAX_RECIPIENTS",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "Bundle",
    "CryptoError",
    "DeviceEntry",
    "DeviceKeyPair",
    "DeviceKeyfile",
    "EnvelopeDraft",
    "EnvelopeHeader",
    "HawkCredentials",
    "IdentityKeys",
    "InitialHeader",
    "InvalidBundle",
    "InvalidEnvelope",
    "InvalidSealed",
    "KeyfileError",
    "OpenedMessage",
    "ParsedEnvelope",
    "PrekeyKind",
    "PrekeySecret",
    "PublicDeviceKeys",
    "RatchetSession",
    "RecipientDevice",
    "SafetyNumber",
    "SenderIdentity",
    "SenderLookup",
    "authorize_signature",
    "credentials_aad",
    "decode_keyfile",
    "draft_envelope",
    "encode_keyfile",
    "envelope_size",
    "envelope_v2_size",
    "fingerprint",
    "generate_kem_prekeys",
    "generate_one_time_prekeys",
    "generate_signed_prekey",
    "initiate",
    "key_signature",
    "open_body",
    "open_envelope",
    "parse_envelope",
    "peek_header",
    "peek_version",
    "read_keyfile",
    "respond",
    "rewrite_cost",
    "safety_number",
    "scrypt_n_of",
    "seal",
    "seal_draft",
    "seal_envelope",
    "sign_prekey",
    "unseal",
    "verify_authorize_signature",
    "verify_envelope",
    "verify_key_signature",
    "verify_prekey_signature",
    "write_keyfile",
]
