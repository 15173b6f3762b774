"""UploadPrekeys input: the request checked field by field, before any write.

The store keeps bytes and never looks inside them (``rossby.store.prekeys``),
so everything a sender will later rely on is checked here: exact sizes, key
material that parses (a sender's PQXDH ``initiate`` must not fail on a key
the server accepted), no key id twice within one pool of one request, and
at most ``pool_max`` keys of a kind. ``signed_parts`` lists the signatures
for the caller to check against the device's current key, which only a
store read answers. Plain functions, so the server runs them in a thread
(a full upload parses 400 keys).

Every refusal is INVALID_ARGUMENT ``PREKEY_INVALID`` with ``metadata.field``
naming the offending field the way the request spells it
(``one_time_kem_prekeys[3].public_key``), so a client can tell which of its
keys it built wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from rossby import errors
from rossby.crypto.prekeys import PrekeyKind
from rossby.server import validate
from rossby.store.prekeys import Prekey, PrekeyUpload
from rossby.v1 import rossby_pb2 as pb

REASON = "PREKEY_INVALID"
SIGNATURE_BYTES = 64
X25519_BYTES = 32

#: Any X25519 key works as the other side of the usability check below; a
#: fixed one keeps the check free of key generation per request.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@dataclass(frozen=True, slots=True)
class SignedPart:
    """One signature the upload carries, with what it must cover."""

    field: str
    kind: PrekeyKind
    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CheckedUpload:
    upload: PrekeyUpload
    signed_parts: Sequence[SignedPart]


def invalid(field: str, why: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{field}: {why}", reason=REASON, metadata={"field": field})


def _x25519(field: str, public_key: bytes) -> None:
    """A 32-byte X25519 key that is not of low order: with one, every DH a
    sender runs against it answers zeros, which ``cryptography`` refuses,
    so the sender's first message to this device would fail."""
    if len(public_key) != X25519_BYTES:
        raise invalid(field, f"an X25519 public key is {X25519_BYTES} bytes")
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        raise invalid(field, "not a usable X25519 public key") from None


def _mlkem(field: str, public_key: bytes) -> None:
    """An ML-KEM-768 encapsulation key that passes FIPS 203's input check
    (every coefficient below q): encapsulation to any other refuses."""
    if len(public_key) != PrekeyKind.ONE_TIME_KEM.public_bytes:
        raise invalid(
            field, f"an ML-KEM-768 public key is {PrekeyKind.ONE_TIME_KEM.public_bytes} bytes"
        )
    try:
        MLKEM768PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise invalid(field, "not a valid ML-KEM-768 encapsulation key") from None


def _signed(field: str, kind: PrekeyKind, key: pb.SignedPrekey) -> tuple[Prekey, SignedPart]:
    public_key = bytes(key.public_key)
    if kind is PrekeyKind.SIGNED:
        _x25519(f"{field}.public_key", public_key)
    else:
        _mlkem(f"{field}.public_key", public_key)
    if len(key.signature) != SIGNATURE_BYTES:
        raise invalid(f"{field}.signature", f"an Ed25519 signature is {SIGNATURE_BYTES} bytes")
    signature = bytes(key.signature)
    part = SignedPart(field, kind, key.key_id, public_key, signature)
    return Prekey(key.key_id, public_key, signature), part


def _replaceable(field: str, kind: PrekeyKind, key: pb.SignedPrekey) -> tuple[Prekey, SignedPart]:
    """The signed prekey and the last-resort key: id 0 is refused, because
    ``PrekeyStatus`` answers 0 for "none uploaded"."""
    if key.key_id == 0:
        raise invalid(f"{field}.key_id", "0 means none; number keys from 1")
    return _signed(field, kind, key)


def _no_repeats(field: str, key_ids: Sequence[int]) -> None:
    seen: set[int] = set()
    for i, key_id in enumerate(key_ids):
        if key_id in seen:
            raise invalid(f"{field}[{i}].key_id", f"key id {key_id} appears twice in this request")
        seen.add(key_id)


def check_upload(request: pb.UploadPrekeysRequest, *, pool_max: int, now_ms: int) -> CheckedUpload:
    """The request as a ``PrekeyUpload``, or the first problem found."""
    one_time = request.one_time_prekeys
    kem = request.one_time_kem_prekeys
    validate.count("one_time_prekeys", len(one_time), 0, pool_max)
    validate.count("one_time_kem_prekeys", len(kem), 0, pool_max)
    has_signed = request.HasField("signed_prekey")
    has_last_resort = request.HasField("last_resort_kem_prekey")
    if not (has_signed or has_last_resort or one_time or kem or request.replace_pools):
        raise invalid("", "the request uploads nothing")
    parts: list[SignedPart] = []
    signed = last_resort = None
    if has_signed:
        signed, part = _replaceable("signed_prekey", PrekeyKind.SIGNED, request.signed_prekey)
        parts.append(part)
    if has_last_resort:
        last_resort, part = _replaceable(
            "last_resort_kem_prekey", PrekeyKind.LAST_RESORT_KEM, request.last_resort_kem_prekey
        )
        parts.append(part)
    _no_repeats("one_time_prekeys", [k.key_id for k in one_time])
    _no_repeats("one_time_kem_prekeys", [k.key_id for k in kem])
    one_time_keys = []
    for i, x in enumerate(one_time):
        _x25519(f"one_time_prekeys[{i}].public_key", bytes(x.public_key))
        one_time_keys.append(Prekey(x.key_id, bytes(x.public_key)))
    kem_keys = []
    for i, k in enumerate(kem):
        key, part = _signed(f"one_time_kem_prekeys[{i}]", PrekeyKind.ONE_TIME_KEM, k)
        kem_keys.append(key)
        parts.append(part)
    upload = PrekeyUpload(
        signed_prekey=signed,
        one_time_prekeys=one_time_keys,
        one_time_kem_prekeys=kem_keys,
        last_resort_kem_prekey=last_resort,
        replace_pools=request.replace_pools,
        uploaded_at_ms=now_ms,
    )
    return CheckedUpload(upload, parts)


__all__ = ["REASON", "CheckedUpload", "SignedPart", "check_upload", "invalid"]
