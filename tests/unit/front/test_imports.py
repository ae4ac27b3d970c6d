"""The front's modules import in one direction (stream below the codecs, context and cgi below
stream, and so on): no circle, not even one hidden behind TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import askr.front

FRONT = Path(askr.front.__file__).parent


def front_imports() -> dict[str, set[str]]:
    """module -> the askr.front modules it imports, type-only imports included."""
    names = {p.stem for p in FRONT.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((FRONT / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "askr.front":
                    deps.update(a.name for a in node.names)
                elif node.module.startswith("askr.front."):
                    deps.add(node.module.split(".")[2])
        graph[name] = (deps & names) - {name}
    return graph


def test_front_modules_have_no_import_circle() -> None:
    graph = front_imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_graph_sees_type_only_imports() -> None:
    # http1 names its FrontContext only under TYPE_CHECKING: the check above must count it
    assert "context" in front_imports()["http1"]
