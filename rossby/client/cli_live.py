"""``rossby client listen`` and ``rossby client typing`` (see rossby.client.cli).

``listen`` prints messages as they arrive, "typing..." indicators and read
receipts, and acknowledges what it printed; with ``--receipts`` it also
sends a read receipt for every message it shows. With ``--json`` it prints
one JSON object per line (``{"event": "message", ...}``) and a last
``{"event": "end", ...}`` line. It runs until Ctrl-C, ``--count`` messages
or ``--for`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rossby.client.cli_common import (
    Cmd,
    Output,
    dropped_doc,
    dropped_line,
    message_doc,
    message_line,
    passphrase,
    receipt_line,
)
from rossby.client.contacts import parse_contact
from rossby.client.keycost import keyfile_cost
from rossby.client.live import ReadReceipt, Reconnecting, Typing, UpToDate
from rossby.client.models import (
    HeldMessage,
    KeyChange,
    MessagesDropped,
    ReceivedMessage,
    RejectedMessage,
)
from rossby.client.sdk import RossbyClient


def _emit(out: Output, doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True), flush=True)


def typing_line(c: RossbyClient, t: Typing) -> str:
    who = t.sender_contact or f"box {t.sender_box}"
    return f"{who} is typing\u2026" if t.active else f"{who} stopped typing"


async def listen(args: argparse.Namespace, out: Output) -> int:
    received = 0
    as_json = out.as_json
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:

        async def run() -> None:
            nonlocal received
            async for event in c.listen(receipts=args.receipts, max_messages=args.count):
                if isinstance(event, KeyChange):
                    out.key_change(event)
                    if as_json:
                        _emit(out, {"event": "key_change", "message": event.describe()})
                elif isinstance(event, ReceivedMessage):
                    received += 1
                    if as_json:
                        _emit(out, {"event": "message", **message_doc(c, event)})
                    else:
                        print(message_line(c, event), flush=True)
                elif isinstance(event, ReadReceipt):
                    if as_json:
                        _emit(
                            out,
                            {
                                "event": "receipt",
                                "reader_box": str(event.reader_box),
                                "reader_contact": event.reader_contact,
                                "message_ids": [str(m) for m in event.message_ids],
                                "read_at_ms": event.read_at_ms,
                            },
                        )
                    else:
                        print(receipt_line(c, event), flush=True)
                elif isinstance(event, Typing):
                    if as_json:
                        _emit(
                            out,
                            {
                                "event": "typing",
                                "sender_box": str(event.sender_box),
                                "sender_contact": event.sender_contact,
                                "active": event.active,
                            },
                        )
                    else:
                        print(typing_line(c, event), flush=True)
                elif isinstance(event, MessagesDropped):
                    out.warn(dropped_line(event))
                    if as_json:
                        _emit(out, {"event": "messages_dropped", **dropped_doc(event)})
                elif isinstance(event, RejectedMessage):
                    out.warn(f"! rejected message {event.message_id}: it could not be verified")
                elif isinstance(event, HeldMessage):
                    out.warn(
                        f"? message {event.message_id} from unknown box {event.sender_box} "
                        "kept: `rossby client resolve CONTACT`, then fetch"
                    )
                elif isinstance(event, UpToDate):
                    if as_json:
                        _emit(out, {"event": "up_to_date", "after": event.after})
                    else:
                        out.warn("-- up to date; listening (Ctrl-C to stop) --")
                elif isinstance(event, Reconnecting):
                    if as_json:
                        _emit(out, {"event": "reconnecting", "reason": event.reason})
                    else:
                        out.warn(f"-- stream ended ({event.reason}); reconnecting --")

        if args.seconds:
            try:
                await asyncio.wait_for(run(), args.seconds)
            except TimeoutError:
                pass
        else:
            await run()
        acked = c.stats.acked_through
    if as_json:
        _emit(out, {"event": "end", "received": received, "acked_through": acked})
        out.as_json = False  # the lines above were the output; no final document
    return 0


async def typing(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        report = await c.typing(args.contact, active=not args.stop)
    contact = parse_contact(args.contact).value
    for change in report.key_changes:
        out.key_change(change)
    ok = report.ok
    out.doc = {
        "contact": contact,
        "active": not args.stop,
        "ok": ok,
        "results": [{"box_id": str(r.box_id), "outcome": r.outcome} for r in report.results],
    }
    if ok:
        what = "stopped typing" if args.stop else "typing\u2026"
        out.line(f"{what} sent to {contact} (only devices online right now see it)")
    else:
        reason = ", ".join(r.reason for r in report.results if r.reason)
        print(f"rossby client typing: {contact} refused it ({reason})", file=sys.stderr)
    return 0 if ok else 1


def add_parsers(cmd: Cmd) -> None:
    """``cmd(name, help)`` is the subcommand factory (cli_common.command_factory)."""
    p = cmd("listen", "print messages as they arrive (and typing, receipts); acks them")
    p.add_argument(
        "--receipts", action="store_true", help="send a read receipt for each message shown"
    )
    p.add_argument("--count", type=int, default=0, metavar="N", help="exit after N messages")
    p.add_argument(
        "--for",
        dest="seconds",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit after this long",
    )
    p = cmd("typing", "tell a contact's online devices that you are typing (never stored)")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("--stop", action="store_true", help="say you stopped typing instead")


__all__ = ["add_parsers", "listen", "typing", "typing_line"]
