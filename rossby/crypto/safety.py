"""Safety numbers: what two people compare to know the server gave them the right keys.

The server hands out public keys, so a malicious server could hand out its
own. Two users defeat that by comparing, out of band, a number derived from
the keys each of them sees. Because a box has several devices and a message
is readable by all of them, the number covers every device of both boxes: a
device added behind a user's back changes it.

Per party (after Signal's ``NumericFingerprintGenerator``)::

    item_i   = X25519 public (32) || Ed25519 public (32)    for each device
    material = box id (16) || device count (u16) || items, sorted ascending, duplicates dropped
    h        = version (u16, 0x0001) || material
    repeat 5200 times:  h = SHA-512(h || material)
    fingerprint = h[:32]

The iteration makes a brute-force search for a key set that collides with a
displayed number 5200 times dearer. Sorting makes the result independent of
the order in which the server lists the devices.

Digits: the fingerprint's first 30 bytes, as six 5-byte big-endian integers,
each reduced mod 100000 and written as 5 digits: 30 digits per party. The
two parties' digits are joined lower box id first (raw UUID bytes), giving
the same 60 digits (12 groups of 5) on both sides.

QR payload: ``0x01 || fingerprint of the lower box id || fingerprint of the
higher`` (65 bytes). Scanning the other phone's code and comparing payloads
(``SafetyNumber.matches``) replaces reading 60 digits aloud.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from rossby.crypto.keys import PublicDeviceKeys

FINGERPRINT_VERSION = 1
QR_VERSION = 0x01
ITERATIONS = 5200
FINGERPRINT_BYTES = 32
GROUP = 5


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """The 60 digits and the QR payload; equal on both sides exactly when the keys agree."""

    digits: str
    qr_payload: bytes

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.digits[i : i + GROUP] for i in range(0, len(self.digits), GROUP))

    def matches(self, scanned_qr: bytes) -> bool:
        """Whether a QR payload scanned from the other device shows the same keys."""
        return hmac.compare_digest(self.qr_payload, scanned_qr)

    def __str__(self) -> str:
        return " ".join(self.groups)


def fingerprint(box_id: uuid.UUID, devices: Iterable[PublicDeviceKeys]) -> bytes:
    """One party's 32-byte fingerprint over every device key of ``box_id``."""
    items = set()
    for device in devices:
        enc, sig = device.encryption_public, device.signing_public
        if len(enc) != 32 or len(sig) != 32:
            raise ValueError("device public keys are exactly 32 bytes each")
        items.add(enc + sig)
    if not items:
        raise ValueError("a box has at least one device")
    if len(items) > 0xFFFF:
        raise ValueError("too many devices")
    material = box_id.bytes + struct.pack(">H", len(items)) + b"".join(sorted(items))
    h = struct.pack(">H", FINGERPRINT_VERSION) + material
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + material).digest()
    return h[:FINGERPRINT_BYTES]


def _digits(fp: bytes) -> str:
    chunks = (int.from_bytes(fp[i : i + 5], "big") % 100000 for i in range(0, 30, 5))
    return "".join(f"{c:05d}" for c in chunks)


def safety_number(
    box_a: uuid.UUID,
    devices_a: Iterable[PublicDeviceKeys],
    box_b: uuid.UUID,
    devices_b: Iterable[PublicDeviceKeys],
) -> SafetyNumber:
    """The shared safety number of two boxes; argument order does not matter."""
    parties = sorted(
        [(box_a.bytes, fingerprint(box_a, devices_a)), (box_b.bytes, fingerprint(box_b, devices_b))]
    )
    (_, low), (_, high) = parties
    return SafetyNumber(_digits(low) + _digits(high), bytes([QR_VERSION]) + low + high)
