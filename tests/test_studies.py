"""Case studies: every --quick run end to end, its report's promised content, resume, Ray."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from coordopt.case_studies.timescales.runner import steps_to_most
from coordopt.cli import main
from coordopt.insights.report import metric_cell
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
    "substitution": (
        ["category_ari.png"],
        ["substitution.csv"],
        ["adjusted Rand index", "## Findings"],
    ),
    "coordination-value": (
        ["coordination_value.png"],
        ["coordination_value.csv"],
        [
            "coordination gain %",
            "Where coordination matters most and least",
            "best siloed firm",
            "bid price vs best siloed %",
            "## Against the best siloed firm",
        ],
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
        [
            "sim speed",
            "train env-steps/s",
            "fluid bound",
            "stochastic bound",
            "Machine:",
            "% of tighter bound",
            "vs best siloed",
        ],
    ),
}


def _cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def _close(text: str, value: float | None) -> bool:
    """A CSV field equals the cell's number (NaN and an empty field match NaN / None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return text in ("", "nan")
    return math.isclose(float(text), float(value), rel_tol=1e-9, abs_tol=1e-12)


def _check_exact_benchmark(rows: list[dict], cells: list[dict], report: str) -> None:
    for row in rows:
        runs = [
            c
            for c in cells
            if c["params"]["variant"]["name"] == row["variant"]
            and c["params"]["method"] == row["method"]
        ]
        dp = next(
            c["result"]
            for c in cells
            if c["params"]["variant"]["name"] == row["variant"] and c["params"]["method"] == "dp"
        )
        mean = float(np.mean([c["result"]["mean"] for c in runs]))
        assert int(row["seeds"]) == len(runs) >= 1
        assert _close(row["mean"], mean)
        assert _close(row["pct_of_optimum"], 100 * mean / dp["dp_value"])
        assert f"DP optimum **{dp['dp_value']:.3f}**" in report
        stochastic = dp["stochastic_bound"]  # valid: at or above the optimum, below the fluid's
        assert _close(row["stochastic_bound"], stochastic)
        if stochastic is not None:
            assert (
                dp["dp_value"] * (1 - 1e-9) <= stochastic <= float(row["fluid_bound"]) * (1 + 1e-9)
            )
            assert f"stochastic upper bound {stochastic:.3f}" in report
    assert {(r["variant"], r["method"]) for r in rows} == {
        (c["params"]["variant"]["name"], c["params"]["method"]) for c in cells
    }


def _check_coordination_value(rows: list[dict], cells: list[dict], report: str) -> None:
    from case_studies.coordination_value.runner import BEST_SILOED_COLUMNS

    def key(c: dict) -> tuple[str, str, str]:
        return c["params"]["factor"], str(c["params"]["level"]), str(c["params"]["seed"])

    main_cells = {key(c): c for c in cells if "kind" not in c["params"]}
    best_cells = {key(c): c for c in cells if c["params"].get("kind") == "best-siloed"}
    assert len(rows) == len(main_cells) == len(best_cells) == len(cells) / 2
    assert set(main_cells) == set(best_cells)  # the best siloed firm beside every main cell
    for row in rows:
        result = main_cells[(row["factor"], row["level"], row["seed"])]["result"]
        best = best_cells[(row["factor"], row["level"], row["seed"])]["result"]
        for k in ("siloed", "mpc", "gain", "gain_pct", "coord_gain_pct"):
            assert _close(row[k], result[k]), k
        for k in BEST_SILOED_COLUMNS:  # from the best siloed firm's cell, finite
            assert _close(row[k], best[k]), k
            assert math.isfinite(float(row[k])), k
        # the same customers as the main cell: its siloed firm and bid price, profit for profit
        assert best["siloed"] == pytest.approx(result["siloed"], rel=1e-12)
        assert best["bidprice"] == pytest.approx(result["bidprice"], rel=1e-12)
        # the paired gain of bid price over the best siloed firm, from the two means
        gain = 100 * (result["bidprice"] - best["best_siloed"]) / abs(best["best_siloed"])
        assert float(row["bidprice_vs_best_siloed_pct"]) == pytest.approx(gain, rel=1e-9)
        # inventory programs for the same slates never lose to base stock beyond the paired
        # interval (even with a few products' orders postponed past the state limit)
        n = main_cells[(row["factor"], row["level"], row["seed"])]["params"]["n_products"]
        assert 0 <= int(row["best_siloed_postponed_products"]) <= n
        lower = float(row["best_siloed_vs_siloed_pct"]) + float(row["best_siloed_vs_siloed_ci_pct"])
        assert lower >= 0, (row["factor"], row["level"])
        assert float(row["best_siloed"]) >= float(row["siloed"]) - float(row["siloed_ci"])
    pct = [float(r["bidprice_vs_best_siloed_pct"]) for r in rows]
    above = sum(
        float(r["bidprice_vs_best_siloed_pct"]) - float(r["bidprice_vs_best_siloed_ci_pct"]) > 0
        for r in rows
    )
    said = (
        f"- Bid-price control minus the best siloed firm: {min(pct):+.1f}% to {max(pct):+.1f}% "
        f"over the {len(rows)} cells ({above} of {len(rows)} above it beyond the interval"
    )
    assert said in report


def _check_timescales(rows: list[dict], cells: list[dict], report: str) -> None:
    for row in rows:
        finals = [c["result"]["final"] for c in cells if c["params"]["config"] == row["config"]]
        assert int(row["seeds"]) == len(finals) >= 1
        assert _close(row["final_mean"], np.mean(finals))
        runs = [c["result"] for c in cells if c["params"]["config"] == row["config"]]
        steps = [steps_to_most(r["curve_steps"], r["curve_profit"]) for r in runs]
        assert _close(row["steps_to_90pct"], np.mean(steps))


def test_steps_to_most_is_the_first_evaluation_that_closes_the_share_of_the_gap() -> None:
    # from 0 up to a best of 10: 90% of the way is 9, first met at the fourth evaluation
    assert steps_to_most([1, 2, 3, 4, 5], [0, 5, 8, 9.5, 10]) == 4
    assert steps_to_most([1, 2, 3], [7, 3, 1]) == 1  # never better than the start


def _check_synchronised(rows: list[dict], cells: list[dict], report: str) -> None:
    assert len(rows) == len(cells)
    for row in rows:
        cell = next(
            c
            for c in cells
            if c["params"]["instance"] == row["instance"] and c["params"]["source"] == row["source"]
        )
        for k, m in cell["result"]["metrics"].items():
            assert _close(row[k], m["value"]), k
            assert metric_cell(m, mark=True) in report  # the report shows the cell's number
        for k, v in cell["result"]["alignment"].items():
            assert _close(row[f"align_{k}"], v), k
        expected = "dp" if row["instance"] == "tiny" else "fluid"  # where the DP fits
        assert cell["result"]["reference"] == expected


def _check_scale(rows: list[dict], cells: list[dict], report: str) -> None:
    def cell(kind: str, catalog: str) -> dict | None:
        found = [
            c["result"]
            for c in cells
            if c["params"]["kind"] == kind and c["params"]["catalog"]["name"] == catalog
        ]
        return found[0] if found else None

    for row in rows:
        bound, sim = cell("bound", row["catalog"]), cell("sim", row["catalog"])
        assert bound is not None and sim is not None
        assert _close(row["sim_product_steps_per_s"], sim["product_steps_per_s"])
        assert _close(row["bound"], bound["bound"]) and bound["bound"] >= bound["plan_value"] - 1e-6
        evaluated = {
            **cell("policies", row["catalog"])["policies"],
            **(cell("tuned", row["catalog"]) or {"policies": {}})["policies"],
        }
        r = evaluated[row["policy"]]
        diff = np.asarray(r["profits"]) - np.asarray(evaluated["siloed"]["profits"])
        assert _close(row["mean"], r["mean"]) and _close(row["mean"], np.mean(r["profits"]))
        assert _close(row["diff_vs_siloed"], diff.mean())  # paired on the one stream
        assert _close(row["fraction_of_bound"], r["mean"] / bound["bound"])
        stochastic = [e["stochastic_bound"] for e in evaluated.values() if "stochastic_bound" in e]
        if stochastic:  # valid: below the fluid bound, above every policy's mean beyond its CI
            s = stochastic[0]["bound"]
            assert s <= stochastic[0]["fluid_bound"] * (1 + 1e-9)
            assert _close(row["stochastic_bound"], s)
            assert r["mean"] - r["ci"] <= s
        assert _close(
            row["tighter_bound"], min([bound["bound"], *(e["bound"] for e in stochastic)])
        )
        assert _close(row["fraction_of_tighter_bound"], r["mean"] / float(row["tighter_bound"]))
        assert (
            r["mean"] <= bound["bound"] * 1.05
        )  # a simulated profit does not beat the bound by much
    policies = {row["policy"] for row in rows}
    assert {"siloed", "bidprice", "agents (zero-shot)", "agents (fine-tuned)"} <= policies
    # noise alone: the exact programs earn at most the fluid program on the same demand
    (noise,) = [c["result"] for c in cells if c["params"]["kind"] == "noise"]
    assert 0 < noise["exact"] <= noise["fluid"] * (1 + 1e-9)
    assert _close(noise["exact_of_fluid"], noise["exact"] / noise["fluid"])
    assert f"earns {noise['exact_of_fluid']:.1%} of what the same mean demand earns" in report


def _check_substitution(rows: list[dict], cells: list[dict], report: str) -> None:
    assert len(rows) == len(cells)
    by_ari = sorted(c["result"]["category_ari"] for c in cells)
    assert sorted(float(r["category_ari"]) for r in rows) == pytest.approx(by_ari)
    for row in rows:
        assert -1.0 <= float(row["category_ari"]) <= 1.0
        assert int(row["covered"]) <= int(row["products"])
        assert row["catalog"] in report


CSV_CHECKS = {
    "exact-benchmark": _check_exact_benchmark,
    "coordination-value": _check_coordination_value,
    "timescales": _check_timescales,
    "synchronised-adjustments": _check_synchronised,
    "scale": _check_scale,
    "substitution": _check_substitution,
}


def check_report(out: Path, study: str) -> str:
    figures, csvs, phrases = PROMISES[study]
    report = (out / "report.md").read_text()
    for fig in figures:
        data = (out / fig).read_bytes()
        assert data.startswith(PNG_MAGIC), fig
        assert f"]({fig})" in report  # the report shows it
    cells = _cells(out)
    for name in csvs:
        rows = list(csv.DictReader(io.StringIO((out / name).read_text())))
        assert rows
        CSV_CHECKS[study](rows, cells, report)  # every number is the one its cells hold
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


def test_scale_cells_run_longest_first_and_fine_tune_from_a_generated_catalog():
    from case_studies.scale.runner import cells
    from coordopt.studies import load_config

    config = load_config("scale", quick=True)
    generated = {"name": "synthetic-50", "n_products": 50, "n_segments": 5, "horizon": 6}
    config["catalogs"] = [
        generated,
        {"name": "medium", "tune": "init", "init_from": "synthetic-50"},
    ]
    grid = cells(config)
    assert [(c["kind"], c["catalog"]["name"]) for c in grid[:2]] == [
        ("tuned", "medium"),
        ("sim", "medium"),
    ]
    assert grid[0]["init_from"] == generated  # the grid's generated catalog, not a bundled name


@pytest.fixture
def toy_study(monkeypatch):
    """A two-cell study that runs in no time, standing in for ``timescales``."""
    import sys
    import types

    from coordopt import studies

    runner = types.ModuleType("toy_study_runner")
    runner.cells = lambda config: [{"seed": 0}, {"seed": 1}]
    runner.run_cell = lambda params, workdir: {"value": params["seed"] + 1}

    def report(results, config, out):
        path = Path(out) / "report.md"
        path.write_text(f"total {sum(r['result']['value'] for r in results)}")
        return path

    runner.report = report
    monkeypatch.setitem(sys.modules, runner.__name__, runner)
    monkeypatch.setattr(studies, "_module", lambda name: runner)
    monkeypatch.setattr(studies, "load_config", lambda name, quick: {"study": name})
    return runner


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xffgarbage",  # not text
        b"{not json",  # not JSON (was deleted and recomputed without a word)
        b"[]",  # JSON, not a record (was an internal error)
        b'{"params": {"seed": 0}, "result": {"value": 1}}',  # no seconds
        b'{"params": {"seed": 1}, "result": {"value": 2}, "seconds": 0.1}',  # another cell's
    ],
)
def test_a_corrupt_cell_is_refused_naming_the_file(tmp_path, capsys, toy_study, content):
    out = tmp_path / "toy"
    argv = ["reproduce", "timescales", "--quick", "--out", str(out), "--backend", "serial"]
    assert main(argv) == 0
    assert (out / "report.md").read_text() == "total 3"
    victim = out / "cells" / f"{cell_key({'seed': 0})}.json"
    assert victim.exists()
    victim.write_bytes(content)
    capsys.readouterr()
    assert main(argv) == 2  # bad input, not an internal error
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(victim) in err and "delete the file" in err
    assert victim.read_bytes() == content  # left for the user to look at
    with pytest.raises(ValueError, match="delete the file"):
        run_study("timescales", out, backend="serial", progress=False)
    victim.unlink()  # as the message says: the cell is recomputed, the others kept
    assert main(argv) == 0 and (out / "report.md").read_text() == "total 3"
