"""The import graph between project modules: no circles, and dependencies point one way.

`ui -> agent, traces, training`; `training -> agent, traces`; `traces -> agent`; `agent` imports none of the
others. Every import counts, wherever it is written (module level, inside a function, under TYPE_CHECKING):
a function-level import that closes a circle is still a circle, it only fails later.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "traces", "training", "ui")
# Which project packages each package may import (itself always).
ALLOWED = {
    "agent": set(),
    "traces": {"agent"},
    "training": {"agent", "traces"},
    "ui": {"agent", "traces", "training"},
}
# Imports against the direction above that are allowed on purpose, each with its reason. They must stay inside the
# function that needs them (checked below), so importing the package never loads the other one.
ALLOWED_EXCEPTIONS = {
    # `python -m agent ... --db FILE` records the episode: the CLI entry point, not library code, opens the store.
    ("agent.__main__", "traces"),
    # `python -m agent eval` records into the store: question sets, the eval run and its report come from traces.
    ("agent.__main__", "traces.eval_data"),
    ("agent.__main__", "traces.eval_runs"),
    ("agent.__main__", "traces.stats"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, plus the top-level app and the benchmark scripts."""
    paths = [ROOT / "app.py", *sorted((ROOT / "bench").glob("*.py"))]
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            paths += sorted((ROOT / package).rglob("*.py"))
    return {module_name(p): p for p in paths}


def imports_of(path: Path, name: str, modules: Collection[str]) -> dict[str, bool]:
    """Project modules this module imports anywhere in its body -> whether every such import is in a function.

    `from pkg import sub` imports the submodule `pkg.sub` when there is one, else a name from `pkg/__init__.py`.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    lazy: dict[str, bool] = {}

    def add(target: str, in_function: bool) -> None:
        if target in modules and target != name:
            lazy[target] = lazy.get(target, True) and in_function

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source, in_function)
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return lazy


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported project module: imported only inside functions}."""
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def find_circles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The modules of each circle (strongly connected components of more than one module, by Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def layer_violations(graph: dict[str, dict[str, bool]]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        layer = source.split(".")[0]
        if layer not in ALLOWED:
            continue
        for target, lazy in sorted(targets.items()):
            other = target.split(".")[0]
            if other not in ALLOWED or other == layer or other in ALLOWED[layer]:
                continue
            if (source, target) not in ALLOWED_EXCEPTIONS:
                bad.append(f"{source} imports {target}")
            elif not lazy:
                bad.append(f"{source} imports {target} at module level (allowed only inside the function using it)")
    return bad


def test_no_import_circles_between_project_modules():
    circles = find_circles(import_graph())
    assert circles == [], "modules importing each other in a circle: " + "; ".join(", ".join(c) for c in circles)


def test_dependencies_point_one_way():
    assert layer_violations(import_graph()) == []


def test_every_allowed_exception_is_still_used():
    graph = import_graph()
    unused = [pair for pair in sorted(ALLOWED_EXCEPTIONS) if pair[1] not in graph.get(pair[0], {})]
    assert unused == [], f"remove these exceptions, nothing needs them now: {unused}"


def test_the_checks_see_circles_and_wrong_directions():
    # The checks themselves, on a made-up graph: a circle through a function-level import, and agent -> ui.
    graph = {"traces.a": {"traces.b": True}, "traces.b": {"traces.a": False}, "agent.x": {"ui.y": True}, "ui.y": {}}
    assert find_circles(graph) == [["traces.a", "traces.b"]]
    assert layer_violations(graph) == ["agent.x imports ui.y"]


def test_imports_are_found_wherever_they_are_written(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from traces import store\n"  # a submodule, named through its package
        "from . import records\n"  # relative
        "if TYPE_CHECKING:\n"
        "    from traces.queries import EpisodeFilter\n"
        "def later():\n"
        "    import agent.loop\n"
        "    from traces import open_store\n"  # a name from the package's __init__
    )
    modules = {"traces", "traces.store", "traces.records", "traces.queries", "traces.mod", "agent.loop"}
    assert imports_of(source, "traces.mod", modules) == {
        "traces.store": False,
        "traces.records": False,
        "traces.queries": False,
        "agent.loop": True,
        "traces": True,
    }
