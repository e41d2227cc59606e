"""The layer rule of the README ("Layout"), checked on every module's imports with ``ast``.

Layers, lowest first; a module may import its own layer and the ones below, never above:

0. core -- every ``coordopt`` module not named below (instance, choice, simulator,
   solution, periods, policies, evaluation, io, text, machine, studies engine, ...)
1. ``coordopt.models`` -- the Pyomo formulations
2. ``coordopt.solvers`` -- solves, DP, MPC
3. ``coordopt.rl``, ``coordopt.insights`` -- learning and analysis on top of the solvers
4. ``coordopt.commands``, ``coordopt.cli``, ``coordopt.case_studies`` -- front ends

Names are resolved upward only through declared entry tables read with ``importlib``
(:data:`DECLARED_ENTRY_TABLES`); no other module imports by computed name. The case
studies import at module top: a function-local ``coordopt`` import there would only hide a
cycle.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"coordopt": "coordopt", "models": "coordopt.models", "solvers": "coordopt.solvers"}
PACKAGES["case_studies"] = "coordopt.case_studies"

LAYERS: list[tuple[str, int]] = [
    ("coordopt.commands", 4),
    ("coordopt.cli", 4),
    ("coordopt.case_studies", 4),
    ("coordopt.rl", 3),
    ("coordopt.insights", 3),
    ("coordopt.solvers", 2),
    ("coordopt.models", 1),
    ("coordopt", 0),
]

DECLARED_ENTRY_TABLES = {
    "coordopt.policies": (
        "POLICY_ENTRY_POINTS",
        "AGENT_ENTRY_POINT",
        "PEER_ENTRY_POINT",
        "BEST_SILOED_ENTRY_POINT",
    ),
    "coordopt.studies": ("STUDIES_PACKAGE",),
    "coordopt.cli": ("COMMANDS",),
}
"""Modules that may import by computed name, and the table each reads."""


def layer(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} is in no layer")


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """``(imported coordopt module, line, function-local?)`` for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:  # "from coordopt import insights" names a module
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in ALL else target, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return [(name, line, local) for name, line, local in found if name.split(".")[0] == "coordopt"]


ALL = modules()


@pytest.mark.parametrize("module", sorted(ALL))
def test_imports_go_down_the_layers(module: str) -> None:
    own = layer(module)
    up = [
        f"{ALL[module].relative_to(ROOT)}:{line} imports {target} (layer {layer(target)} > {own})"
        for target, line, _ in imports(ALL[module], module)
        if layer(target) > own
    ]
    assert not up, "\n".join(up)


FRONT_ENDS = {
    "coordopt.case_studies": "studies",
    "coordopt.commands": "cli",
    "coordopt.cli": "cli",
}
"""The front ends of layer 4; one front end never imports another."""


def front_end(module: str) -> str | None:
    return next(
        (g for p, g in FRONT_ENDS.items() if module == p or module.startswith(p + ".")), None
    )


@pytest.mark.parametrize("module", sorted(m for m in ALL if front_end(m)))
def test_front_ends_share_through_the_core_not_sideways(module: str) -> None:
    own = front_end(module)
    side = [
        f"{ALL[module].relative_to(ROOT)}:{line} imports {target}"
        for target, line, _ in imports(ALL[module], module)
        if front_end(target) not in (None, own)
    ]
    assert not side, "\n".join(side)


@pytest.mark.parametrize("module", sorted(m for m in ALL if front_end(m) == "studies"))
def test_case_studies_import_at_module_top(module: str) -> None:
    local = [line for _, line, is_local in imports(ALL[module], module) if is_local]
    assert not local, f"{ALL[module].relative_to(ROOT)}: function-local coordopt imports at {local}"


def test_only_declared_entry_tables_import_by_name() -> None:
    users = set()
    for module, path in ALL.items():
        text = path.read_text()
        if "import_module(" in text or "__import__(" in text:
            users.add(module)
    assert users <= set(DECLARED_ENTRY_TABLES), users - set(DECLARED_ENTRY_TABLES)
    for module, tables in DECLARED_ENTRY_TABLES.items():
        for table in tables:
            assert hasattr(importlib.import_module(module), table), (module, table)


def test_policy_entry_points_resolve() -> None:
    from coordopt.policies import (
        AGENT_ENTRY_POINT,
        BEST_SILOED_ENTRY_POINT,
        PEER_ENTRY_POINT,
        POLICY_ENTRY_POINTS,
    )

    entries = {
        **POLICY_ENTRY_POINTS,
        "agent": AGENT_ENTRY_POINT,
        "peer": PEER_ENTRY_POINT,
        "best siloed": BEST_SILOED_ENTRY_POINT,
    }
    for name, target in entries.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from coordopt.commands.common import table\n")
    found = imports(bad, "coordopt.solution")
    assert found == [("coordopt.commands.common", 2, True)]
    assert layer(found[0][0]) > layer("coordopt.solution")
