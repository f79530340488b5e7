"""No import cycles in modelway/, counting every import: at module level, inside functions
and under `if TYPE_CHECKING:`. A cycle means two modules cannot be understood (or
changed) one without the other; shared types and protocols belong in leaf modules.

An import names one module: `import a.b` and `from a.b import c` name `a.b`, or `a.b.c`
when `c` is a module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "modelway"


def module_files(package: Path) -> dict[str, Path]:
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / .. import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            named += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = set()
    for target in named:
        while target and target not in modules:  # `import a.b.c` of a name in a.b: a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def path_through(graph: dict[str, set[str]], component: list[str]) -> str:
    """One cycle inside a component, as `a → b → a`, for the failure message."""
    members = set(component)
    start = component[0]
    trail = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(graph[node] & members)
        back = [n for n in nxt if n in seen]
        if back:
            return " → ".join([*trail[trail.index(back[0]):], back[0]])
        node = next(n for n in nxt if n not in seen)
        trail.append(node)
        seen.add(node)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "top.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import low\n",
        "sub/__init__.py": "",
        "sub/low.py": "def later() -> None:\n    from .. import side\n",
        "side.py": "import pkg.top.name_in_it\nfrom pkg.sub import low, nothing\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["pkg.top"] == {"pkg.sub.low"}  # under TYPE_CHECKING
    assert graph["pkg.sub.low"] == {"pkg.side"}  # relative, inside a function
    assert graph["pkg.side"] == {"pkg.top", "pkg.sub.low", "pkg.sub"}  # a module's name; a package's
    assert cycles(graph) == [["pkg.side", "pkg.sub.low", "pkg.top"]]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert path_through(graph, ["a", "b", "c"]) == "a → b → c → a"


def test_modelway_has_no_import_cycles() -> None:
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(path_through(graph, c) for c in found)
