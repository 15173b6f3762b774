"""The client package's imports keep its layers (issue 17).

Read from the source (every import statement, function-local and
TYPE_CHECKING ones included), so an import that dodges a cycle at run time
still counts: the client never imports the server; the SDK's parts never
import the facade (``rossby.client.sdk``) or the CLI; and no two client
modules import each other, directly or round a longer loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import rossby.client

CLIENT = Path(rossby.client.__file__).parent


def _imports(path: Path) -> Iterator[str]:
    """The module each import statement of ``path`` names (``from a import b``: a and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _modules() -> dict[str, Path]:
    return {f"rossby.client.{p.stem}": p for p in sorted(CLIENT.glob("*.py"))}


def _graph() -> dict[str, set[str]]:
    """Client module -> the client modules it imports (the package face aside)."""
    modules = _modules()
    return {
        name: {m for m in _imports(path) if m in modules and m != "rossby.client.__init__"}
        for name, path in modules.items()
        if name != "rossby.client.__init__"
    }


def test_the_client_never_imports_the_server() -> None:
    offending = {
        name: sorted(m for m in _imports(path) if m.split(".")[:2] == ["rossby", "server"])
        for name, path in _modules().items()
    }
    assert {name: found for name, found in offending.items() if found} == {}


def test_the_sdk_parts_never_import_the_facade_or_the_cli() -> None:
    above = {"rossby.client.sdk", "rossby.client.cli", "rossby.client.cli_common"}
    above |= {"rossby.client.cli_accounts", "rossby.client.cli_live"}
    parts = {n: deps for n, deps in _graph().items() if n not in above}
    assert {n: sorted(deps & above) for n, deps in parts.items() if deps & above} == {}


def test_no_client_modules_import_each_other_in_a_loop() -> None:
    graph = _graph()
    done: set[str] = set()
    loops: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            loops.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    assert loops == []
