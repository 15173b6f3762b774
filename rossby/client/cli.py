"""``rossby client``: one device from the command line, on top of the SDK.

Every subcommand opens the device in ``--home`` (default ``~/.config/rossby``)
with the passphrase from ``ROSSBY_PASSPHRASE`` or a prompt, does one thing
and exits. Output is for people by default and one JSON document with
``--json`` (errors too, as ``{"error": ...}``), so scripts never parse prose.

Exit codes: 0 ok; 1 a failure (server error, wrong passphrase, a rejected
recipient); 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rossby.client import cli_accounts, cli_live
from rossby.client.channel import add_tls_arguments, tls_config_from_args
from rossby.client.cli_common import (
    Handler,
    Output,
    command_factory,
    common_options,
    device_doc,
    dropped_doc,
    dropped_line,
    duration_seconds,
    identity_doc,
    message_doc,
    message_line,
    passphrase,
    terminal_qr,
)
from rossby.client.contacts import parse_contact
from rossby.client.errors import ClientError
from rossby.client.keycost import keyfile_cost
from rossby.client.models import (
    HeldMessage,
    KeyChange,
    KeyChangeWarning,
    MessagesDropped,
    ReceivedMessage,
    RejectedMessage,
    SendReport,
)
from rossby.client.sdk import RossbyClient
from rossby.errors import RossbyError
from rossby.outbox import read_outbox_code

# -- subcommands ---------------------------------------------------------------


async def _init(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.create(
        args.home,
        passphrase(confirm=True),
        server=args.server,
        contacts=args.contact,
        device_name=args.device,
        hawk_address=args.hawk_address,
        tls=tls_config_from_args(args),
        scrypt_n=keyfile_cost(),
    ) as c:
        started = await c.register()
        who = c.whoami()
    out.doc = {
        "identity": identity_doc(who),
        "code_sent_to": list(started.contacts),
        "code_ttl_seconds": started.code_ttl_seconds,
    }
    out.line(f"Device {who.device_name!r} ({who.device_id}) created in {args.home}.")
    out.line(
        f"The server sent a code to {', '.join(started.contacts)} "
        f"(valid {started.code_ttl_seconds} s)."
    )
    out.line(
        f"Next: rossby client --home {args.home} verify CODE"
        + (" CODE" * (len(started.contacts) - 1))
    )
    return 0


async def _verify(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        who = await c.authorize(args.codes)
    out.doc = {"identity": identity_doc(who)}
    out.line(f"Verified: box {who.box_id}, device {who.device_name!r} ({who.device_id}).")
    return 0


async def _send(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        report = await c.send(args.contacts, args.text, expire_after=args.expire_after)
    for change in report.key_changes:
        out.key_change(change)
    _print_send(report, out)
    return 0 if report.ok else 1


def _print_send(report: SendReport, out: Output) -> None:
    out.doc = {
        "message_id": str(report.message_id),
        "sent_at_ms": report.sent_at_ms,
        "ok": report.ok,
        "results": [
            {
                "box_id": str(r.box_id),
                "contact": r.contact,
                "outcome": r.outcome,
                "position": r.position,
                "reason": r.reason or None,
                "own_copy": r.own_copy,
            }
            for r in report.results
        ],
    }
    parts = [
        f"{r.contact or r.box_id} ({r.outcome}{': ' + r.reason if r.reason else ''})"
        for r in report.results
        if not r.own_copy
    ]
    out.line(f"Sent {report.message_id} to {', '.join(parts)}")
    for r in report.results:
        if r.outcome == "rejected":
            out.warn(f"error: {r.contact or r.box_id} refused the message ({r.reason})")


async def _fetch(args: argparse.Namespace, out: Output) -> int:
    messages: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        async for event in c.fetch_messages():
            if isinstance(event, KeyChange):
                out.key_change(event)
            elif isinstance(event, MessagesDropped):
                dropped.append(dropped_doc(event))
                out.warn(dropped_line(event))
            elif isinstance(event, ReceivedMessage):
                messages.append(message_doc(c, event))
                out.line(message_line(c, event))
            elif isinstance(event, RejectedMessage):
                rejected.append(
                    {
                        "message_id": event.message_id,
                        "position": event.position,
                        "sender_box": event.sender_box,
                        "sender_device": event.sender_device,
                        "received_at_ms": event.received_at_ms,
                    }
                )
                out.warn(
                    f"! rejected message {event.message_id} from box {event.sender_box}: "
                    "it could not be verified (acked and dropped)"
                )
            elif isinstance(event, HeldMessage):
                held.append(
                    {
                        "message_id": event.message_id,
                        "position": event.position,
                        "sender_box": event.sender_box,
                        "received_at_ms": event.received_at_ms,
                    }
                )
                out.warn(
                    f"? message {event.message_id} from unknown box {event.sender_box} "
                    f"kept: run `rossby client resolve CONTACT` with the sender's "
                    "contact, then fetch again"
                )
        stats = c.stats
    out.doc = {
        "messages": messages,
        "rejected": rejected,
        "held": held,
        "dropped": dropped,
        "duplicates_dropped": stats.duplicates,
        "acked_through": stats.acked_through,
    }
    if not messages and not rejected and not held:
        out.line("No new messages.")
    elif stats.duplicates or rejected or held:
        out.line(
            f"({len(messages)} received, {len(rejected)} rejected, {len(held)} held, "
            f"{stats.duplicates} duplicates dropped)"
        )
    return 0


async def _safety_number(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        number = await c.safety_number(args.contact)
    contact = parse_contact(args.contact).value
    out.doc = {
        "contact": contact,
        "safety_number": str(number),
        "digits": number.digits,
        "qr_payload_hex": number.qr_payload.hex(),
        "qr_payload_base64": base64.b64encode(number.qr_payload).decode(),
    }
    out.line(f"Safety number with {contact}:")
    groups = number.groups
    for row in range(0, len(groups), 4):
        out.line("    " + " ".join(groups[row : row + 4]))
    out.line(f"QR payload (hex):    {number.qr_payload.hex()}")
    out.line(f"QR payload (base64): {base64.b64encode(number.qr_payload).decode()}")
    qr = terminal_qr(number.qr_payload) if args.qr else None
    if qr:
        out.line(qr)
    elif args.qr:
        out.warn("no QR library installed (qrcode or segno); compare the digits or the payload")
    out.line(
        "Compare this with what the other person's `safety-number` shows; equal numbers "
        "mean both of you see the same keys."
    )
    return 0


async def _devices(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        devices = await c.devices()
    out.doc = {"devices": [device_doc(d) for d in devices]}
    for d in devices:
        mark = "*" if d.this_device else " "
        out.line(f"{mark} {d.device_id}  {d.fingerprint}  {d.name}")
    return 0


async def _resolve(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        info = await c.resolve(args.contact)
    out.doc = {
        "contact": info.contact,
        "box_id": str(info.box_id),
        "devices": [device_doc(d) for d in info.devices],
    }
    out.line(f"{info.contact}: box {info.box_id}, {len(info.devices)} device(s) pinned")
    for d in info.devices:
        out.line(f"  {d.device_id}  {d.fingerprint}  {d.name}")
    return 0


async def _whoami(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        who = c.whoami()
    out.doc = {"identity": identity_doc(who)}
    out.line(f"device:   {who.device_name} ({who.device_id})")
    out.line(f"box:      {who.box_id or '(not verified yet: run verify CODE)'}")
    out.line(f"contacts: {', '.join(who.contacts)}")
    out.line(
        f"server:   {who.server}"
        + (f" (Hawk address {who.hawk_address})" if who.hawk_address != who.server else "")
    )
    if who.home_region:
        out.line(f"region:   {who.home_region}")
    return 0


async def _prekeys(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        if args.rotate:
            status = await c.rotate_prekeys()
        elif args.refill:
            status = await c.refill_prekeys()
        else:
            status = await c.prekey_status()
    out.doc = {
        "one_time_prekeys": status.one_time,
        "one_time_kem_prekeys": status.one_time_kem,
        "signed_prekey_id": status.signed_prekey_id,
        "signed_prekey_uploaded_at_ms": status.signed_uploaded_at_ms,
        "last_resort_kem_prekey_id": status.last_resort_id,
        "low": status.low,
        "low_water": status.low_water,
        "pool_max": status.pool_max,
    }
    out.line(
        f"one-time prekeys on the server: {status.one_time} X25519, "
        f"{status.one_time_kem} ML-KEM-768 (low water {status.low_water}, max {status.pool_max})"
    )
    out.line(
        f"signed prekey {status.signed_prekey_id}, last-resort prekey {status.last_resort_id}"
        + ("; LOW: the next fetch or listen refills" if status.low else "")
    )
    return 0


async def _dev_code(args: argparse.Namespace, out: Output) -> int:
    codes: list[str] = []
    for raw in args.contacts:
        code = read_outbox_code(args.outbox, parse_contact(raw))
        if code is None:
            raise ClientError(f"no code for {raw} in {args.outbox}")
        codes.append(code)
    out.doc = {"codes": codes}
    out.line(" ".join(codes))
    return 0


def _report_warnings(caught: list[warnings.WarningMessage], out: Output) -> None:
    """Print key changes our way (once each); let any other warning through as usual."""
    for w in caught:
        if isinstance(w.message, KeyChangeWarning):
            out.key_change(w.message.change)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


# -- wiring --------------------------------------------------------------------


COMMANDS: dict[str, Handler] = {
    "init": _init,
    "verify": _verify,
    "send": _send,
    "fetch": _fetch,
    "safety-number": _safety_number,
    "devices": _devices,
    "resolve": _resolve,
    "whoami": _whoami,
    "dev-code": _dev_code,
    "prekeys": _prekeys,
    "listen": cli_live.listen,
    "typing": cli_live.typing,
    **cli_accounts.COMMANDS,
}


def add_parser(sub: Any) -> None:
    """Register ``rossby client`` on the top-level ``rossby`` subparsers."""
    client = sub.add_parser(
        "client",
        help="an end-to-end-encrypted messaging device",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(client, top=True)
    cmd = command_factory(client.add_subparsers(dest="client_command", required=True))

    p = cmd("init", "generate this device's keys and register it")
    p.add_argument("--server", required=True, metavar="HOST:PORT")
    add_tls_arguments(p)  # remembered: later commands reach the server the same way
    p.add_argument(
        "--contact",
        required=True,
        action="append",
        metavar="EMAIL|PHONE",
        help="repeat for several contacts (one code each)",
    )
    p.add_argument("--device", required=True, metavar="NAME", help="this device's name")
    p.add_argument(
        "--hawk-address",
        metavar="HOST:PORT",
        help="the server's public address for Hawk (default: --server)",
    )
    p = cmd("verify", "authorize this device with the code(s) the server sent")
    p.add_argument("codes", nargs="+", metavar="CODE")
    p = cmd("send", "send a message; several contacts make a group message")
    p.add_argument("contacts", nargs="+", metavar="CONTACT")
    p.add_argument("text", metavar="TEXT")
    p.add_argument(
        "--expire-after",
        type=duration_seconds,
        default=0,
        metavar="DURATION",
        help="disappearing message: the server hands it out no longer than this"
        " (30s, 10m, 1h, 7d; at most the server's message_ttl)",
    )
    cmd("fetch", "print new messages, then acknowledge them")
    p = cmd("safety-number", "the number to compare with a contact")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument(
        "--qr",
        action="store_true",
        help="also draw a QR code if a library is installed (segno or qrcode)",
    )
    cmd("devices", "list the devices of your box")
    p = cmd("resolve", "look up and pin a contact's keys (makes their messages readable)")
    p.add_argument("contact", metavar="CONTACT")
    cmd("whoami", "this device's identity (local, no network)")
    p = cmd("prekeys", "how many prekeys the server holds for this device (forward secrecy)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--refill", action="store_true", help="top the one-time pools up now")
    what.add_argument(
        "--rotate", action="store_true", help="replace the signed and last-resort prekeys now"
    )
    p = cmd("dev-code", "DEV ONLY: print the latest code(s) from the server's outbox dir")
    p.add_argument("contacts", nargs="+", metavar="CONTACT")
    p.add_argument("--outbox", default="var/outbox", help="the server's --outbox-dir")
    cli_live.add_parsers(cmd)
    cli_accounts.add_commands(cmd)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``rossby client`` command; answer the exit code."""
    args.home = str(Path(args.home).expanduser())
    out = Output(args.json)
    handler = COMMANDS[args.client_command]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyChangeWarning)
        try:
            code = asyncio.run(handler(args, out))
        except KeyboardInterrupt:
            return 130
        except (RossbyError, ClientError, OSError) as exc:
            _report_warnings(caught, out)
            reason = exc.reason if isinstance(exc, RossbyError) else type(exc).__name__
            message = exc.message if isinstance(exc, RossbyError) else str(exc)
            if out.as_json:
                out.doc = {
                    "error": {"type": type(exc).__name__, "reason": reason, "message": message}
                }
                out.finish()
            else:
                print(f"rossby client {args.client_command}: {message} ({reason})", file=sys.stderr)
            return 1
        _report_warnings(caught, out)
    out.finish()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rossby.client.cli ...`` without the top-level ``rossby``."""
    parser = argparse.ArgumentParser(prog="rossby")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["client", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
