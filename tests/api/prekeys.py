"""Prekeys for a bare test device (tests.api.device), built from the real
primitives (``cryptography``'s X25519 and ML-KEM-768, ``sign_prekey``), and
the three prekey calls, so API tests see exactly what the server answers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rossby.crypto.prekeys import PrekeyKind, sign_prekey
from rossby.v1 import rossby_pb2 as pb
from tests.api.device import Device


def x25519_public() -> bytes:
    return X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def mlkem_public() -> bytes:
    key = MLKEM768PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def signed(
    dev: Device,
    kind: PrekeyKind,
    key_id: int,
    public_key: bytes | None = None,
    *,
    signing_private: bytes | None = None,
) -> pb.SignedPrekey:
    """A prekey of ``kind`` signed by the device's key (or ``signing_private``)."""
    if public_key is None:
        public_key = x25519_public() if kind is PrekeyKind.SIGNED else mlkem_public()
    private = signing_private or dev.keys.signing_private_bytes()
    signature = sign_prekey(private, kind, dev.device_id, key_id, public_key)
    return pb.SignedPrekey(key_id=key_id, public_key=public_key, signature=signature)


def one_time(first_id: int, count: int) -> list[pb.OneTimePrekey]:
    return [pb.OneTimePrekey(key_id=first_id + i, public_key=x25519_public()) for i in range(count)]


def kem(dev: Device, first_id: int, count: int) -> list[pb.SignedPrekey]:
    return [signed(dev, PrekeyKind.ONE_TIME_KEM, first_id + i) for i in range(count)]


def full_upload(
    dev: Device, *, one_time_count: int = 5, kem_count: int = 5, first_id: int = 1
) -> pb.UploadPrekeysRequest:
    """A first upload: a signed prekey, a last-resort key and both pools."""
    return pb.UploadPrekeysRequest(
        signed_prekey=signed(dev, PrekeyKind.SIGNED, 1),
        one_time_prekeys=one_time(first_id, one_time_count),
        one_time_kem_prekeys=kem(dev, first_id, kem_count),
        last_resort_kem_prekey=signed(dev, PrekeyKind.LAST_RESORT_KEM, 1),
    )


async def upload(dev: Device, request: pb.UploadPrekeysRequest) -> pb.PrekeyStatus:
    reply = await dev.call("UploadPrekeys", request, pb.UploadPrekeysResponse)
    return reply.status


async def status(dev: Device) -> pb.PrekeyStatus:
    reply = await dev.call(
        "GetPrekeyStatus", pb.GetPrekeyStatusRequest(), pb.GetPrekeyStatusResponse
    )
    return reply.status


async def claim(
    dev: Device, box_id: uuid.UUID | str, device_ids: Sequence[uuid.UUID | str] = ()
) -> pb.ClaimPrekeysResponse:
    request = pb.ClaimPrekeysRequest(box_id=str(box_id), device_ids=[str(d) for d in device_ids])
    return await dev.call("ClaimPrekeys", request, pb.ClaimPrekeysResponse)
