"""The layering the folders promise, checked on the source: who may import whom, and no cycles.

contract/ (no TensorFlow) <- app/ (the service) and training/; bench/ drives the service from
outside; the Python client (clients/python/garment_sorter_client) installs without the service and
uses the contract only. Every import counts, function-local and type-only ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT_ROOT = REPO / "clients" / "python"
# Each package and the directory it is imported from.
PACKAGES = {"app": REPO, "bench": REPO, "contract": REPO, "training": REPO, "garment_sorter_client": CLIENT_ROOT}
FORBIDDEN = {
    "app": {"training", "bench", "garment_sorter_client"},
    "contract": {"app", "training", "bench", "garment_sorter_client", "tensorflow", "keras"},
    "training": {"app", "bench", "garment_sorter_client"},
    "garment_sorter_client": {"app", "training", "bench", "tensorflow", "keras", "numpy"},
}


def module_name(path: Path) -> str:
    root = CLIENT_ROOT if path.is_relative_to(CLIENT_ROOT) else REPO
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package, root in PACKAGES.items() for p in (root / package).rglob("*.py")}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    name = module_name(path)
    return imports_in(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0], known)


def imports_in(source: str, package: str, known: dict[str, Path]) -> set[str]:
    """Every module an import statement in the source names (top-level or not), resolved to a
    known module where it is one (``from a.b import c`` is a.b.c when c is a module); relative
    imports are resolved against ``package``, the package the source lives in."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in known else module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports_of(path, known) if m in known and m != name} for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_module_level_function_local_and_relative_imports():
    edges = graph()
    assert "app.inference.batcher" in edges["app.service.flow"]  # module level
    assert "app.main" in edges["app.cli"]  # inside cmd_serve
    assert "training.train" in edges["training.cli"]  # inside a command
    assert "contract.api" in edges["garment_sorter_client.client"]  # the client, from its own root
    relative = "from . import batcher\nfrom ..service import flow\nfrom .model import Model\n"
    assert imports_in(relative, "app.inference", modules()) == {
        "app.inference.batcher",
        "app.service.flow",
        "app.inference.model",
    }


def test_no_import_cycle_in_any_package():
    assert find_cycle(graph()) is None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package):
    known = modules()
    offending = {
        name: sorted(m for m in imports_of(path, known) if m.split(".")[0] in FORBIDDEN[package])
        for name, path in known.items()
        if name.split(".")[0] == package
    }
    assert {name: found for name, found in offending.items() if found} == {}
