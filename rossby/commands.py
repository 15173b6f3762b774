"""The operator's ``rossby`` commands: ``serve``, ``migrate``, ``rotate-keys``,
``admin`` (``rossby.cli`` sends ``client`` and ``loadtest`` elsewhere, and
everything else here; ``rossby --help`` is built here and lists them all).

Exit codes: 0 ok, 1 runtime failure (store unreachable, port busy), 2 an
invalid setting, reported in one line naming it before any port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from rossby.client.cli import add_parser as add_client_parser
from rossby.client.cli import run as run_client
from rossby.config import Settings, add_flags, settings_from_args
from rossby.errors import ConfigError, RossbyError
from rossby.logging import configure_logging, get_logger
from rossby.replication import admin
from rossby.server.push.vapid import b64url, generate_vapid_key_file
from rossby.server.rewrap import rewrap_all
from rossby.server.secrets import load_hawk_keyring
from rossby.server.workers import serve
from rossby.store import open_store
from rossby.store.from_settings import store_options

DESCRIPTION = """The rossby command: a server (serve, migrate, rotate-keys, admin), a
messaging device (client) and a load harness (loadtest).

Exit codes: 0 ok, 1 runtime failure (store unreachable, port busy), 2 an
invalid setting, reported in one line naming it before any port is bound.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rossby", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the gRPC API")
    add_flags(serve)
    migrate = sub.add_parser("migrate", help="create or upgrade the store schema")
    add_flags(migrate)
    rotate = sub.add_parser(
        "rotate-keys",
        help="wrap every stored Hawk key under the first key of hawk_keys (upgrade, rotation)",
    )
    rotate.add_argument(
        "--dry-run", action="store_true", help="only count what would be re-wrapped"
    )
    add_flags(rotate)
    add_client_parser(sub)
    actions = admin.add_parser(sub, add_flags)
    keygen = actions.add_parser(
        "vapid-keygen",
        help="write a new VAPID private key (Web Push) to PATH, mode 0600, and print "
        "its public key (base64url, the browsers' applicationServerKey)",
    )
    keygen.add_argument("path", metavar="PATH", help="the key file to create (never overwritten)")
    # Parsed by rossby.loadtest.cli (main() hands it the rest of argv); listed for --help.
    sub.add_parser(
        "loadtest", help="simulate users against servers; audit delivery", add_help=False
    )
    return parser


async def _migrate(settings: Settings) -> int:
    async with open_store(settings.store, store_options(settings)) as store:
        version = await store.migrate()
    get_logger("rossby.migrate").info(
        "schema_ready", version=version, store=settings.store.split("?")[0]
    )
    return 0


def _rotate_keys(args: argparse.Namespace) -> Callable[[Settings], Coroutine[Any, Any, int]]:
    async def rotate(settings: Settings) -> int:
        keyring = load_hawk_keyring(settings)
        async with open_store(settings.store, store_options(settings)) as store:
            await store.check_schema()
            report = await rewrap_all(store, keyring, dry_run=args.dry_run)
        print(json.dumps(report.as_dict(), sort_keys=True))
        if report.unavailable:
            print(
                "rossby: rotate-keys: some stored Hawk keys need a master key that is not in "
                "hawk_keys; do not retire it until they are re-wrapped",
                file=sys.stderr,
            )
            return 1
        return 0

    return rotate


async def _serve(settings: Settings) -> int:
    return await serve(settings)


def _admin(args: argparse.Namespace) -> Callable[[Settings], Coroutine[Any, Any, int]]:
    async def run_admin(settings: Settings) -> int:
        return await admin.run(settings, args)

    return run_admin


def _vapid_keygen(path: str) -> int:
    """Needs no settings: the key is made before the configuration naming it."""
    try:
        public = generate_vapid_key_file(path)
    except FileExistsError:
        print(
            f"rossby: admin vapid-keygen: {path} exists; not overwritten (a new key "
            "invalidates every browser subscription made with the old one)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"rossby: admin vapid-keygen failed: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(b64url(public))
    print(
        f"rossby: wrote {path} (mode 0600); set push_vapid_private_key_file to it, and "
        "push_vapid_subject",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "client":
        return run_client(args)
    if args.command == "admin" and args.action == "vapid-keygen":
        return _vapid_keygen(args.path)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"rossby: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    command = {
        "serve": _serve,
        "migrate": _migrate,
        "admin": _admin(args),
        "rotate-keys": _rotate_keys(args),
    }[args.command]
    try:
        return asyncio.run(command(settings))
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:  # found once serving starts (a damaged key file)
        print(f"rossby: {exc}", file=sys.stderr)
        return 2
    except (RossbyError, OSError) as exc:
        reason = f" ({exc.reason})" if isinstance(exc, RossbyError) else ""
        print(f"rossby: {args.command} failed{reason}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
