"""The tafeng case study: its quick grid end to end and the report's promised content."""

from __future__ import annotations

import json

import pytest
from test_calibrate import lines, needs_seasonal  # noqa: F401  (lines: the data fixture)

from coordopt.studies import run_study, study_names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@needs_seasonal
@pytest.mark.usefixtures("lines")
def test_quick_tafeng_study(tmp_path):
    """Real and synthetic catalogs, every method, the weekly gain and the validation table."""
    assert "tafeng" in study_names()
    out = tmp_path / "tafeng"
    report = run_study("tafeng", out, quick=True, backend="process", workers=2, progress=False)
    text = report.read_text()
    for fig in ("weekly_gain.png", "calibration/validation.png"):
        data = (out / fig).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, fig
    assert "](weekly_gain.png)" in text
    for phrase in (
        "Validation of the calibration",
        "WAPE model",
        "fluid bound",
        "siloed firm",
        "fluid MPC (coordinated)",
        "coordination gain",
        "When coordination pays",
        "Lunar New Year",
        "The recommendation uplift is assumed, not measured",
    ):
        assert phrase in text, phrase
    rows = (out / "tafeng.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # tafeng and synthetic, two sizes each
    weekly = (out / "weekly_gain.csv").read_text().strip().splitlines()
    assert len(weekly) == 1 + 2 * 17  # the LP-solved size of each catalog, 17 weeks
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells"] == len(list((out / "cells").glob("*.json")))
