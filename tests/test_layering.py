"""The package's import graph: no cycle, and every arrow points the way DESIGN.md draws.

The graph is read from the sources (``ast``), not from ``sys.modules``, and counts every
import statement: at module level, inside functions (the lazy imports) and under
``if TYPE_CHECKING:``. A cycle through a function-level import still ties two modules
together (neither can move or be read alone), and one through a type-only import still
says two layers know each other, so all three count. An edge goes to the module a
statement names (``from .base import X`` → ``engine.base``; ``from . import sse`` →
``protocol.sse``); the parent packages Python runs first are not edges, or every module
would import the package root, whose ``__getattr__`` imports the web app.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import trio_responses

PACKAGE = Path(trio_responses.__file__).parent
ROOT = "trio_responses"

# What each layer may import besides itself (web → runtime → engine, store; everything
# above protocol may use it; errors and config are leaves anyone may use, but protocol
# stays free of settings). engine.vllm is the one way into vLLM: only web (which builds
# the engine a server serves) reaches it, never the runtime nor the other engines.
ALLOWED: Mapping[str, frozenset[str]] = {
    "web": frozenset({"runtime", "engine", "engine.vllm", "store", "protocol", "errors",
                      "config"}),
    "runtime": frozenset({"engine", "store", "protocol", "errors", "config"}),
    "engine.vllm": frozenset({"engine", "errors", "config"}),
    "engine": frozenset({"errors", "config"}),
    "store": frozenset({"errors", "config"}),
    "protocol": frozenset({"errors"}),
    "errors": frozenset(),
    "config": frozenset(),
}
# The entry points above every layer: the package root, the CLI and Hypercorn's runner.
ENTRY_POINTS = frozenset({ROOT, f"{ROOT}.__main__", f"{ROOT}.server"})


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.AST, package: str) -> Iterator[tuple[str, ast.stmt]]:
    """Each (absolute dotted name, statement) that ``tree``, a module of ``package``,
    imports, relative imports resolved; ``from m import n`` gives ``m.n``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                yield f"{module}.{alias.name}", node


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (see the module docstring)."""
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target, _ in imported_names(ast.parse(path.read_text()), package):
            # The longest prefix that is a module: "m.n" is submodule n, or a name in m.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for after in sorted(graph.get(node, ())):
            if after in on_path:
                return [*path[path.index(after):], after]
            if after not in done and (cycle := visit(after)) is not None:
                return cycle
        on_path.discard(path.pop())
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)) is not None:
            return cycle
    return None


def layer(module: str) -> str:
    """``trio_responses.engine.vllm.bridge`` → ``engine.vllm``; ``….web.app`` → ``web``;
    ``trio_responses.config`` → ``config``."""
    parts = module.split(".")[1:]
    if parts[:2] == ["engine", "vllm"]:
        return "engine.vllm"
    return parts[0] if parts else ""


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_every_arrow_points_down_the_layers() -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items() if module not in ENTRY_POINTS
        for target in targets
        if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
    )
    assert not wrong, wrong


def test_vllm_is_imported_only_lazily_and_only_by_engines() -> None:
    """DESIGN.md: the server, its tests and the scripted engine run without vLLM."""
    wrong: list[str] = []
    for name, path in package_modules().items():
        tree = ast.parse(path.read_text())
        lazy = {id(node) for function in ast.walk(tree)
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
                for node in ast.walk(function)}
        for target, statement in imported_names(tree, name):
            if target.split(".")[0] != "vllm":
                continue
            if not layer(name).startswith("engine"):
                wrong.append(f"{name} imports {target}")
            elif id(statement) not in lazy:
                wrong.append(f"{name} imports {target} at module level")
    assert not wrong, wrong


def test_the_graph_sees_every_import_form() -> None:
    graph = import_graph()
    # A function-level import, a relative one, and the root's lazy and type-only ones.
    assert f"{ROOT}.engine.vllm.args" in graph[f"{ROOT}.web.state"]
    assert f"{ROOT}.engine.base" in graph[f"{ROOT}.engine.scripted"]
    assert f"{ROOT}.web.app" in graph[ROOT]
    # "from trio_responses import errors" names the module errors, not the package root.
    assert f"{ROOT}.errors" in graph[f"{ROOT}.engine.vllm.bridge"]
    assert ROOT not in graph[f"{ROOT}.engine.vllm.bridge"]
    assert layer(f"{ROOT}.engine.vllm.bridge") == "engine.vllm"
    # Every module outside the entry points is in a layer the rules know.
    assert {layer(module) for module in graph if module not in ENTRY_POINTS} == set(ALLOWED)


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
