"""Client side of Rossby: the async SDK (``RossbyClient``) and its Hawk signing.

``rossby.client.sdk`` is the device's face (``RossbyClient``), built from
the session, directory, messaging, live, devices and account parts (see
its module doc); ``rossby.client.hawk`` signs gRPC calls;
``rossby.client.cli`` is ``rossby client``. Usage: docs/client.md.
"""

from rossby.client.contacts import parse_contact
from rossby.client.errors import (
    AlreadyInitialized,
    ClientError,
    HomeLocked,
    InvalidMessage,
    KeyLogError,
    LinkError,
    LinkTimeout,
    NotAuthorized,
    NotInitialized,
    UnknownSender,
    UntrustedKeys,
    WrongPassphrase,
)
from rossby.client.live import LiveEvent, ReadReceipt, Reconnecting, Typing, UpToDate
from rossby.client.models import (
    ContactInfo,
    DeviceInfo,
    Event,
    FetchStats,
    HeldMessage,
    Identity,
    KeyChange,
    KeyChangeWarning,
    KeyLogRecord,
    KeyLogView,
    LinkInvite,
    LinkRequest,
    MessagesDropped,
    ProfileInfo,
    ReceivedMessage,
    RecipientResult,
    RegistrationStarted,
    RejectedMessage,
    SendReport,
)
from rossby.client.sdk import RossbyClient

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
    "KeyLogError",
    "KeyLogRecord",
    "KeyLogView",
    "LinkError",
    "LinkInvite",
    "LinkRequest",
    "LinkTimeout",
    "LiveEvent",
    "MessagesDropped",
    "NotAuthorized",
    "NotInitialized",
    "ProfileInfo",
    "ReadReceipt",
    "ReceivedMessage",
    "RecipientResult",
    "Reconnecting",
    "RegistrationStarted",
    "RejectedMessage",
    "RossbyClient",
    "SendReport",
    "Typing",
    "UnknownSender",
    "UntrustedKeys",
    "UpToDate",
    "WrongPassphrase",
    "parse_contact",
]
