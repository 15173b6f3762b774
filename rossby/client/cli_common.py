"""What every ``rossby client`` subcommand shares: output, the passphrase,
the common options and the way messages, devices and identities are shown.

``cli`` (the core commands and the wiring), ``cli_accounts`` and
``cli_live`` all import from here and from nothing of each other but
their registration, so one message looks the same whether ``fetch`` or
``listen`` prints it.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import importlib
import io
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from rossby.client.errors import ClientError
from rossby.client.live import ReadReceipt, receipt_of
from rossby.client.models import (
    DeviceInfo,
    Identity,
    KeyChange,
    MessagesDropped,
    ReceivedMessage,
)
from rossby.client.sdk import RossbyClient

DEFAULT_HOME = "~/.config/rossby"
PASSPHRASE_ENV = "ROSSBY_PASSPHRASE"


class Output:
    """Collects what a command says: prose for people, or one JSON document."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.doc: dict[str, Any] = {}
        self.key_changes: list[KeyChange] = []

    def line(self, text: str = "") -> None:
        if not self.as_json:
            print(text)

    def warn(self, text: str) -> None:
        if not self.as_json:
            print(text, file=sys.stderr)

    def key_change(self, change: KeyChange) -> None:
        if change in self.key_changes:
            return
        self.key_changes.append(change)
        self.warn(f"WARNING: {change.describe()}")

    def finish(self) -> None:
        if self.as_json:
            if self.key_changes:
                self.doc["key_changes"] = [change_doc(c) for c in self.key_changes]
            print(json.dumps(self.doc, indent=2, sort_keys=True))


Handler = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]
#: ``cmd(name, help)``: add a subcommand that takes the common options too.
Cmd = Callable[[str, str], argparse.ArgumentParser]


def common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the subcommand; the subcommand's copy only
    # overrides when given (SUPPRESS), so `--json` works in either place.
    default: Any = argparse.SUPPRESS
    parser.add_argument(
        "--home",
        default=DEFAULT_HOME if top else default,
        help=f"state directory (default {DEFAULT_HOME})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else default,
        help="one JSON document on stdout",
    )


def command_factory(subparsers: Any) -> Cmd:
    """The ``cmd`` that adds subcommands to ``subparsers``, each with the common options."""

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
        common_options(p, top=False)
        return p

    return cmd


def passphrase(confirm: bool = False) -> str:
    """From ``ROSSBY_PASSPHRASE`` (scripts, tests) or typed without echo."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return value
    first = getpass.getpass("Passphrase: ")
    if confirm:
        if not first:
            raise ClientError("the passphrase must not be empty")
        if getpass.getpass("Passphrase (again): ") != first:
            raise ClientError("the passphrases differ")
    return first


# -- formatting ----------------------------------------------------------------


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(spec: str) -> int:
    """``30s``, ``10m``, ``1h``, ``2d``, ``1w`` or plain seconds, as whole
    seconds (an argparse ``type``): a disappearing-message timer's length."""
    text = spec.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    digits = text[:-1] if unit else text
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"not a duration: {spec!r} (e.g. 30s, 10m, 1h, 7d)")
    return int(digits) * (unit or 1)


def local_time(at_ms: int) -> str:
    """A timestamp in the user's time zone, to the second."""
    return datetime.fromtimestamp(at_ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def change_doc(c: KeyChange) -> dict[str, Any]:
    return {
        "box_id": str(c.box_id),
        "contact": c.contact,
        "own_box": c.own_box,
        "added": [str(d) for d in c.added],
        "removed": [str(d) for d in c.removed],
        "rekeyed": [str(d) for d in c.rekeyed],
        "previous_box": str(c.previous_box) if c.previous_box else None,
        "message": c.describe(),
    }


def identity_doc(i: Identity) -> dict[str, Any]:
    return {
        "device_id": str(i.device_id),
        "device_name": i.device_name,
        "box_id": str(i.box_id) if i.box_id else None,
        "contacts": list(i.contacts),
        "server": i.server,
        "hawk_address": i.hawk_address,
        "home_region": i.home_region,
        "verified": i.authorized,
    }


def device_doc(d: DeviceInfo) -> dict[str, Any]:
    return {
        "device_id": str(d.device_id),
        "name": d.name,
        "this_device": d.this_device,
        "encryption_key": d.encryption_key.hex(),
        "signing_key": d.signing_key.hex(),
        "fingerprint": d.fingerprint,
    }


def who(c: RossbyClient, box: Any) -> str:
    return c.contact_of(box) or f"box {box}"


def receipt_line(c: RossbyClient, r: ReadReceipt) -> str:
    ids = ", ".join(str(m)[:8] for m in r.message_ids)
    return f"[{local_time(r.read_at_ms)}] \u2713 {who(c, r.reader_box)} read {ids}"


def message_line(c: RossbyClient, m: ReceivedMessage) -> str:
    receipt = receipt_of(m)
    if receipt is not None:
        return receipt_line(c, receipt)
    content = m.text if m.text is not None else f"<{m.kind}, {len(m.body)} bytes>"
    if m.outgoing:
        to = ", ".join(who(c, b) for b in m.recipients)
        sender = f"you ({m.sender_device_name or m.sender_device}) -> {to}"
    else:
        sender = who(c, m.sender_box)
        others = [b for b in m.recipients if b != c.box_id]
        if others:
            sender += f" (group, also to {', '.join(who(c, b) for b in others)})"
    return f"[{local_time(m.sent_at_ms)}] {sender}: {content}"


def dropped_line(d: MessagesDropped) -> str:
    """The one warning ``fetch`` and ``listen`` print for an overflow gap."""
    noun = "message was" if d.missed == 1 else "messages were"
    return (
        f"warning: {d.missed} {noun} dropped for this device (it fell more than the "
        "box's pending cap behind its other devices); ask the senders to resend"
    )


def dropped_doc(d: MessagesDropped) -> dict[str, Any]:
    return {"missed": d.missed, "after": d.after, "through": d.through}


def message_doc(c: RossbyClient, m: ReceivedMessage) -> dict[str, Any]:
    return {
        "message_id": str(m.message_id),
        "position": m.position,
        "outgoing": m.outgoing,
        "sender_box": str(m.sender_box),
        "sender_device": str(m.sender_device),
        "sender_contact": m.sender_contact,
        "sender_device_name": m.sender_device_name,
        "recipients": [{"box_id": str(b), "contact": c.contact_of(b)} for b in m.recipients],
        "sent_at_ms": m.sent_at_ms,
        "received_at_ms": m.received_at_ms,
        "expires_at_ms": m.expires_at_ms,
        "kind": m.kind,
        "text": m.text,
        "body_base64": None if m.text is not None else base64.b64encode(m.body).decode(),
    }


def terminal_qr(payload: bytes) -> str | None:
    """Render with ``segno`` or ``qrcode`` when one is installed; neither is a dependency."""
    try:
        segno = importlib.import_module("segno")
    except ImportError:
        segno = None
    if segno is not None:
        buf = io.StringIO()
        segno.make(payload, error="m").terminal(out=buf, compact=True)
        return buf.getvalue()
    try:
        qrcode = importlib.import_module("qrcode")
    except ImportError:
        return None
    qr = qrcode.QRCode(border=1)
    qr.add_data(payload)
    buf = io.StringIO()
    qr.print_ascii(out=buf)
    return buf.getvalue()


__all__ = [
    "DEFAULT_HOME",
    "PASSPHRASE_ENV",
    "Cmd",
    "Handler",
    "Output",
    "change_doc",
    "command_factory",
    "common_options",
    "device_doc",
    "dropped_doc",
    "dropped_line",
    "duration_seconds",
    "identity_doc",
    "local_time",
    "message_doc",
    "message_line",
    "passphrase",
    "receipt_line",
    "terminal_qr",
    "who",
]
