"""No import cycles inside coditect_tasks, between modules or between packages, counting imports
deferred into functions.

A function-level import hides a cycle from the interpreter at load time but not from the design: the two modules
still depend on each other, and moving one import to module level (or importing in a different order) turns it
into an ImportError. This test reads the package with ``ast`` only (nothing of the package is imported, so it is
fast and cannot be fooled by import order), builds the module graph and fails listing every cycle. Imports under
``if TYPE_CHECKING:`` are not run, so they are not edges.
"""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "coditect_tasks"
MAX_CYCLES_SHOWN = 20


def module_name(path: str) -> tuple[str, bool]:
    """``"pkg/sub/mod.py"`` -> ``("pkg.sub.mod", False)``; ``"pkg/sub/__init__.py"`` -> ``("pkg.sub", True)``."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement anywhere in the tree, except in the body of an ``if TYPE_CHECKING:``."""
    if isinstance(tree, ast.If) and _is_type_checking(tree.test):
        children: list[ast.AST] = list(tree.orelse)  # the else branch does run
    else:
        children = list(ast.iter_child_nodes(tree))
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
    for child in children:
        yield from runtime_imports(child)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]) -> Iterator[str]:
    """The modules of ``modules`` that one import statement, made in ``package``, loads by name."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in modules)
        return
    if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            yield submodule
        elif source in modules:
            yield source


def build_import_graph(files: Mapping[str, str]) -> nx.DiGraph[str]:
    """Module graph of ``files`` (posix path relative to the package's parent -> source text).

    Edges keep to the modules in ``files``; each records where it is made, as ``"path:line"`` strings, in ``where``.
    Importing ``a.b.c`` is not counted as importing ``a`` or ``a.b``, and self-imports are ignored.
    """
    names = {path: module_name(path) for path in files}
    modules = {name for name, _ in names.values()}
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(sorted(modules))
    for path in sorted(files):
        name, is_package = names[path]
        package = name if is_package else name.rpartition(".")[0]
        for node in runtime_imports(ast.parse(files[path], filename=path)):
            for target in dict.fromkeys(_targets(node, package, modules)):  # `from x import a, b` is one edge
                if target == name:
                    continue
                if not graph.has_edge(name, target):
                    graph.add_edge(name, target, where=[])
                graph.edges[name, target]["where"].append(f"{path}:{node.lineno}")
    return graph


def find_cycles(graph: nx.DiGraph[str], limit: int = MAX_CYCLES_SHOWN) -> list[list[str]]:
    """Up to ``limit`` cycles, each rotated to start at its smallest module name, sorted."""
    found = itertools.islice(nx.simple_cycles(graph), 10 * limit)  # a tangled graph has exponentially many
    return sorted([*cycle[cycle.index(min(cycle)) :], *cycle[: cycle.index(min(cycle))]] for cycle in found)[:limit]


def describe_cycles(graph: nx.DiGraph[str], limit: int = MAX_CYCLES_SHOWN) -> str:
    """``""`` when the graph is acyclic, else one ``a -> b -> a`` line per cycle and where each edge is made."""
    cycles = find_cycles(graph, limit + 1)
    if not cycles:
        return ""
    shown = cycles[:limit]
    count = (
        f"more than {limit} import cycles, the first {limit}"
        if len(cycles) > limit
        else f"{len(cycles)} import cycle(s)"
    )
    lines = [f"{count} (imports in functions count, imports under `if TYPE_CHECKING:` do not):"]
    lines += [" -> ".join([*cycle, cycle[0]]) for cycle in shown]
    tangled = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    lines.append("modules tangled together: " + "; ".join(", ".join(c) for c in sorted(tangled)))
    lines.append("imports on the cycles shown:")
    edges = sorted({(a, b) for cycle in shown for a, b in itertools.pairwise([*cycle, cycle[0]])})
    lines += [f"  {a} -> {b}: {', '.join(graph.edges[a, b]['where'])}" for a, b in edges]
    return "\n".join(lines)


def package_graph(graph: nx.DiGraph[str], root: str = PACKAGE) -> nx.DiGraph[str]:
    """The module graph collapsed to ``root``'s direct children (a subpackage with all its modules,
    or a top-level module): ``a.x -> b.y`` becomes ``a -> b``. A cycle here is two parts that
    depend on each other, even where no two modules do."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2]) if module.startswith(root + ".") else module

    parts: nx.DiGraph[str] = nx.DiGraph()
    parts.add_nodes_from(sorted({part(m) for m in graph if m != root}))
    for a, b, data in graph.edges(data=True):
        pa, pb = part(a), part(b)
        if pa != pb and root not in (pa, pb):  # the package's own __init__ re-exports everything
            if not parts.has_edge(pa, pb):
                parts.add_edge(pa, pb, where=[])
            parts.edges[pa, pb]["where"].extend(data["where"])
    return parts


def package_sources(root: Path = ROOT, package: str = PACKAGE) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted((root / package).rglob("*.py"))
    }


def test_coditect_tasks_has_no_import_cycles() -> None:
    """Parsed in a fresh interpreter: CPython 3.11's AST constructor can keep a wrong recursion depth
    once something earlier in a long session failed mid-construction (python/cpython#106905), after
    which every ``ast.parse`` in that process raises ``SystemError``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        pytest.fail(result.stdout, pytrace=False)


def _report_cycles() -> int:
    graph = build_import_graph(package_sources())
    assert f"{PACKAGE}.engine.transitions" in graph, "the package was not found"
    report = describe_cycles(graph) or describe_cycles(package_graph(graph)).replace("import cycle", "package cycle")
    print(report)
    return 1 if report else 0


SYNTHETIC = {
    "pkg/__init__.py": "",
    "pkg/sub/__init__.py": "from .. import a\n",
    "pkg/a.py": "from . import b as bee\nimport pkg.sub.leaf\n",
    "pkg/sub/leaf.py": "from .. import a\n",
}


def test_the_checker_finds_a_cycle_through_a_function_level_import() -> None:
    deferred = "def f() -> None:\n    try:\n        from .a import x\n    except ImportError:\n        pass\n"
    graph = build_import_graph({**SYNTHETIC, "pkg/b.py": deferred})
    assert find_cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.a", "pkg.sub.leaf"]]
    report = describe_cycles(graph)
    assert "pkg.a -> pkg.b -> pkg.a" in report and "pkg.b -> pkg.a: pkg/b.py:3" in report
    assert not graph.has_edge("pkg.a", "pkg.sub") and not graph.has_edge("pkg.a", "pkg")  # no implicit parents


def test_the_checker_finds_a_cycle_between_packages_where_no_modules_cycle() -> None:
    """``pkg.a.low -> pkg.b.x -> pkg.a.high``: no module imports itself back, yet a and b need each other."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "",
        "pkg/a/low.py": "from ..b import x\n",
        "pkg/a/high.py": "",
        "pkg/b/__init__.py": "",
        "pkg/b/x.py": "def f() -> None:\n    from ..a import high\n",
        "pkg/leaf.py": "from .a import low\n",
    }
    graph = build_import_graph(files)
    assert describe_cycles(graph) == ""
    parts = package_graph(graph, "pkg")
    assert find_cycles(parts) == [["pkg.a", "pkg.b"]]
    assert "pkg.b -> pkg.a: pkg/b/x.py:2" in describe_cycles(parts)
    assert not parts.has_edge("pkg.leaf", "pkg")


@pytest.mark.parametrize(
    "guarded",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        "import typing\n\nclass C:\n    if typing.TYPE_CHECKING:\n        import pkg.a\n",
    ],
)
def test_the_checker_ignores_imports_under_type_checking(guarded: str) -> None:
    graph = build_import_graph({**SYNTHETIC, "pkg/b.py": guarded, "pkg/sub/leaf.py": ""})
    assert not graph.has_edge("pkg.b", "pkg.a")
    assert describe_cycles(graph) == ""


def test_the_else_branch_of_type_checking_is_a_runtime_import() -> None:
    runs_anyway = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from . import a\n"
    assert build_import_graph({**SYNTHETIC, "pkg/b.py": runs_anyway}).has_edge("pkg.b", "pkg.a")


if __name__ == "__main__":
    sys.exit(_report_cycles())
