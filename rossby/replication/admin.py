"""``rossby admin``: operator commands for home regions.

    rossby admin --store URL home BOX              where the box is homed, as each DC sees it
    rossby admin --store URL boxes --home dc2      the boxes homed in dc2 (one id a line)
    rossby admin --store URL move-home BOX REGION  planned move (every DC up), then reconcile
    rossby admin --store URL move-home BOX REGION --force
                                                   failover: the old home is unreachable
    rossby admin --store URL reconcile BOX         end a move's recovery (old home reachable)

The store URL (or ``--config``) is a normal server configuration; its
``local_dc`` only decides which DC coordinates the admin's own requests.
See docs/replication.md ("Moving a home", "Failover").
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rossby.errors import InvalidArgument, StoreUnavailable
from rossby.replication.homes import HomeRecord
from rossby.store import open_store
from rossby.store.from_settings import store_options

if TYPE_CHECKING:
    from rossby.config import Settings


def add_parser(sub: Any, add_flags: Callable[[argparse.ArgumentParser], None]) -> Any:
    """Declares the home-region actions; returns the actions' subparsers so the
    caller can add actions that are not about regions (``vapid-keygen``)."""
    admin = sub.add_parser("admin", help="operator commands (home regions, VAPID keys)")
    add_flags(admin)
    actions = admin.add_subparsers(dest="action", required=True)
    home = actions.add_parser("home", help="show a box's home region, per datacenter")
    home.add_argument("box", help="box id")
    boxes = actions.add_parser("boxes", help="list the boxes homed in a region (full scan)")
    boxes.add_argument("--home", required=True, metavar="REGION", help="the home region")
    move = actions.add_parser("move-home", help="move a box's home region")
    move.add_argument("box", help="box id")
    move.add_argument("target", metavar="REGION", help="the new home region (a DC name)")
    move.add_argument(
        "--force",
        action="store_true",
        help="the old home is unreachable: write the move in the new home only "
        "and leave the box recovering until `reconcile` succeeds",
    )
    move.add_argument(
        "--no-reconcile",
        action="store_true",
        help="planned move: do not reconcile now (run `rossby admin reconcile` later)",
    )
    rec = actions.add_parser("reconcile", help="copy what other DCs hold; end the recovery")
    rec.add_argument("box", help="box id")
    rec.add_argument(
        "--no-wait", action="store_true", help="do not wait two settle windows after the move"
    )
    return actions


def _box(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument(f"not a box id: {text!r}") from None


def _show(dc: str, record: HomeRecord | None) -> str:
    if record is None:
        return f"{dc}: (box not present)"
    state = f"recovering from position {record.recovery_floor}" if record.recovering else "settled"
    return f"{dc}: home={record.home_region} epoch={record.epoch} {state}"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings.store, store_options(settings))
    try:
        # Refuses (NOT_REPLICATED) unless the store declares home regions.
        homes = store.home_regions()
        await store.check_schema()
        if args.action == "boxes":
            for found in await homes.boxes_homed_in(args.home):
                print(found)
            return 0
        box = _box(args.box)
        if args.action == "home":
            for dc in homes.datacenters:
                try:
                    print(_show(dc, await homes.home_record(box, dc)))
                except StoreUnavailable as exc:
                    print(f"{dc}: unreachable ({exc.reason})")
            return 0
        if args.action == "move-home":
            record = await homes.move_home(box, args.target, force=args.force)
            print(f"moved: {_show(args.target, record)}")
            if args.force or args.no_reconcile:
                print(f"run `rossby admin reconcile {box}` once every datacenter answers")
                return 0
        done = await homes.reconcile_home(box, wait=not getattr(args, "no_wait", False))
        if done.cleared:
            print(
                f"reconciled: home={done.home_region}, {done.copied} message(s) copied "
                f"from {', '.join(done.sources) or 'no other DC'}; recovery ended"
            )
        else:
            print(f"nothing to reconcile: home={done.home_region}, no recovery running")
        return 0
    finally:
        await store.close()


__all__ = ["add_parser", "run"]
