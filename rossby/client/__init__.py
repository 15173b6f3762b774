"""Client side of Rossby: the async SDK (``RossbyClient``) and its Hawk signing.

``rossby.client.hawk`` signs gRPC calls; ``rossby.client.sdk`` is the device
(keys, registration, pinning, envelopes, the fetch/ack loop);
``rossby.client.cli`` is ``rossby client``. Usage: docs/client.md.
"""

from rossby.client.errors import (
    AlreadyInitialized,
    ClientError,
    HomeLocked,
    InvalidMessage,
    NotAuthorized,
    NotInitialized,
    UnknownSender,
    UntrustedKeys,
    WrongPassphrase,
)
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    Event,
    FetchStats,
    HeldMessage,
    Identity,
    KeyChange,
    KeyChangeWarning,
    ReceivedMessage,
    RecipientResult,
    RegistrationStarted,
    RejectedMessage,
    SendReport,
)
from rossby.client.sdk import RossbyClient, parse_contact

__all__ = [
    "AlreadyInitialized",
    "ClientError",
    "ContactInfo",
    "DeviceInfo",
    "Event",
    "FetchStats",
    "HeldMessage",
    "HomeLocked",
    "Identity",
    "InvalidMessage",
    "KeyChange",
    "KeyChangeWarning",
    "NotAuthorized",
    "NotInitialized",
    "ReceivedMessage",
    "RecipientResult",
    "RegistrationStarted",
    "RejectedMessage",
    "RossbyClient",
    "SendReport",
    "UnknownSender",
    "UntrustedKeys",
    "WrongPassphrase",
    "parse_contact",
]
