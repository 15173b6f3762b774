"""Failures that happen on the device, before or after any RPC.

RPC failures are not here: they arrive as the server's own ``rossby.errors``
classes (rebuilt by ``rossby.status.from_rpc_error``), so a caller handles
``NotFound`` the same way whether it talks to the server directly or through
this SDK.

    ClientError
    ├── NotInitialized     no device in this home directory yet
    ├── AlreadyInitialized the home already holds a (different) device
    ├── NotAuthorized      registered, but the codes were never verified
    ├── WrongPassphrase    the keyfile does not open (wrong passphrase or damaged)
    ├── HomeLocked         another process is using the same home directory
    ├── UntrustedKeys      the keystore answered keys that do not verify
    │   └── KeyLogError    the box's key log forked, rolled back, or does not vouch for its keys
    ├── LinkError          device linking failed a check (or timed out: LinkTimeout)
    ├── UnknownSender      a message from a box we cannot look up (yet)
    └── InvalidMessage     any decryption or verification failure, deliberately opaque
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of the SDK's local failures; the message is meant for the user."""


class NotInitialized(ClientError):
    pass


class AlreadyInitialized(ClientError):
    pass


class NotAuthorized(ClientError):
    pass


class WrongPassphrase(ClientError):
    """The keyfile's AEAD tag failed.

    A wrong passphrase and a damaged file are indistinguishable on purpose
    (``rossby.crypto.KeyfileError``), so the message names both.
    """


class HomeLocked(ClientError):
    """Two processes writing one state file would silently lose pins and
    seen ids, so a home directory has one user at a time."""


class UntrustedKeys(ClientError):
    """A device's ``key_signature`` does not verify, or a box lists no device.

    The signature is made by the device's own signing key, so any server can
    produce a valid one for a device it invents; a *failing* one means the
    answer was corrupted or tampered with, and nothing of it is trusted.
    """


class KeyLogError(UntrustedKeys):
    """The box's key log does not verify, or does not extend the chain this
    device saw before (a fork or a rollback), or lists other keys than the
    keystore: the keystore is lying or broken, and none of the box's keys
    are trusted. The message says which."""


class LinkError(ClientError):
    """Device linking cannot go on safely: the device that joined did not
    know the passphrase, or the approval did not come from its holder."""


class LinkTimeout(LinkError):
    """Nobody joined (old device) or approved (new device) in time."""


class UnknownSender(ClientError):
    """The sender's box is not one we know a contact for.

    The keystore is searchable by contact only, so the sender's keys cannot
    be fetched until the user tells us who it is (``resolve``). The message
    is kept locally and opened then.
    """


class InvalidMessage(ClientError):
    """The message cannot be trusted; why is withheld on purpose.

    A bad signature, a flipped ciphertext byte, a header that disagrees
    with what the server reported and a malformed body all look the same,
    like ``rossby.crypto.InvalidEnvelope``: telling them apart helps only an
    attacker probing the client.
    """

    def __init__(self, message: str = "message rejected: it could not be verified") -> None:
        super().__init__(message)


__all__ = [
    "AlreadyInitialized",
    "ClientError",
    "HomeLocked",
    "InvalidMessage",
    "KeyLogError",
    "LinkError",
    "LinkTimeout",
    "NotAuthorized",
    "NotInitialized",
    "UnknownSender",
    "UntrustedKeys",
    "WrongPassphrase",
]
