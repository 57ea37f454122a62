"""training/ imports form no cycle, function-local imports included, and never reach the service or the benchmarks."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = "training"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / PACKAGE
FORBIDDEN = ("app", "bench")  # training/ runs where the service and its benchmarks are not installed


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every dotted name a module imports anywhere in its body, with `from a import b` giving both a and a.b."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to this module's package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """training module -> the training modules it imports."""
    imports = {module_name(path): imported_names(path) for path in PACKAGE_DIR.rglob("*.py")}
    return {module: names & imports.keys() - {module} for module, names in imports.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each back edge a depth-first search meets, as the modules along it."""
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_graph_sees_module_level_and_function_local_imports():
    graph = import_graph()
    assert {"training.ensemble", "training.sorting"} <= graph["training.export"]  # module level
    assert "training.train" in graph["training.cli"]  # inside cmd_train
    assert graph["training"] == set()


def test_training_has_no_import_cycle():
    assert [" -> ".join(cycle) for cycle in cycles(import_graph())] == []


def test_training_never_imports_the_service_or_the_benchmarks():
    offenders = {
        module_name(path): sorted(
            name for name in imported_names(path) if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)
        )
        for path in PACKAGE_DIR.rglob("*.py")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_data_side_and_the_command_registration_need_no_tensorflow():
    """The dataset, its exploration report and the sorting figures are NumPy (bench/ reads the images
    too), and the console script loads training.cli to list the commands (for --help too)."""
    heavy = ("tensorflow", "keras", "matplotlib")
    probe = (
        "import sys, training.cli, training.data, training.explore, training.sorting; "
        f"print([m for m in {heavy} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
