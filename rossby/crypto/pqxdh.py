"""PQXDH: the first-contact key agreement against a claimed prekey bundle.

Implements Signal's PQXDH, revision 3 (https://signal.org/docs/specifications/pqxdh/),
with curve = curve25519, hash = SHA-256, pqkem = ML-KEM-768 (FIPS 203) and
info = ``"rossby/v2/pqxdh_CURVE25519_SHA-256_ML-KEM-768"``. Two deviations,
both about identity keys, both forced by keys Rossby devices already have:

* IK (the identity DH key) is the device's registered X25519 key, and
  prekeys are signed with the device's registered Ed25519 key instead of an
  XEdDSA signature by IK (spec 2.1, 3.2). The two keys are bound to each
  other and to the device id by the key log / ``key_signature``, which the
  caller has checked before it trusts ``Bundle.identity``.
* The associated data (spec 3.3) carries, for both parties, the device id
  and the Ed25519 key as well as IK, so a session is bound to exactly the
  two devices the key log names.

Why a one-time X25519 prekey is optional and a KEM key is not: spec 3.2, a
bundle always has a signed PQ key (one-time or the last-resort one), so the
post-quantum secret SS is always mixed in; the one-time DH key only adds
forward secrecy against a later theft of the signed prekey.

Bytes and the reasoning behind each binding: docs/envelope.md "PQXDH".
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rossby.crypto._common import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    Rng,
    X25519Private,
    random_bytes,
    x25519_private,
    x25519_public,
)
from rossby.crypto.errors import InvalidBundle, InvalidEnvelope
from rossby.crypto.keys import DeviceKeyPair
from rossby.crypto.prekeys import (
    MAX_KEY_ID,
    MLKEM768_CIPHERTEXT_BYTES,
    MLKEM768_PUBLIC_BYTES,
    PrekeyKind,
    kem_private_key,
    verify_prekey_signature,
)

PQXDH_INFO = b"rossby/v2/pqxdh_CURVE25519_SHA-256_ML-KEM-768"
AD_LABEL = b"rossby/v2/pqxdh-ad\x00"

#: Spec 2.2: F is 32 0xFF bytes for curve25519, so the KDF input never starts
#: like an XEdDSA/Ed25519 private key (cross-protocol separation).
_F = b"\xff" * 32
_SALT = bytes(32)  # spec 2.2: a zero-filled salt the length of the hash output

_FLAG_ONE_TIME = 0x01
_FLAG_LAST_RESORT = 0x02
_HEADER = struct.Struct(">B32sIII")
INITIAL_HEADER_BYTES = _HEADER.size + MLKEM768_CIPHERTEXT_BYTES  # 1133

Encapsulate = Callable[[bytes], tuple[bytes, bytes]]
"""``encapsulate(kem_public) -> (shared_secret, ciphertext)``; replaceable for test vectors only."""


@dataclass(frozen=True, slots=True)
class IdentityKeys:
    """A device's long-term public keys, as the (verified) key log pins them."""

    device_id: uuid.UUID
    dh_public: bytes
    signing_public: bytes

    @classmethod
    def of(cls, device_id: uuid.UUID, keys: DeviceKeyPair) -> IdentityKeys:
        """The public identity of a device whose key pair we hold (our own)."""
        return cls(device_id, keys.encryption_public_bytes, keys.signing_public_bytes)

    def encode(self) -> bytes:
        """device id (16) || X25519 IK (32) || Ed25519 (32): fixed length, so concatenable."""
        if len(self.dh_public) != KEY_BYTES or len(self.signing_public) != KEY_BYTES:
            raise ValueError("identity keys are 32 bytes each")
        return self.device_id.bytes + self.dh_public + self.signing_public


@dataclass(frozen=True, slots=True)
class Bundle:
    """One device's prekey bundle as ClaimPrekeys answers it (PQXDH 3.2). Unverified."""

    identity: IdentityKeys
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    one_time_prekey_id: int | None
    one_time_prekey: bytes | None
    kem_prekey_id: int
    kem_prekey: bytes
    kem_prekey_signature: bytes
    kem_last_resort: bool


@dataclass(frozen=True, slots=True)
class InitialHeader:
    """What the initiator sends with its first message (PQXDH 3.3), minus IK_A.

    IK_A is not repeated: the envelope's signed sender device names it, and
    the responder takes it from the key log, never from the message.
    """

    ephemeral_public: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None
    kem_prekey_id: int
    kem_last_resort: bool
    kem_ciphertext: bytes = field(repr=False)

    def encode(self) -> bytes:
        """The fixed 1133-byte encoding (docs/envelope.md "PQXDH", initial header)."""
        if len(self.ephemeral_public) != KEY_BYTES:
            raise ValueError("the ephemeral key is 32 bytes")
        if len(self.kem_ciphertext) != MLKEM768_CIPHERTEXT_BYTES:
            raise ValueError(f"an ML-KEM-768 ciphertext is {MLKEM768_CIPHERTEXT_BYTES} bytes")
        flags = (_FLAG_ONE_TIME if self.one_time_prekey_id is not None else 0) | (
            _FLAG_LAST_RESORT if self.kem_last_resort else 0
        )
        one_time = 0 if self.one_time_prekey_id is None else self.one_time_prekey_id
        for key_id in (self.signed_prekey_id, one_time, self.kem_prekey_id):
            if not 0 <= key_id <= MAX_KEY_ID:
                raise ValueError("a prekey id is a u32")
        head = _HEADER.pack(
            flags, self.ephemeral_public, self.signed_prekey_id, one_time, self.kem_prekey_id
        )
        return head + self.kem_ciphertext

    @classmethod
    def decode(cls, data: bytes) -> InitialHeader:
        """Strict inverse of ``encode``: exact length, known flags, zero id when unused."""
        if not isinstance(data, bytes) or len(data) != INITIAL_HEADER_BYTES:
            raise InvalidEnvelope
        flags, eph, spk_id, opk_id, kem_id = _HEADER.unpack_from(data)
        if flags & ~(_FLAG_ONE_TIME | _FLAG_LAST_RESORT):
            raise InvalidEnvelope
        has_one_time = bool(flags & _FLAG_ONE_TIME)
        if not has_one_time and opk_id != 0:
            raise InvalidEnvelope  # canonical: one encoding per header
        return cls(
            ephemeral_public=eph,
            signed_prekey_id=spk_id,
            one_time_prekey_id=opk_id if has_one_time else None,
            kem_prekey_id=kem_id,
            kem_last_resort=bool(flags & _FLAG_LAST_RESORT),
            kem_ciphertext=data[_HEADER.size :],
        )


def associated_data(initiator: IdentityKeys, responder: IdentityKeys) -> bytes:
    """Spec 3.3: AD = Encode(IK_A) || Encode(IK_B), here with device ids and Ed25519 keys too."""
    return AD_LABEL + initiator.encode() + responder.encode()


def _kdf(key_material: bytes) -> bytes:
    """Spec 2.2: HKDF(F || KM, salt = 0^32, info), 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=PQXDH_INFO).derive(
        _F + key_material
    )


def _real_encapsulate(kem_public: bytes) -> tuple[bytes, bytes]:
    return MLKEM768PublicKey.from_public_bytes(kem_public).encapsulate()


def _verify_bundle(bundle: Bundle) -> None:
    """Spec 3.3: Alice verifies the prekey signatures and aborts if verification fails."""
    ident = bundle.identity
    kem_kind = PrekeyKind.LAST_RESORT_KEM if bundle.kem_last_resort else PrekeyKind.ONE_TIME_KEM
    ok = (
        len(ident.dh_public) == KEY_BYTES
        and len(ident.signing_public) == KEY_BYTES
        and len(bundle.signed_prekey_signature) == SIGNATURE_BYTES
        and verify_prekey_signature(
            ident.signing_public,
            PrekeyKind.SIGNED,
            ident.device_id,
            bundle.signed_prekey_id,
            bundle.signed_prekey,
            bundle.signed_prekey_signature,
        )
        and len(bundle.kem_prekey) == MLKEM768_PUBLIC_BYTES
        and verify_prekey_signature(
            ident.signing_public,
            kem_kind,
            ident.device_id,
            bundle.kem_prekey_id,
            bundle.kem_prekey,
            bundle.kem_prekey_signature,
        )
        and (bundle.one_time_prekey_id is None) == (bundle.one_time_prekey is None)
        and (bundle.one_time_prekey is None or len(bundle.one_time_prekey) == KEY_BYTES)
        and (bundle.one_time_prekey_id is None or 0 <= bundle.one_time_prekey_id <= MAX_KEY_ID)
    )
    if not ok:
        raise InvalidBundle


def initiate(
    own_identity_private: X25519Private,
    own: IdentityKeys,
    bundle: Bundle,
    *,
    rng: Rng | None = None,
    encapsulate: Encapsulate | None = None,
) -> tuple[InitialHeader, bytes, bytes]:
    """Alice's side (spec 3.3): the header to send, the 32-byte SK and the AD.

    Verifies both bundle signatures first (``InvalidBundle`` otherwise; also
    for an unusable key: a low-order point makes X25519 fail). ``rng`` is
    asked for the 32-byte ephemeral private key. ``encapsulate`` exists for
    the test vectors only, because ML-KEM encapsulation randomness cannot be
    injected into ``cryptography``; production callers leave it None.
    Alice must erase EK's private half and the DH outputs once SK exists
    (spec 3.3): nothing here keeps them.
    """
    ik_a = x25519_private(own_identity_private)
    if ik_a.public_key().public_bytes_raw() != own.dh_public:
        raise ValueError("own_identity_private does not match own.dh_public")
    _verify_bundle(bundle)
    ek_a = x25519_private(random_bytes(rng, KEY_BYTES))
    try:
        ik_b = x25519_public(bundle.identity.dh_public)
        spk_b = x25519_public(bundle.signed_prekey)
        dh1 = ik_a.exchange(spk_b)  # DH1 = DH(IK_A, SPK_B)
        dh2 = ek_a.exchange(ik_b)  # DH2 = DH(EK_A, IK_B)
        dh3 = ek_a.exchange(spk_b)  # DH3 = DH(EK_A, SPK_B)
        dh4 = b""
        if bundle.one_time_prekey is not None:
            dh4 = ek_a.exchange(x25519_public(bundle.one_time_prekey))  # DH4 = DH(EK_A, OPK_B)
        # (CT, SS) = PQKEM-ENC(PQPK_B)
        ss, ct = (encapsulate or _real_encapsulate)(bundle.kem_prekey)
    except ValueError:
        raise InvalidBundle from None
    # SK = KDF(DH1 || DH2 || DH3 [|| DH4] || SS)
    sk = _kdf(dh1 + dh2 + dh3 + dh4 + ss)
    header = InitialHeader(
        ephemeral_public=ek_a.public_key().public_bytes_raw(),
        signed_prekey_id=bundle.signed_prekey_id,
        one_time_prekey_id=bundle.one_time_prekey_id,
        kem_prekey_id=bundle.kem_prekey_id,
        kem_last_resort=bundle.kem_last_resort,
        kem_ciphertext=ct,
    )
    return header, sk, associated_data(own, bundle.identity)


def respond(
    own_identity_private: X25519Private,
    own: IdentityKeys,
    peer: IdentityKeys,
    header: InitialHeader,
    *,
    signed_prekey_private: bytes,
    one_time_prekey_private: bytes | None,
    kem_private: bytes,
) -> tuple[bytes, bytes]:
    """Bob's side (spec 3.4): SK and AD from Alice's header and the prekeys it names.

    The caller picks the private keys by the ids in ``header`` (the KEM one
    from the one-time pool or the last-resort key, by ``kem_last_resort``)
    and deletes the one-time privates once the first message decrypted
    (spec 3.4). ``one_time_prekey_private`` must be given exactly when the
    header names a one-time prekey: a header naming one the device no longer
    has is a replay or a forgery, and like every other mismatch (a bad KEM
    ciphertext, a low-order ephemeral key) raises ``InvalidEnvelope``. A
    wrong KEM private does not raise here: ML-KEM's implicit rejection
    yields an unrelated SS, and the first ratchet decrypt fails instead.
    """
    ik_b = x25519_private(own_identity_private)
    if ik_b.public_key().public_bytes_raw() != own.dh_public:
        raise ValueError("own_identity_private does not match own.dh_public")
    if (header.one_time_prekey_id is None) != (one_time_prekey_private is None):
        raise InvalidEnvelope
    try:
        spk_b = x25519_private(signed_prekey_private)
        ek_a = x25519_public(header.ephemeral_public)
        dh1 = spk_b.exchange(x25519_public(peer.dh_public))  # DH1 = DH(SPK_B, IK_A)
        dh2 = ik_b.exchange(ek_a)  # DH2 = DH(IK_B, EK_A)
        dh3 = spk_b.exchange(ek_a)  # DH3 = DH(SPK_B, EK_A)
        dh4 = b""
        if one_time_prekey_private is not None:
            dh4 = x25519_private(one_time_prekey_private).exchange(ek_a)  # DH4 = DH(OPK_B, EK_A)
        ss = kem_private_key(kem_private).decapsulate(header.kem_ciphertext)  # SS = PQKEM-DEC
    except ValueError:
        raise InvalidEnvelope from None
    return _kdf(dh1 + dh2 + dh3 + dh4 + ss), associated_data(peer, own)


__all__ = [
    "AD_LABEL",
    "INITIAL_HEADER_BYTES",
    "PQXDH_INFO",
    "Bundle",
    "Encapsulate",
    "IdentityKeys",
    "InitialHeader",
    "associated_data",
    "initiate",
    "respond",
]
