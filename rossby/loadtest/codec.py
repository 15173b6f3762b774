"""What the load harness puts in a message and how it reads the send time back.

Two codecs behind one seam, chosen by ``--crypto``:

* ``RandomPayloads`` (the default): the send time in the first 8 bytes and
  random bytes after it, the same ciphertext for every recipient box. It
  costs the generator nothing, so a throughput run measures the server.
* ``RealCrypto`` (``rossby.loadtest.realcrypto``): every device publishes
  prekeys, and every message is a real envelope (PQXDH on first contact,
  then the Double Ratchet), sealed per recipient box and opened by the
  receiver, exactly as the SDK does. Its CPU cost per message is what
  docs/benchmarks.md reports as the client's cryptography cost.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Sequence
from typing import Protocol

from rossby.loadtest.device import SimDevice
from rossby.v1 import rossby_pb2 as pb

STAMP = struct.Struct(">d")
"""The sender's wall clock, seconds, at the front of every body."""


def stamped_body(rng: random.Random, size: int) -> bytes:
    """``size`` bytes: the send time, then random filler."""
    return STAMP.pack(time.time()) + rng.randbytes(size - STAMP.size)


def read_stamp(body: bytes) -> float | None:
    """The send time at the front of a body; None when it is too short."""
    if len(body) < STAMP.size:
        return None
    value: float = STAMP.unpack_from(body)[0]
    return value


class PayloadCodec(Protocol):
    """The harness's view of message contents."""

    async def prepare(self, device: SimDevice, deadline: float) -> None:
        """After Authorize: whatever a device must publish before others write to it."""

    async def seal(
        self, sender: SimDevice, boxes: Sequence[str], message_id: str, body: bytes
    ) -> dict[str, bytes]:
        """The ciphertext for each recipient box."""

    async def open(self, receiver: SimDevice, message: pb.QueuedMessage) -> float | None:
        """The send time inside a received message; None when it cannot be read."""


class RandomPayloads:
    """The body is the ciphertext: no cryptography, nothing to publish."""

    async def prepare(self, device: SimDevice, deadline: float) -> None:
        return None

    async def seal(
        self, sender: SimDevice, boxes: Sequence[str], message_id: str, body: bytes
    ) -> dict[str, bytes]:
        return dict.fromkeys(boxes, body)

    async def open(self, receiver: SimDevice, message: pb.QueuedMessage) -> float | None:
        return read_stamp(message.ciphertext)


__all__ = ["STAMP", "PayloadCodec", "RandomPayloads", "read_stamp", "stamped_body"]
