"""The ``rossby`` command, dispatched: each subcommand's module is loaded only
when that subcommand runs.

Why the imports below sit inside a function: ``rossby client`` is what a
person types many times a day, and loading the server, the Cassandra driver
and the load harness with it doubled its start-up (0.5 -> 1.0 s measured).
This is the one module allowed to do so (tests/test_architecture.py,
``LOCAL_IMPORTS_ALLOWED``); it hides no cycle, being the top of the graph.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["client"]:
        from rossby.client.cli import main as client_main

        return client_main(args[1:])
    if args[:1] == ["loadtest"]:
        from rossby.loadtest.cli import main as loadtest_main

        return loadtest_main(args[1:])
    from rossby.commands import main as commands_main

    return commands_main(args)


if __name__ == "__main__":
    sys.exit(main())
