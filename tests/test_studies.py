"""Case studies: every --quick run end to end, its report's promised content, resume, Ray."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coordopt.cli import main
from coordopt.studies import cell_key, run_study, study_names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# study -> (figures, CSV files, phrases the report must contain)
PROMISES = {
    "exact-benchmark": (
        ["exact_benchmark.png"],
        ["exact_benchmark.csv"],
        [
            "DP optimum",
            "fluid upper bound",
            "% of optimum",
            "exact DP (optimal policy)",
            "RL: multi-timescale, warm",
            "siloed (MNL slates + base stock)",
        ],
    ),
    "coordination-value": (
        ["coordination_value.png"],
        ["coordination_value.csv"],
        ["coordination gain %", "Where coordination matters most and least"],
    ),
    "timescales": (
        ["timescales.png"],
        ["timescales.csv"],
        ["sd over seeds", "oscillation", "single"],
    ),
    "synchronised-adjustments": (
        ["intensity_cover_tiny.png", "intensity_cover_small.png"],
        ["synchronised_adjustments.csv"],
        ["intensity_cover_corr", "Alignment with the optimiser", "rl-multi-warm", "dp"],
    ),
    "scale": (
        ["scale.png"],
        ["scale.csv"],
        ["sim speed", "train env-steps/s", "fluid bound", "Machine:"],
    ),
}


def check_report(out: Path, study: str) -> str:
    figures, csvs, phrases = PROMISES[study]
    report = (out / "report.md").read_text()
    for fig in figures:
        data = (out / fig).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, fig
        assert f"]({fig})" in report  # the report shows it
    for name in csvs:
        lines = (out / name).read_text().strip().splitlines()
        assert len(lines) >= 3 and "," in lines[0]
    for phrase in phrases:
        assert phrase in report, phrase
    assert re.search(r"^-+ +-+", report, re.M), "a table"
    assert not list(out.rglob("*.tmp"))  # atomic writes leave nothing behind
    return report


@pytest.mark.parametrize("study", sorted(PROMISES))
def test_quick_study_writes_its_report(tmp_path, study):
    assert study in study_names()
    out = tmp_path / study
    report_path = run_study(study, out, quick=True, backend="process", workers=2, progress=False)
    assert report_path == out / "report.md"
    check_report(out, study)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells"] == len(list((out / "cells").glob("*.json")))


def test_resume_recomputes_only_missing_cells(tmp_path):
    out = tmp_path / "cv"
    run_study("coordination-value", out, quick=True, backend="serial", progress=False)
    cells = sorted((out / "cells").glob("*.json"))
    victim = cells[0]
    victim.unlink()
    before = {p: p.stat().st_mtime_ns for p in cells[1:]}
    run_study("coordination-value", out, quick=True, backend="serial", progress=False)
    assert victim.exists()
    assert {p: p.stat().st_mtime_ns for p in cells[1:]} == before


def test_ray_backend_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ts"
    run_study("timescales", out, quick=True, backend="ray", workers=2, progress=False)
    check_report(out, "timescales")


def test_reproduce_cli_and_errors(tmp_path, capsys):
    out = tmp_path / "ts"
    assert (
        main(
            [
                "reproduce",
                "timescales",
                "--quick",
                "--out",
                str(out),
                "--backend",
                "serial",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["report"] == str(out / "report.md")
    assert main(["reproduce", "no-such-study"]) == 2  # argparse refuses it, naming the choices
    with pytest.raises(ValueError, match="unknown study"):
        run_study("no-such-study", tmp_path)


def test_cell_keys_are_stable_and_distinct():
    a = {"factor": "lead_time", "level": 2, "seed": 0}
    assert cell_key(a) == cell_key(dict(reversed(list(a.items()))))
    assert cell_key(a) != cell_key({**a, "seed": 1})
