"""Package discovery; everything else about the build is in pyproject.toml.

`models/`, `solvers/` and `case_studies/` sit at the top level but install as
`coordopt.models`, `coordopt.solvers` and `coordopt.case_studies` (pyproject's
`[tool.setuptools.package-dir]`). setuptools' `find` names a package after its folder, so
it cannot give those names; this runs the same discovery in each mapped folder and adds
the installed prefix. No package is listed by hand, and tests/test_packaging.py checks the
result against the tree.
"""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def discover_packages() -> list[str]:
    """Every folder with an `__init__.py` under `coordopt/` and the mapped folders."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    packages = find_packages(where=str(ROOT), include=["coordopt", "coordopt.*"])
    for name, folder in package_dir.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(where=str(ROOT / folder))]
    return sorted(set(packages))


setup(packages=discover_packages())
