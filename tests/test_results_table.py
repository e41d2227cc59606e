"""The README's results table is the one ``docs/results_table.py`` generates from the
committed CSV files of the case studies."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "docs/results_table.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_results_table_equals_the_csv_files() -> None:
    gen = load_generator()
    assert gen.readme_table((ROOT / "README.md").read_text()) == gen.table()
    assert gen.main(["--check"]) == 0


def test_a_changed_csv_is_caught(tmp_path, monkeypatch) -> None:
    gen = load_generator()
    shutil.copytree(ROOT / "docs/results", tmp_path / "results")
    csv = tmp_path / "results/timescales/timescales.csv"
    head, first, *rest = csv.read_text().splitlines()
    cells = first.split(",")
    cells[2] = str(float(cells[2]) + 1000.0)  # final_mean of the first set-up
    csv.write_text("\n".join([head, ",".join(cells), *rest]) + "\n")
    monkeypatch.setattr(gen, "RESULTS", tmp_path / "results")
    assert gen.readme_table((ROOT / "README.md").read_text()) != gen.table()
    assert gen.main(["--check"]) == 1


def test_every_study_has_a_row_and_its_report_is_committed() -> None:
    gen = load_generator()
    shipped = {p.parent.name.replace("_", "-") for p in ROOT.glob("case_studies/*/runner.py")}
    assert set(gen.STUDIES) == shipped
    for _row, report in gen.STUDIES.values():
        assert (ROOT / "docs/results" / report).is_file(), report
