"""The crypto package's errors: one opaque class per format.

    CryptoError
    ├── InvalidEnvelope   any failure opening or peeking a message envelope
    ├── InvalidSealed     any failure unsealing a sealed box (e.g. Hawk credentials)
    ├── InvalidBundle     a claimed prekey bundle whose signatures or sizes do not check
    └── KeyfileError      wrong passphrase, or a keyfile that is damaged or not one

Each class is deliberately uninformative, like ``cryptography.fernet.InvalidToken``:
a truncated input, an unknown version, a flipped byte, a wrong key, a bad
signature and an unknown sender all look the same. Telling them apart would
hand an attacker an oracle and would tempt callers into "recoverable" special
cases that do not exist: whatever the reason, the bytes are not trustworthy.
The errors are raised ``from None`` so no library exception rides along as
context.

These are not ``rossby.errors.RossbyError``: they never cross the wire, the
server only ever verifies signatures (which answer a bool), and the client
decides what a bad message means to its user.

Misuse on the producing side (a malformed recipient key, too many
recipients, a kind that is not allowed) is the caller's own bug and raises
``ValueError``/``TypeError`` with a precise message instead.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of the opaque failures of ``rossby.crypto``."""


class InvalidEnvelope(CryptoError):
    """The envelope cannot be trusted; the reason is withheld on purpose."""


class InvalidSealed(CryptoError):
    """The sealed box cannot be opened; the reason is withheld on purpose."""


class InvalidBundle(CryptoError):
    """A prekey bundle is not safe to start a session with; which check failed is withheld."""


class KeyfileError(CryptoError):
    """Wrong passphrase, or the file is damaged; indistinguishable on purpose."""


__all__ = ["CryptoError", "InvalidBundle", "InvalidEnvelope", "InvalidSealed", "KeyfileError"]
