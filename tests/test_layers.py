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
cycle. No module imports one that imports it back, directly or around a circle, counting
imports inside functions too (:func:`import_circle`).
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import itertools
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
    "coordopt.policies": ("POLICY_ENTRIES", "AGENT_ENTRY", "PEER_ENTRY", "BEST_SILOED_ENTRY"),
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


def import_circle(files: dict[str, Path]) -> list[str]:
    """The imports around one circle among the modules ``files`` (name -> path), counting
    function-local imports (``file:line imports module`` each); ``[]`` where there is none."""
    edges: dict[str, dict[str, tuple[int, bool]]] = {m: {} for m in files}
    for module, path in files.items():
        for target, line, local in imports(path, module):
            if target in files and target != module:
                edges[module].setdefault(target, (line, local))
    try:
        graphlib.TopologicalSorter({m: set(e) for m, e in edges.items()}).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]  # each module imported by the next; the last is the first
        out = []
        for target, module in itertools.pairwise(cycle):
            path, (line, local) = files[module], edges[module][target]
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            out.append(f"{where}:{line} imports {target}" + (" in a function" if local else ""))
        return out
    return []


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
    from coordopt.policies import AGENT_ENTRY, BEST_SILOED_ENTRY, PEER_ENTRY, POLICY_ENTRIES

    entries = {
        **POLICY_ENTRIES,
        "agent": AGENT_ENTRY,
        "peer": PEER_ENTRY,
        "best siloed": BEST_SILOED_ENTRY,
    }
    for name, entry in entries.items():
        assert callable(entry.factory), name


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from coordopt.commands.common import table\n")
    found = imports(bad, "coordopt.solution")
    assert found == [("coordopt.commands.common", 2, True)]
    assert layer(found[0][0]) > layer("coordopt.solution")


def test_no_import_circle_among_the_modules() -> None:
    """coordopt, models, solvers and case studies import one way: no circle, not even one
    closed by an import inside a function (it would only hide the circle until run)."""
    circle = import_circle(ALL)
    assert not circle, "import circle:\n" + "\n".join(circle)


def test_the_checker_sees_a_circle_closed_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from coordopt.b import g\n")
    (tmp_path / "b.py").write_text("from coordopt.c import h\n")
    (tmp_path / "c.py").write_text("def h():\n    from coordopt.a import f\n")
    files = {f"coordopt.{name}": tmp_path / f"{name}.py" for name in "abc"}
    circle = import_circle(files)
    assert sorted(circle) == [
        f"{tmp_path / 'a.py'}:1 imports coordopt.b",
        f"{tmp_path / 'b.py'}:1 imports coordopt.c",
        f"{tmp_path / 'c.py'}:2 imports coordopt.a in a function",
    ]
    (tmp_path / "c.py").write_text("def h():\n    from coordopt.b import g\n")
    assert import_circle({k: v for k, v in files.items() if k != "coordopt.a"})
    (tmp_path / "c.py").write_text("def h():\n    pass\n")
    assert import_circle(files) == []
