"""The padded plaintext both envelope versions encrypt: kind, length, body, zero padding.

Kept in one place so v1 and v2 cannot drift: the kind lives inside the
ciphertext and lengths round up to 64 bytes, so the server cannot tell a
typing notification from a short text by its size (docs/envelope.md).

    1    k = kind length, 1..32
    k    kind, ASCII matching [a-z][a-z0-9._-]*
    4    m = body length (u32)
    m    body
    p    zero bytes, the fewest that make the total a multiple of 64
"""

from __future__ import annotations

import re
import struct

MAX_KIND_BYTES = 32
PAD_BLOCK = 64

_KIND_RE = re.compile(rb"[a-z][a-z0-9._-]*\Z")
_U32 = struct.Struct(">I")


def check_kind(kind: str) -> bytes:
    """The kind's ASCII bytes; ValueError for a kind outside the alphabet or too long."""
    raw = kind.encode("ascii", "strict") if kind.isascii() else b""
    if not 1 <= len(raw) <= MAX_KIND_BYTES or not _KIND_RE.match(raw):
        raise ValueError(f"kind must match [a-z][a-z0-9._-]* and be 1..{MAX_KIND_BYTES} bytes")
    return raw


def padded_length(kind_bytes: int, body_len: int) -> int:
    unpadded = 1 + kind_bytes + _U32.size + body_len
    return -(-unpadded // PAD_BLOCK) * PAD_BLOCK


def pad(kind: str, body: bytes) -> bytes:
    """The padded plaintext; ValueError for a bad kind or a body of 4 GiB or more."""
    kind_raw = check_kind(kind)
    if len(body) >= 2**32:
        raise ValueError("body is too long")
    out = bytearray()
    out += bytes([len(kind_raw)]) + kind_raw + _U32.pack(len(body)) + body
    out += bytes(padded_length(len(kind_raw), len(body)) - len(out))
    return bytes(out)


def unpad(plaintext: bytes) -> tuple[str, bytes]:
    """Strict inverse of ``pad``: excess or non-zero padding is a ValueError."""
    if len(plaintext) % PAD_BLOCK or not plaintext:
        raise ValueError
    k = plaintext[0]
    kind = plaintext[1 : 1 + k]
    if not 1 <= k <= MAX_KIND_BYTES or len(kind) != k or not _KIND_RE.match(kind):
        raise ValueError
    (m,) = _U32.unpack_from(plaintext, 1 + k)
    start = 1 + k + _U32.size
    body, padding = plaintext[start : start + m], plaintext[start + m :]
    if len(body) != m or len(padding) >= PAD_BLOCK or padding.strip(b"\x00"):
        raise ValueError
    return kind.decode("ascii"), body
