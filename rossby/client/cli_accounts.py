"""``rossby client`` account commands: link/join, revoke, rotate-keys,
profile, block/unblock/blocked, accept/unaccept/accepted, contacts, keylog.

Registered by ``rossby.client.cli`` (``add_commands``/``COMMANDS``); same
conventions: ``--home``, ``--json``, the passphrase from
``ROSSBY_PASSPHRASE`` or a prompt, exit 0/1/2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import uuid
from pathlib import Path
from typing import Any

from rossby.client.channel import add_tls_arguments, tls_config_from_args
from rossby.client.cli_common import (
    Cmd,
    Handler,
    Output,
    command_factory,
    device_doc,
    identity_doc,
    local_time,
    passphrase,
    terminal_qr,
)
from rossby.client.contacts import parse_contact
from rossby.client.errors import ClientError
from rossby.client.keycost import keyfile_cost
from rossby.client.models import KeyLogRecord, LinkRequest, ProfileInfo
from rossby.client.sdk import RossbyClient


def _profile_doc(p: ProfileInfo) -> dict[str, Any]:
    return {
        "display_name": p.display_name,
        "description": p.description,
        "avatar_ref": p.avatar_ref,
        "discoverable": p.discoverable,
        "accept_from": p.accept_from,
    }


def _print_profile(out: Output, p: ProfileInfo) -> None:
    out.line(f"name:         {p.display_name or '(none)'}")
    out.line(f"description:  {p.description or '(none)'}")
    out.line(f"avatar:       {p.avatar_ref or '(none)'}")
    out.line(f"discoverable: {'yes' if p.discoverable else 'no'}")
    out.line(f"accept from:  {p.accept_from}")


def _record_doc(r: KeyLogRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "kind": r.kind,
        "device_id": str(r.device_id),
        "actor_device_id": str(r.actor_device_id),
        "timestamp_ms": r.timestamp_ms,
        "fingerprint": r.fingerprint,
        "hash": r.hash.hex(),
    }


def _target(raw: str) -> str | uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return raw


def _confirm(args: argparse.Namespace, request: LinkRequest) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ClientError("pass --yes to approve without a prompt")
    answer = input(
        f"Approve device {request.device_name!r} ({request.fingerprint}) for your box? [y/N] "
    )
    if answer.strip().lower() not in ("y", "yes"):
        raise ClientError("not approved")


# -- linking ---------------------------------------------------------------------


async def _link(args: argparse.Namespace, out: Output) -> int:
    if args.join:
        return await _join(args, out)
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        invite = await c.create_link_offer()
        if args.code_file:
            await asyncio.to_thread(
                Path(args.code_file).write_text, invite.uri + "\n", encoding="utf-8"
            )
        if not out.as_json:
            print("On the new device run:", flush=True)
            print(f"    rossby client join --device NAME '{invite.uri}'", flush=True)
            print(f"or type:  offer {invite.offer_id}  passphrase {invite.passphrase}", flush=True)
            print(f"(valid until {local_time(invite.expires_at_ms)}; waiting...)", flush=True)
            qr = terminal_qr(invite.uri.encode()) if args.qr else None
            if qr:
                print(qr, flush=True)
        request = await c.wait_for_link(invite, wait=args.timeout)
        _confirm(args, request)
        device = await c.approve_link(invite, request)
    out.doc = {
        "offer_id": str(invite.offer_id),
        "code": invite.uri,
        "linked_device": device_doc(device),
    }
    out.line(f"Linked {device.name!r} ({device.device_id}, {device.fingerprint}) to your box.")
    return 0


async def _join(args: argparse.Namespace, out: Output) -> int:
    code = args.join or args.code
    if not code or not args.device:
        raise ClientError("join needs a link code and --device NAME")
    async with RossbyClient.join(
        args.home,
        passphrase(confirm=True),
        code=code,
        device_name=args.device,
        server=args.server,
        hawk_address=args.hawk_address,
        tls=tls_config_from_args(args),
        scrypt_n=keyfile_cost(),
    ) as c:
        out.line("Joined the link offer; waiting for the other device to approve...")
        await c.complete_link(wait=args.timeout)
        who = c.whoami()
    out.doc = {"identity": identity_doc(who)}
    out.line(f"Linked: box {who.box_id}, device {who.device_name!r} ({who.device_id}).")
    out.line("Your contacts arrive from the other device with the next `fetch`.")
    return 0


# -- devices -----------------------------------------------------------------------


async def _revoke(args: argparse.Namespace, out: Output) -> int:
    try:
        device_id = uuid.UUID(args.device_id)
    except ValueError:
        raise ClientError(f"{args.device_id!r} is not a device id (see `devices`)") from None
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        await c.revoke(device_id)
        own = device_id == c.device_id
    out.doc = {"revoked": str(device_id), "this_device": own}
    out.line(f"Revoked {device_id}." + (" This device no longer works." if own else ""))
    return 0


async def _rotate(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        device = await c.rotate_keys()
    out.doc = {"device": device_doc(device)}
    out.line(f"New keys for this device: {device.fingerprint}.")
    return 0


# -- profile, senders ----------------------------------------------------------------


def _yes_no(text: str | None) -> bool | None:
    if text is None:
        return None
    if text.lower() in ("yes", "y", "true", "1", "on"):
        return True
    if text.lower() in ("no", "n", "false", "0", "off"):
        return False
    raise ClientError(f"expected yes or no, got {text!r}")


async def _profile(args: argparse.Namespace, out: Output) -> int:
    changes = {
        "display_name": args.name,
        "description": args.description,
        "avatar_ref": args.avatar,
        "discoverable": _yes_no(args.discoverable),
        "accept_from": args.accept_from,
    }
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        if args.contact:
            if any(v is not None for v in changes.values()):
                raise ClientError("only your own profile can be changed")
            info = await c.resolve(args.contact)
            profile = info.profile or ProfileInfo()
            out.line(f"{info.contact} (box {info.box_id}):")
        elif any(v is not None for v in changes.values()):
            profile = await c.update_profile(**changes)
        else:
            profile = await c.profile()
    out.doc = {"profile": _profile_doc(profile)}
    _print_profile(out, profile)
    return 0


async def _rule(args: argparse.Namespace, out: Output) -> int:
    action = args.client_command
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        fn = {
            "block": c.block,
            "unblock": c.unblock,
            "accept": c.accept,
            "unaccept": c.unaccept,
        }[action]
        box_id = await fn(_target(args.target))
    out.doc = {"box_id": str(box_id), "action": action}
    done = {
        "block": "Blocked",
        "unblock": "Unblocked",
        "accept": "Accepted",
        "unaccept": "No longer accepting",
    }[action]
    out.line(f"{done} box {box_id}.")
    return 0


async def _listed(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        boxes = await (c.blocked() if args.client_command == "blocked" else c.accepted())
        labels = [(b, c.contact_of(b)) for b in boxes]
    out.doc = {"boxes": [{"box_id": str(b), "contact": label} for b, label in labels]}
    if not labels:
        out.line("(none)")
    for b, label in labels:
        out.line(f"{b}  {label or ''}".rstrip())
    return 0


# -- contacts -----------------------------------------------------------------------


async def _contacts(args: argparse.Namespace, out: Output) -> int:
    action = args.contacts_command
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        if action == "add":
            ttl = await c.add_contact(args.contact)
            out.doc = {"code_sent_to": parse_contact(args.contact).value, "code_ttl_seconds": ttl}
            out.line(
                f"The server sent a code to {parse_contact(args.contact).value} (valid {ttl} s)."
            )
            out.line(f"Next: rossby client contacts verify {args.contact} CODE")
            return 0
        if action == "verify":
            count = await c.verify_contact(args.contact, args.code)
            out.line(f"Added {parse_contact(args.contact).value}; your box has {count} contacts.")
        elif action == "remove":
            count = await c.remove_contact(args.contact)
            out.line(f"Removed {parse_contact(args.contact).value}; your box has {count} contacts.")
        who = c.whoami()
    out.doc = {"contacts": list(who.contacts)}
    if action == "list":
        for value in who.contacts:
            out.line(value)
    return 0


# -- key log -------------------------------------------------------------------------


async def _keylog(args: argparse.Namespace, out: Output) -> int:
    async with RossbyClient.open(args.home, passphrase(), scrypt_n=keyfile_cost()) as c:
        view = await c.key_log(_target(args.contact) if args.contact else None)
    out.doc = {
        "box_id": str(view.box_id),
        "contact": view.contact,
        "verified": True,
        "head": view.head.hex(),
        "entries": [_record_doc(r) for r in view.entries],
    }
    out.line(
        f"Key log of {view.contact or f'box {view.box_id}'}: {len(view.entries)} entries, "
        "verified (signatures, hash chain, extends what this device saw before)"
    )
    if not view.entries:
        out.line("  (this box has no key log)")
    for r in view.entries:
        out.line(f"  #{r.seq:<3} {local_time(r.timestamp_ms)}  {r.describe()}")
    if view.entries:
        out.line(f"head: {base64.b16encode(view.head).decode().lower()[:32]}...")
    return 0


# -- wiring --------------------------------------------------------------------------


COMMANDS: dict[str, Handler] = {
    "link": _link,
    "join": _join,
    "revoke": _revoke,
    "rotate-keys": _rotate,
    "profile": _profile,
    "block": _rule,
    "unblock": _rule,
    "accept": _rule,
    "unaccept": _rule,
    "blocked": _listed,
    "accepted": _listed,
    "contacts": _contacts,
    "keylog": _keylog,
}


def add_commands(cmd: Cmd) -> None:
    p = cmd("link", "link a new device to your box (run on a device you already have)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    p.add_argument("--yes", action="store_true", help="approve the device without asking")
    p.add_argument("--code-file", metavar="PATH", help="also write the link code to this file")
    p.add_argument("--qr", action="store_true", help="draw the code as a QR (segno or qrcode)")
    p.add_argument(
        "--join", metavar="CODE", help="on the NEW device: join with this code (= `join`)"
    )
    _join_options(p, positional=False)

    p = cmd("join", "set up this home as a new device of a box, with a link code")
    p.add_argument("code", metavar="CODE", help="the rossby://link?... code, or 'OFFER PASSPHRASE'")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    _join_options(p, positional=True)

    p = cmd("revoke", "revoke a device of your box (see `devices` for ids)")
    p.add_argument("device_id", metavar="DEVICE_ID")
    cmd("rotate-keys", "replace this device's keys (signed by the old ones)")

    p = cmd("profile", "show or change your profile, or show a contact's")
    p.add_argument("contact", nargs="?", metavar="CONTACT", help="show this contact's profile")
    p.add_argument("--name", help="display name (at most 64 characters)")
    p.add_argument("--description", help="at most 280 characters")
    p.add_argument("--avatar", help="an avatar reference (URL or blob id)")
    p.add_argument("--discoverable", metavar="yes|no", help="found by your contacts")
    p.add_argument(
        "--accept-from", choices=["anyone", "contacts-only"], help="who may reach your box"
    )

    for name, text in (
        ("block", "block a box: it sees yours as nonexistent"),
        ("unblock", "lift a block"),
        ("accept", "let a box reach you under --accept-from contacts-only"),
        ("unaccept", "withdraw an acceptance"),
    ):
        p = cmd(name, text)
        p.add_argument("target", metavar="CONTACT|BOX_ID")
    cmd("blocked", "list the boxes you blocked")
    cmd("accepted", "list the boxes you accepted")

    p = cmd("contacts", "your box's phone numbers and e-mail addresses")
    # --home and --json after the subcommand too
    subcmd = command_factory(p.add_subparsers(dest="contacts_command", required=True))

    subcmd("list", "the contacts this device knows for your box")
    subcmd("add", "send a code to a new contact").add_argument("contact", metavar="CONTACT")
    v = subcmd("verify", "prove the code; the contact now finds your box")
    v.add_argument("contact", metavar="CONTACT")
    v.add_argument("code", metavar="CODE")
    r = subcmd("remove", "release a contact (your box keeps at least one)")
    r.add_argument("contact", metavar="CONTACT")

    p = cmd("keylog", "a box's verified key log (default: your own box)")
    p.add_argument("contact", nargs="?", metavar="CONTACT|BOX_ID")


def _join_options(p: argparse.ArgumentParser, *, positional: bool) -> None:
    p.add_argument("--device", metavar="NAME", help="this new device's name")
    p.add_argument(
        "--server", metavar="HOST:PORT", help="needed only for a typed 'OFFER PASSPHRASE' code"
    )
    p.add_argument("--hawk-address", metavar="HOST:PORT", help="the server's public Hawk address")
    add_tls_arguments(p)
    if positional:
        p.set_defaults(join=None)
    else:
        p.set_defaults(code=None)


__all__ = ["COMMANDS", "add_commands"]
