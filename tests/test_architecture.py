"""Structure rules of the package, checked on its source: no import cycles anywhere in
``ojs_actors``, and no module of ``ojs_actors/system`` too long to read at once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ojs_actors"
MAX_SYSTEM_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Every name an import statement of the module reaches, resolved to absolute
    (imports under ``if TYPE_CHECKING:`` included: a cycle of types is a cycle too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            found = [module for module in submodules if module in MODULES]
            # ``from package import submodule`` needs only the submodule; any other
            # name comes from the module (or package ``__init__``) itself.
            yield from found if len(found) == len(submodules) else [base, *found]


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target in imported_names(name, path) if target in MODULES} - {name}
        for name, path in MODULES.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_relative_and_absolute_imports() -> None:
    graph = import_graph()
    assert "ojs_actors.system.routing" in graph["ojs_actors.system.system"]
    assert "ojs_actors.core" in graph["ojs_actors.system.routing"]
    assert "ojs_actors.system.system" in graph["ojs_actors.system"]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_system_modules_are_short_enough_to_read_at_once() -> None:
    lengths = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for path in (PACKAGE / "system").rglob("*.py")
    }
    too_long = {path: lines for path, lines in lengths.items() if lines > MAX_SYSTEM_MODULE_LINES}
    assert too_long == {}
