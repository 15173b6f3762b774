"""The notifier contract: how a one-time code reaches a contact.

Register must not tell a client more than "the code could not be sent": a
failure reason from an SMTP server or a webhook can carry the recipient,
the server's configuration or worse, so every implementation logs the
detail (masked contact, error type, status) and raises one generic
``Unavailable(reason="NOTIFIER_FAILED")`` without chaining the original
exception. The code itself and the channel's secrets never appear in an
error or a log line (the dev-only outbox is the single, deliberate
exception for the code).
"""

from __future__ import annotations

import abc
import unicodedata
from types import TracebackType

from rossby.contacts import ContactKind, NormalizedContact
from rossby.errors import InvalidArgument, Unavailable

MAX_DEVICE_NAME = 64


class Notifier(abc.ABC):
    """Delivers one-time codes. One instance serves the whole process."""

    def supports(self, kind: ContactKind) -> bool:
        """Whether codes for ``kind`` can be delivered at all.

        Register checks every contact before sending the first code, so a
        request mixing a deliverable and an undeliverable contact sends
        nothing rather than half the codes.
        """
        return True

    @abc.abstractmethod
    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        """Deliver ``code`` to ``contact``; return once it is handed off.

        Raises ``Unavailable(reason="NOTIFIER_FAILED")`` when delivery
        failed (safe to retry) and ``InvalidArgument(reason=
        "CONTACT_KIND_UNSUPPORTED")`` when this notifier cannot reach that
        kind of contact at all.
        """

    async def close(self) -> None:  # noqa: B027 - deliberately optional
        """Release connections and threads; the default holds none."""

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def delivery_failed() -> Unavailable:
    """The one error a client sees for any delivery failure (see module doc)."""
    return Unavailable(
        "could not deliver the one-time code; try again later", reason="NOTIFIER_FAILED"
    )


def unsupported_kind(kind: ContactKind) -> InvalidArgument:
    return InvalidArgument(
        f"this server cannot deliver codes to {kind.value} contacts",
        reason="CONTACT_KIND_UNSUPPORTED",
    )


def clean_device_name(name: str) -> str:
    """The device name as it may appear in a message to a contact.

    The name is chosen by whoever calls Register, possibly not the
    contact's owner, so it is stripped of control and formatting
    characters (no line breaks or bidi overrides to forge message text)
    and cut to the proto's 64-character limit.
    """
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in name
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    return " ".join(kept.split())[:MAX_DEVICE_NAME]


def describe_ttl(ttl_seconds: int) -> str:
    if ttl_seconds >= 120 and ttl_seconds % 60 == 0:
        return f"{ttl_seconds // 60} minutes"
    return f"{ttl_seconds} seconds"


__all__ = [
    "MAX_DEVICE_NAME",
    "Notifier",
    "clean_device_name",
    "delivery_failed",
    "describe_ttl",
    "unsupported_kind",
]
