"""What a wheel would hold: setuptools' own configuration of this tree (pyproject.toml and
setup.py, read the way the build backend reads them) must cover every package folder,
every module and every data file, so a missing package fails here and not only in the
wheel check (.ci/wheel-check), which installs a real wheel in a clean environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import setuptools  # noqa: F401  (before distutils: setuptools' own copy of it)
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[1]
# Top-level folder → the name it installs under (ARCHITECTURE.md's layout).
ROOTS = {
    "coordopt": "coordopt",
    "models": "coordopt.models",
    "solvers": "coordopt.solvers",
    "case_studies": "coordopt.case_studies",
}


def _source_files(pattern: str) -> set[Path]:
    return {
        path
        for top in ROOTS
        for path in (ROOT / top).rglob(pattern)
        if "__pycache__" not in path.parts
    }


def _installed_name(folder: Path) -> str:
    top, *rest = folder.relative_to(ROOT).parts
    return ".".join([ROOTS[top], *rest])


@pytest.fixture(scope="module")
def dist() -> Distribution:
    """The distribution as the build backend configures it (setup.py, else a bare setup())."""
    from distutils.core import run_setup

    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    try:
        script = ROOT / "setup.py"
        if script.exists():
            configured = run_setup(str(script), stop_after="config")
        else:  # what setuptools.build_meta runs when a project has no setup.py
            configured = Distribution()
            configured.script_name = str(script)
            configured.parse_config_files()
        assert isinstance(configured, Distribution)
        configured.set_defaults()  # automatic discovery, as run_command does before a build
        return configured
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def build(dist: Distribution) -> build_py:
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    try:
        cmd = build_py(dist)
        cmd.ensure_finalized()
        return cmd
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """setuptools resolves package folders and globs relative to the working directory."""
    monkeypatch.chdir(ROOT)


def _package_dir(build: build_py, package: str) -> Path:
    return (ROOT / build.get_package_dir(package)).resolve()


def test_every_folder_with_python_is_a_regular_package() -> None:
    """Discovery finds packages by their __init__.py: a folder of modules without one would
    be left out of the wheel silently."""
    missing = sorted(
        str(path.parent.relative_to(ROOT))
        for path in _source_files("*.py")
        if not (path.parent / "__init__.py").exists()
    )
    assert not missing, f"folders with modules but no __init__.py: {missing}"


def test_every_package_folder_is_discovered_under_its_installed_name(dist, build) -> None:
    packages = set(dist.packages or ())
    expected = {_installed_name(init.parent) for init in _source_files("__init__.py")}
    missing = sorted(expected - packages)
    assert not missing, f"packages the wheel would leave out: {missing}"
    assert not sorted(packages - expected), "packages without a folder"
    for init in _source_files("__init__.py"):  # each name resolves to its own folder
        assert _package_dir(build, _installed_name(init.parent)) == init.parent.resolve()


def test_every_module_is_built(build) -> None:
    built = {(ROOT / filename).resolve() for _, _, filename in build.find_all_modules()}
    missing = sorted(str(p.relative_to(ROOT)) for p in _source_files("*.py") - built)
    assert not missing, f"modules the wheel would leave out: {missing}"


def test_study_configs_instances_and_marker_are_package_data(build) -> None:
    shipped = {
        (ROOT / src_dir / name).resolve()
        for _, src_dir, _, names in build.get_data_files_without_manifest()
        for name in names
    }
    wanted = {
        *(ROOT / "case_studies").glob("*/config.toml"),
        *(p for p in (ROOT / "coordopt/data/instances").iterdir() if p.suffix in {".toml", ".npz"}),
        ROOT / "coordopt/py.typed",
    }
    assert len(list((ROOT / "case_studies").glob("*/config.toml"))) >= 7
    missing = sorted(str(p.relative_to(ROOT)) for p in wanted if p.resolve() not in shipped)
    assert not missing, f"data files the wheel would leave out: {missing}"
