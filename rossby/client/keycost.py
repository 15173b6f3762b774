"""The keyfile cost the ``rossby client`` CLI uses, from the environment.

``ROSSBY_KEYFILE_SCRYPT_N`` (a power of two, at least 2^10) sets the scrypt
N for new keyfiles and the least N a rewritten one gets; unset, it is the
library default (``DEFAULT_SCRYPT_N``, 2^17). It exists so the CLI tests,
which run dozens of commands each unlocking a keyfile, stay fast, and for
devices too slow or small for 128 MiB of scrypt memory. It cannot lower the
cost of an existing file: rewrites keep a file's own cost when higher.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from rossby.client.errors import ClientError
from rossby.crypto.keyfile import DEFAULT_SCRYPT_N

SCRYPT_ENV: Final = "ROSSBY_KEYFILE_SCRYPT_N"
MIN_SCRYPT_N: Final = 2**10


def keyfile_cost(environ: Mapping[str, str] = os.environ) -> int:
    raw = environ.get(SCRYPT_ENV, "").strip()
    if not raw:
        return DEFAULT_SCRYPT_N
    try:
        n = int(raw, 0)
    except ValueError:
        n = 0
    if n < MIN_SCRYPT_N or n & (n - 1):
        raise ClientError(f"{SCRYPT_ENV} must be a power of two of at least {MIN_SCRYPT_N}")
    return n


__all__ = ["MIN_SCRYPT_N", "SCRYPT_ENV", "keyfile_cost"]
