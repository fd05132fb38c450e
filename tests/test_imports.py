"""The house rules of imports (docs/architecture.md), read from the source: the data plane never
imports the control plane's libraries, the control plane's packages import downwards only, and no
module imports itself back through others."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTROL_LIBRARIES = ("ray", "mlflow", "optuna", "orchestrator")
# What each part of orchestrator/ may import from orchestrator/ besides itself.
MAY_IMPORT = {
    "records": set(),
    "cluster": {"records"},
    "report": {"records"},
    "tracking": {"records", "report"},
    "sweep": {"tracking", "records", "cluster", "report", "options"},
    "options": set(),
    "cli": {"options", "sweep", "tracking", "records", "cluster", "report"},
}


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of a top-level package."""
    return {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
            for path in sorted((ROOT / package).rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def part(module: str) -> str:
    """orchestrator.sweep.run -> sweep; orchestrator.cli -> cli."""
    return module.split(".")[1] if module.count(".") else module


@pytest.mark.parametrize("package", ["trainables", "search_spaces"])
def test_the_data_plane_never_imports_the_control_plane(package):
    found = {f"{module} imports {name}" for module, path in modules(package).items()
             for name in imported(path) if name.split(".")[0] in CONTROL_LIBRARIES}
    assert not found


def test_report_never_imports_ray():
    found = {f"{module} imports {name}" for module, path in modules("orchestrator").items()
             if module.startswith("orchestrator.report") for name in imported(path) if name.split(".")[0] == "ray"}
    assert not found


def test_orchestrator_parts_import_downwards_only():
    found = set()
    for module, path in modules("orchestrator").items():
        if module == "orchestrator":
            continue
        mine = part(module)
        for name in imported(path):
            if name.startswith("orchestrator.") and part(name) != mine and part(name) not in MAY_IMPORT[mine]:
                found.add(f"{module} ({mine}) imports {name}")
    assert not found


def test_no_import_circles():
    known = modules("orchestrator")
    graph = {module: {name for name in imported(path) if name in known and name != module}
             for module, path in known.items()}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        for name in graph[module]:
            if name in trail:
                circles.append(" -> ".join(trail[trail.index(name):] + [name]))
            elif name not in done:
                visit(name, trail + [name])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert not circles


def test_no_orchestrator_file_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in modules("orchestrator").values()
            if (n := len(path.read_text().splitlines())) > 400}
    assert not long


def test_in_function_imports_are_lazy_on_purpose():
    """Only the CLI imports inside functions (so `orch --help` is fast), each command saying so."""
    found = []
    for module, path in modules("orchestrator").items():
        source = path.read_text()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            local = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
            body = ast.get_source_segment(source, function) or ""
            if local and (module != "orchestrator.cli" or "# Lazy" not in body):
                found.append(f"{module}.{function.name}")
    assert not found
