"""The device's local keyfile: everything a device must keep secret, under a passphrase.

Format v1 (byte offsets)::

    0    4   magic b"RSKF"
    4    1   version = 0x01
    5    1   log2(N), the scrypt cost (17 by default; files from before 2026-12 have 15)
    6    1   r, scrypt block size (8 by default)
    7    1   p, scrypt parallelism (1 by default; 1..16 accepted)
    8    16  salt (random per write)
    24   12  nonce (random per write)
    36   ..  ChaCha20-Poly1305 ciphertext of the JSON document below, with tag

Key: ``Scrypt(salt, length=32, n=2**log2N, r, p)`` over the passphrase,
NFC-normalised and UTF-8 encoded (so the same passphrase typed on two
keyboards that compose accents differently still opens the file). The AEAD's
associated data is the whole 36-byte header, so nobody can lower the stored
cost parameters or swap the salt without the tag failing.

The cost lives in the header, not in code, so it can be raised later: an old
file keeps opening with its own parameters, and every rewrite uses at least
the current cost (``rewrite_cost``), never lowering a file's. The default,
N = 2^17, r = 8, p = 1, is the OWASP password-storage recommendation for
scrypt (2^15 was the 2009 paper's interactive figure); it takes about 0.4 s
on the 2-core development machine. Scrypt needs 128 * r * N bytes of memory
(128 MiB by default); a file asking for more than 1 GiB is refused, so a
crafted file cannot make the reader allocate without bound.

Plaintext: UTF-8 JSON with sorted keys::

    {"v": 1, "device_id": "<uuid>", "box_id": "<uuid>" | null,
     "encryption_private": "<base64>", "signing_private": "<base64>",
     "hawk": {"id": "...", "key": "<base64>", "algorithm": "sha256"} | null,
     "server": "host:port" | null, "home_region": "..." | null}

JSON rather than a binary layout because the contents grow over a device's
life (box id and credentials arrive after authorization) and are never on a
hot path.

The file is written atomically with mode 0600: a temporary file in the same
directory is created with ``O_CREAT|O_EXCL`` and mode 0600, written, fsynced
and renamed over the target, so a crash leaves either the old file or the
new one, never a torn or world-readable one.

A wrong passphrase and a damaged file both raise the one ``KeyfileError``.
Errors reaching the file itself (missing, permission denied) are ``OSError``s
and propagate unchanged: they are not secrets and the user must see them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from rossby.crypto._common import KEY_BYTES, Rng, random_bytes
from rossby.crypto.errors import KeyfileError
from rossby.crypto.keys import DeviceKeyPair

MAGIC = b"RSKF"
VERSION = 0x01
DEFAULT_SCRYPT_N = 2**17
DEFAULT_SCRYPT_R = 8
DEFAULT_SCRYPT_P = 1
MAX_SCRYPT_MEMORY = 2**30
MAX_P = 16

_HEADER = struct.Struct(">4sBBBB16s12s")
_TAG_BYTES = 16


@dataclass(frozen=True, slots=True)
class HawkCredentials:
    """The device's Hawk credentials, as unsealed from ``AuthorizeResponse``."""

    id: str
    key: bytes
    algorithm: str = "sha256"

    def __repr__(self) -> str:
        return f"HawkCredentials(id={self.id!r}, algorithm={self.algorithm!r})"


@dataclass(frozen=True, slots=True)
class DeviceKeyfile:
    """What a device remembers between runs. Fields other than the keys fill in over time."""

    device_id: uuid.UUID
    keys: DeviceKeyPair
    box_id: uuid.UUID | None = None
    hawk: HawkCredentials | None = None
    server: str | None = None
    home_region: str | None = None


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, bytes):
        return passphrase
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _params_ok(log2_n: int, r: int, p: int) -> bool:
    return (
        1 <= log2_n <= 62
        and r >= 1
        and 1 <= p <= MAX_P
        and 128 * r * 2**log2_n <= MAX_SCRYPT_MEMORY
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError
    return base64.b64decode(text, validate=True)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError
    return value


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError
    return uuid.UUID(value)


def _to_json(keyfile: DeviceKeyfile) -> bytes:
    hawk = keyfile.hawk
    doc = {
        "v": 1,
        "device_id": str(keyfile.device_id),
        "box_id": None if keyfile.box_id is None else str(keyfile.box_id),
        "encryption_private": _b64(keyfile.keys.encryption_private_bytes()),
        "signing_private": _b64(keyfile.keys.signing_private_bytes()),
        "hawk": None
        if hawk is None
        else {"id": hawk.id, "key": _b64(hawk.key), "algorithm": hawk.algorithm},
        "server": keyfile.server,
        "home_region": keyfile.home_region,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _from_json(raw: bytes) -> DeviceKeyfile:
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ValueError
    hawk_doc = doc.get("hawk")
    hawk = None
    if hawk_doc is not None:
        if not isinstance(hawk_doc, dict) or not isinstance(hawk_doc.get("id"), str):
            raise ValueError
        algorithm = hawk_doc.get("algorithm")
        if not isinstance(algorithm, str):
            raise ValueError
        hawk = HawkCredentials(hawk_doc["id"], _unb64(hawk_doc.get("key")), algorithm)
    box_id = doc.get("box_id")
    return DeviceKeyfile(
        device_id=_uuid(doc.get("device_id")),
        keys=DeviceKeyPair.from_private_bytes(
            _unb64(doc.get("encryption_private")), _unb64(doc.get("signing_private"))
        ),
        box_id=None if box_id is None else _uuid(box_id),
        hawk=hawk,
        server=_opt_str(doc.get("server")),
        home_region=_opt_str(doc.get("home_region")),
    )


def encode_keyfile(
    keyfile: DeviceKeyfile,
    passphrase: str | bytes,
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    scrypt_r: int = DEFAULT_SCRYPT_R,
    scrypt_p: int = DEFAULT_SCRYPT_P,
    rng: Rng | None = None,
) -> bytes:
    """The encrypted file contents. Tests pass a small ``scrypt_n`` (e.g. 2**10) for speed.

    ``rng`` is asked for the 16-byte salt, then the 12-byte nonce.
    """
    log2_n = scrypt_n.bit_length() - 1
    if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or not _params_ok(log2_n, scrypt_r, scrypt_p):
        raise ValueError(
            f"scrypt n must be a power of two >= 2, p 1..{MAX_P}, and 128*r*n <= 1 GiB"
        )
    salt = random_bytes(rng, 16)
    nonce = random_bytes(rng, 12)
    header = _HEADER.pack(MAGIC, VERSION, log2_n, scrypt_r, scrypt_p, salt, nonce)
    key = Scrypt(salt=salt, length=KEY_BYTES, n=scrypt_n, r=scrypt_r, p=scrypt_p).derive(
        _passphrase_bytes(passphrase)
    )
    return header + ChaCha20Poly1305(key).encrypt(nonce, _to_json(keyfile), header)


def decode_keyfile(data: bytes, passphrase: str | bytes) -> DeviceKeyfile:
    """Decrypt file contents; a wrong passphrase or any damage raises ``KeyfileError``."""
    try:
        if not isinstance(data, bytes) or len(data) < _HEADER.size + _TAG_BYTES:
            raise ValueError
        magic, version, log2_n, r, p, salt, nonce = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise ValueError
        if not _params_ok(log2_n, r, p):
            raise ValueError
        header = data[: _HEADER.size]
        key = Scrypt(salt=salt, length=KEY_BYTES, n=2**log2_n, r=r, p=p).derive(
            _passphrase_bytes(passphrase)
        )
        plaintext = ChaCha20Poly1305(key).decrypt(nonce, data[_HEADER.size :], header)
        return _from_json(plaintext)
    except (ValueError, InvalidTag, TypeError, binascii.Error, MemoryError):
        raise KeyfileError from None


def scrypt_n_of(data: bytes) -> int:
    """The cost a file was written with, so a caller can rewrite files below today's default."""
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise KeyfileError
    return int(2 ** data[5])


def rewrite_cost(data: bytes, minimum: int = DEFAULT_SCRYPT_N) -> int:
    """The cost to rewrite a file with: its own, raised to ``minimum``.

    So files written before a default was raised are upgraded the next time
    they are written, and a file a user made costlier stays so. Tests pass a
    small ``minimum`` (with files written at that cost) to stay fast.
    """
    return max(scrypt_n_of(data), minimum)


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600, durable on return.

    A crash leaves the old file or the new one, never a torn or
    world-readable one. Shared by the keyfile and the client's state file.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            # The umask can only remove bits; fchmod pins exactly 0600 even so.
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def write_keyfile(
    path: str | os.PathLike[str],
    keyfile: DeviceKeyfile,
    passphrase: str | bytes,
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    rng: Rng | None = None,
) -> None:
    """Atomically replace ``path`` with the encrypted keyfile, mode 0600."""
    write_private_file(path, encode_keyfile(keyfile, passphrase, scrypt_n=scrypt_n, rng=rng))


def read_keyfile(path: str | os.PathLike[str], passphrase: str | bytes) -> DeviceKeyfile:
    """Read and decrypt ``path``; ``OSError`` for file trouble, ``KeyfileError`` otherwise."""
    return decode_keyfile(Path(path).read_bytes(), passphrase)
