"""The shape of rossby/, checked from its source: layers import downward only,
no module imports itself round a loop, no function-local import of a rossby
module (the usual way a cycle is hidden rather than removed), no file too
long to hold one job.

The import graph is read with ``ast`` from every module under rossby/, never
by importing them: ``import x`` and ``from x import y`` (``y`` counts as the
module ``x.y`` where that is a module), relative imports resolved, at module
level, inside functions and inside ``if TYPE_CHECKING:`` blocks. Every edge
counts for cycles and layers, whichever kind it is (a TYPE_CHECKING import
still couples the two modules; a function-local one still runs); failures
name each edge's file, line and kind. ``python -m tests.test_architecture``
prints the graph's function-local and TYPE_CHECKING edges.
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rossby"

# -- the rules ------------------------------------------------------------------------
#
# A module in the first column may not import any module in the second (a
# prefix: "rossby.server" is the package and everything in it), except those
# in the third. Why: the client and the store are below the server (the
# server composes the store through its contract; the client only talks to a
# server over gRPC), the store knows nothing of clients; config and
# replication are read by the server, never the reverse; crypto is pure
# functions under every layer that uses it; errors and logging are the floor
# every layer stands on.
#
# fmt: off
#   importer              may not import                                   except
LAYERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("rossby.client",       ("rossby.server",),                              ()),
    ("rossby.store",        ("rossby.server", "rossby.client"),              ()),
    ("rossby.config",       ("rossby.server",),                              ()),
    ("rossby.replication",  ("rossby.server",),                              ()),
    ("rossby.crypto",       ("rossby.server", "rossby.store",
                             "rossby.client", "rossby.replication"),         ()),
    ("rossby.errors",       ("rossby",),                                     ("rossby.logging",)),
    ("rossby.logging",      ("rossby",),                                     ("rossby.errors",)),
)
# fmt: on

#: Function-local imports of rossby modules that are allowed, as
#: {(importer, imported): reason}. Empty: a local import is how a cycle or a
#: layer edge hides, so each one must argue for itself here.
_DISPATCH = (
    "the rossby command loads only the subcommand it runs: rossby client "
    "started in 1.0 s with every subcommand loaded, 0.5 s without"
)
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    ("rossby.cli", "rossby.client.cli"): _DISPATCH,
    ("rossby.cli", "rossby.loadtest.cli"): _DISPATCH,
    ("rossby.cli", "rossby.commands"): _DISPATCH,
}

#: The longest a file under rossby/ may be; past it a module holds more than one job.
MAX_LINES = 600
#: Generated from proto/ by ``make proto``; never hand-edited, so never split.
GENERATED = ("rossby/v1/*_pb2*.py",)


# -- the graph ------------------------------------------------------------------------


class Kind(enum.Enum):
    """Where an import statement stands, which says when it runs."""

    MODULE = "module level"
    TYPE_CHECKING = "TYPE_CHECKING block"
    LOCAL = "inside a function"


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: str  # relative to the repository
    line: int
    kind: Kind

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}  ({self.path}:{self.line}, {self.kind.value})"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module under rossby/, by dotted name (a package by its ``__init__``)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """Collects (module named, line, kind) for every import statement."""

    def __init__(self, name: str, is_package: bool, known: set[str]) -> None:
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = known
        self.kind = Kind.MODULE
        self.found: list[tuple[str, int, Kind]] = []

    def _within(self, kind: Kind, nodes: list[ast.stmt]) -> None:
        outer, self.kind = self.kind, kind if self.kind is Kind.MODULE else self.kind
        for node in nodes:
            self.visit(node)
        self.kind = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._within(Kind.LOCAL, node.body)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._within(Kind.LOCAL, node.body)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._within(Kind.TYPE_CHECKING, node.body)
            self._within(self.kind, node.orelse)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.known else source, node.lineno)

    def _add(self, target: str, line: int) -> None:
        """One edge per statement and module, however many names it takes."""
        found = (target, line, self.kind)
        if found not in self.found:
            self.found.append(found)


def edges_of(name: str, path: Path, source: str, known: set[str]) -> list[Edge]:
    """The imports of rossby modules in one module's ``source``."""
    visitor = _Imports(name, path.name == "__init__.py", known)
    visitor.visit(ast.parse(source, str(path)))
    edges = []
    for target, line, kind in visitor.found:
        # `import rossby.a.b` names rossby.a.b; an unknown tail is a name in a module.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if _within(target, "rossby") and target != name:
            rel = str(path.relative_to(ROOT)) if path.is_absolute() else str(path)
            edges.append(Edge(name, target, rel, line, kind))
    return edges


def import_edges() -> list[Edge]:
    """Every import of one rossby module by another, in source order."""
    known = modules()
    names = set(known)
    return [
        edge
        for name, path in known.items()
        for edge in edges_of(name, path, path.read_text(encoding="utf-8"), names)
    ]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def graph(edges: list[Edge]) -> nx.DiGraph[str]:
    g: nx.DiGraph[str] = nx.DiGraph()
    for e in edges:
        g.add_edge(e.importer, e.imported)
    return g


# -- the checks -----------------------------------------------------------------------


def cycle_report(edges: list[Edge]) -> list[str]:
    """One paragraph per group of modules that import each other round a
    loop: its members, one loop through them edge by edge, and whether a
    loop remains with module-level imports alone (one that bites at import
    time) or only through TYPE_CHECKING and function-local ones."""
    g = graph(edges)
    at_import = graph([e for e in edges if e.kind is Kind.MODULE])
    by_pair = {(e.importer, e.imported): e for e in reversed(edges)}  # the first such import
    out = []
    groups = sorted(
        (sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1),
        key=lambda c: (-len(c), c),
    )
    for members in groups:
        loop = nx.find_cycle(g.subgraph(members), source=members[0])
        runtime = [
            sorted(c)
            for c in nx.strongly_connected_components(at_import.subgraph(members))
            if len(c) > 1
        ]
        lines = [f"cycle among {len(members)} modules: {', '.join(members)}", "  for example:"]
        lines += [f"    {by_pair[(a, b)]}" for a, b in loop]
        lines += [f"  at import time (module-level imports alone): {', '.join(c)}" for c in runtime]
        if not runtime:
            lines.append("  only through TYPE_CHECKING or function-local imports")
        out.append("\n".join(lines))
    return out


def layer_violations(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        for importer, forbidden, allowed in LAYERS:
            if (
                _within(e.importer, importer)
                and any(_within(e.imported, f) for f in forbidden)
                and not any(_within(e.imported, a) for a in (importer, *allowed))
            ):
                out.append(f"{importer} may not import {e.imported}: {e}")
    return out


def local_imports(edges: list[Edge]) -> list[str]:
    return [
        str(e)
        for e in edges
        if e.kind is Kind.LOCAL and (e.importer, e.imported) not in LOCAL_IMPORTS_ALLOWED
    ]


def oversized_files() -> list[tuple[str, int]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if any(rel.match(pattern) for pattern in GENERATED):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out.append((str(rel), lines))
    return out


def _report(title: str, items: list[str]) -> str:
    return f"{title} ({len(items)}):\n" + "\n".join(items)


def fail_on(title: str, items: list[str]) -> None:
    """Fail with the list alone: no traceback or repr to read past."""
    if items:
        pytest.fail(_report(title, items), pytrace=False)


# -- the tests ------------------------------------------------------------------------


def test_the_walker_sees_every_kind_of_import() -> None:
    """The walker itself, on a module written for it: if it missed a form of
    import, every check below would pass over what it missed."""
    source = """
import os
import rossby.errors
import rossby.store.base as base
from rossby import config
from rossby.store import Store
from . import hub
from ..store import cassandra
from .hub import Hub
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from rossby.client import sdk
class Later:
    from rossby import logging
def later() -> None:
    import rossby.crypto
    if TYPE_CHECKING:
        from rossby.client import live
"""
    # fmt: off
    known = {
        "rossby", "rossby.errors", "rossby.config", "rossby.logging", "rossby.crypto",
        "rossby.store", "rossby.store.base", "rossby.store.cassandra",
        "rossby.client", "rossby.client.sdk", "rossby.client.live",
        "rossby.server", "rossby.server.hub", "rossby.server.app",
    }
    # fmt: on
    found = [
        (e.imported, e.line, e.kind)
        for e in edges_of("rossby.server.app", Path("rossby/server/app.py"), source, known)
    ]
    m, t, f = Kind.MODULE, Kind.TYPE_CHECKING, Kind.LOCAL
    assert found == [
        ("rossby.errors", 3, m),
        ("rossby.store.base", 4, m),
        ("rossby.config", 5, m),
        ("rossby.store", 6, m),  # a name from a package: its __init__
        ("rossby.server.hub", 7, m),
        ("rossby.store.cassandra", 8, m),
        ("rossby.server.hub", 9, m),
        ("rossby.client.sdk", 12, t),
        ("rossby.logging", 14, m),  # a class body runs at import time
        ("rossby.crypto", 16, f),
        ("rossby.client.live", 18, f),
    ]


def test_the_layer_table_reads_as_written() -> None:
    """Rows by prefix, own package and the exceptions allowed, the rest refused."""

    def edge(a: str, b: str) -> Edge:
        return Edge(a, b, "x.py", 1, Kind.MODULE)

    allowed = [
        ("rossby.errors", "rossby.logging"),
        ("rossby.logging", "rossby.errors"),
        ("rossby.store.sqlite.store", "rossby.store.base"),
        ("rossby.crypto.keylog", "rossby.errors"),
        ("rossby.server.app", "rossby.store"),
        ("rossby.client.sdk", "rossby.crypto"),
        ("rossby.configdoc", "rossby.server"),  # not rossby.config's row
    ]
    refused = [
        ("rossby.client.cli", "rossby.server.notify"),
        ("rossby.store", "rossby.server"),
        ("rossby.store.accounts", "rossby.client.models"),
        ("rossby.config", "rossby.server.ratelimit"),
        ("rossby.replication.admin", "rossby.server.app"),
        ("rossby.crypto", "rossby.replication.homes"),
        ("rossby.errors", "rossby.config"),
        ("rossby.logging", "rossby.v1.rossby_pb2"),
    ]
    assert layer_violations([edge(a, b) for a, b in allowed]) == []
    flagged = layer_violations([edge(a, b) for a, b in refused])
    assert len(flagged) == len(refused), flagged


def test_a_loop_is_reported_with_its_edges_and_when_it_bites() -> None:
    def edge(a: str, b: str, kind: Kind = Kind.MODULE) -> Edge:
        return Edge(a, b, f"{a}.py", 1, kind)

    chain = [edge("rossby.c", "rossby.a"), edge("rossby.a", "rossby.b")]
    assert cycle_report(chain) == []
    hidden = cycle_report([*chain, edge("rossby.b", "rossby.a", Kind.TYPE_CHECKING)])
    assert len(hidden) == 1 and "rossby.a, rossby.b" in hidden[0], hidden
    assert "rossby.b -> rossby.a  (rossby.b.py:1, TYPE_CHECKING block)" in hidden[0]
    assert "only through TYPE_CHECKING" in hidden[0]
    biting = cycle_report([*chain, edge("rossby.b", "rossby.a")])
    assert "at import time (module-level imports alone): rossby.a, rossby.b" in biting[0]


def test_the_tree_has_an_import_graph() -> None:
    """Guards the walk over the tree (paths, module names) the way the test
    above guards the walker."""
    edges = import_edges()
    assert len({e.importer for e in edges if e.kind is Kind.MODULE}) > 20, edges


def test_no_import_cycles() -> None:
    fail_on("import cycles among rossby modules", cycle_report(import_edges()))


def test_layers_import_downward_only() -> None:
    fail_on("imports against the layer table", layer_violations(import_edges()))


def test_no_function_local_imports_of_rossby_modules() -> None:
    fail_on(
        "function-local imports of rossby modules (move them to the top, or argue"
        " for one in LOCAL_IMPORTS_ALLOWED)",
        local_imports(import_edges()),
    )


def test_no_file_over_the_line_limit() -> None:
    fail_on(
        f"files over {MAX_LINES} lines (generated rossby/v1/*_pb2* excepted)",
        [f"{path}: {lines}" for path, lines in oversized_files()],
    )


def main() -> None:
    """Print the edges that module-level reading of the code would miss."""
    edges = import_edges()
    for kind in (Kind.TYPE_CHECKING, Kind.LOCAL):
        print(_report(f"imports in a {kind.value}", [str(e) for e in edges if e.kind is kind]))


if __name__ == "__main__":
    main()
