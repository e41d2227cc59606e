"""The tafeng case study: its quick grid end to end, the report's promised content, every
CSV number against its cells, and the committed results' CSV against their report."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
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
        "best siloed firm",
        "Paired differences against the best siloed firm",
        "fluid MPC (coordinated)",
        "coordination gain",
        "When coordination pays",
        "Lunar New Year",
        "The recommendation uplift is assumed, not measured",
    ):
        assert phrase in text, phrase
    rows = (out / "tafeng.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # tafeng and synthetic, two sizes each
    with open(out / "tafeng.csv", newline="") as f:
        for row in csv.DictReader(f):  # the best siloed firm at every quick size
            where = (row["catalog"], row["products"])
            for key in (
                "best-siloed",
                "best-siloed_ci",
                "best-siloed_pct_bound",
                "best-siloed_vs_siloed_pct",
                "best-siloed_vs_siloed_ci_pct",
                "bidprice_vs_best_siloed_pct",
                "bidprice_vs_best_siloed_ci_pct",
                "best-siloed_postponed_products",
            ):
                assert row[key] != "" and math.isfinite(float(row[key])), (where, key)
            # its inventory programs, for the same slates, do not lose to base stock beyond
            # the paired interval; and no simulated policy beats the fluid bound by much
            gain, ci = (
                float(row["best-siloed_vs_siloed_pct"]),
                float(row["best-siloed_vs_siloed_ci_pct"]),
            )
            assert gain + ci >= 0, where
            assert float(row["best-siloed_pct_bound"]) <= 105, where
            line = next(
                x for x in text.splitlines() if x.startswith(f"- {where[0]} {where[1]}: best")
            )
            assert (
                f"bid-price control {float(row['bidprice_vs_best_siloed_pct']):+.1f}% ± "
                f"{float(row['bidprice_vs_best_siloed_ci_pct']):.1f}%" in line
            ), line
    weekly = (out / "weekly_gain.csv").read_text().strip().splitlines()
    assert len(weekly) == 1 + 2 * 17  # the LP-solved size of each catalog, 17 weeks
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells"] == len(list((out / "cells").glob("*.json")))
    check_tafeng_csv(out)


ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs/results/tafeng"

# the report's column labels -> the methods of the study (case_studies/tafeng/runner.py)
LABELS = {
    "siloed firm": "siloed",
    "best siloed firm": "best-siloed",
    "fluid MPC (coordinated)": "mpc",
    "MPC, siloed slates fixed": "mpc-siloed-slates",
    "bid-price control": "bidprice",
    "agents, warm-started (trained on the smallest real catalog)": "rl-multi-warm",
}


def _close(text: str, value: float | None) -> bool:
    """A CSV field equals the cell's number (an empty field matches None)."""
    if value is None:
        return text == ""
    return math.isclose(float(text), float(value), rel_tol=1e-9, abs_tol=1e-12)


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))


def _expected_rows(cells: list[dict]) -> dict[tuple[str, str], dict]:
    """Every number of tafeng.csv, recomputed from the cells."""
    bounds, policies = {}, {}
    for c in cells:
        p, r = c["params"], c["result"]
        if p["kind"] == "bound":
            bounds[(p["catalog"], p["products"])] = r
        elif p["kind"] == "policy":
            policies.setdefault((p["catalog"], p["products"]), {})[p["method"]] = r
        else:  # the agents: trained once, run on every size
            for n, sim in r["sizes"].items():
                policies.setdefault((p["catalog"], int(n)), {})["rl-multi-warm"] = sim
    rows = {}
    for (cat, n), b in bounds.items():
        coord, silo = b["coordinated"], b["siloed-slates"]["objective"]
        row = {
            "bound_method": coord["method"],
            "fluid_bound": coord["bound"],
            "fluid_plan": coord["objective"],
            "fluid_siloed_slates": silo,
            "fluid_gain_pct": 100 * (coord["bound"] - silo) / abs(silo),
            "fluid_gain_plan_pct": 100 * (coord["objective"] - silo) / abs(silo),
            "fluid_seconds": coord["seconds"],
        }
        pols = policies.get((cat, n), {})
        for m, v in pols.items():
            row[m], row[f"{m}_ci"], row[f"{m}_fill"] = v["mean"], v["ci95"], v["fill_rate"]
            row[f"{m}_pct_bound"] = 100 * v["mean"] / coord["bound"]
            row[f"{m}_late_order_cost"] = v["late_order_cost"]
            if "programs" in v:  # the best siloed firm's per-product programs
                row[f"{m}_postponed_products"] = v["programs"]["postponed_products"]
            if m != "siloed" and m != "mpc-siloed-slates" and "siloed" in pols:
                d, ci = _paired(v["profits"], pols["siloed"]["profits"])
                base = abs(np.mean(pols["siloed"]["profits"]))
                row[f"{m}_vs_siloed_pct"], row[f"{m}_vs_siloed_ci_pct"] = (
                    100 * d / base,
                    100 * ci / base,
                )
            if m in ("mpc", "bidprice", "rl-multi-warm") and "best-siloed" in pols:
                d, ci = _paired(v["profits"], pols["best-siloed"]["profits"])
                base = abs(np.mean(pols["best-siloed"]["profits"]))
                row[f"{m}_vs_best_siloed_pct"], row[f"{m}_vs_best_siloed_ci_pct"] = (
                    100 * d / base,
                    100 * ci / base,
                )
        if "mpc" in pols and "mpc-siloed-slates" in pols:
            d, ci = _paired(pols["mpc"]["profits"], pols["mpc-siloed-slates"]["profits"])
            base = abs(np.mean(pols["mpc-siloed-slates"]["profits"]))
            row["coord_gain_pct"], row["coord_gain_ci_pct"] = 100 * d / base, 100 * ci / base
        rows[(cat, str(n))] = row
    return rows


def check_tafeng_csv(out: Path) -> None:
    """Every number of tafeng.csv and weekly_gain.csv is the one its cells hold."""
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    expected = _expected_rows(cells)
    with open(out / "tafeng.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["catalog"], r["products"]) for r in rows} == set(expected)
    header = set(rows[0])
    for row in rows:
        want = expected[(row["catalog"], row["products"])]
        assert row["bound_method"] == want["bound_method"]
        for key, text in row.items():
            if key in ("catalog", "products", "bound_method"):
                continue
            assert _close(text, want.get(key)), (row["catalog"], row["products"], key)
        assert set(want) <= header  # every policy a row ran has its columns
    # week by week, for the catalogs whose fluid program was one LP
    bounds = {
        (c["params"]["catalog"], str(c["params"]["products"])): c["result"]
        for c in cells
        if c["params"]["kind"] == "bound"
    }
    sims = {
        (c["params"]["catalog"], str(c["params"]["products"]), c["params"]["method"]): c["result"]
        for c in cells
        if c["params"]["kind"] == "policy"
    }
    with open(out / "weekly_gain.csv", newline="") as f:
        weekly = list(csv.DictReader(f))
    exact = {k for k, b in bounds.items() if b["coordinated"]["method"] == "fluid"}
    assert {(r["catalog"], r["products"]) for r in weekly} == exact
    for r in weekly:
        key, t = (r["catalog"], r["products"]), int(r["week"]) - 1
        b = bounds[key]
        gain = b["coordinated"]["weekly"][t] - b["siloed-slates"]["weekly"][t]
        assert _close(r["fluid_gain"], gain) and _close(r["arrivals"], b["weekly_arrivals"][t])
        mpc, silo = sims.get((*key, "mpc")), sims.get((*key, "mpc-siloed-slates"))
        sim = None
        if mpc and silo:
            sim = float(np.mean(np.array(mpc["weekly"])[:, t] - np.array(silo["weekly"])[:, t]))
        assert _close(r["simulated_gain"], sim), key


def _num(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace("+", ""))


def _report_table(report: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the report's profit table (the one headed 'catalog')."""
    text = report.splitlines()
    heads = [line for line in text if line.startswith("| catalog |")]
    assert len(heads) == 1, "one profit table"
    start = text.index(heads[0])
    table = []
    for line in text[start + 2 :]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    return [c.strip() for c in heads[0].strip("|").split("|")], table


def test_committed_tafeng_csv_agrees_with_its_report():
    """docs/results/tafeng (the full study): each number of the report's profit table, paired
    differences and weekly totals is the CSV's, to the digits the report prints."""
    report = (COMMITTED / "report.md").read_text()
    with open(COMMITTED / "tafeng.csv", newline="") as f:
        rows = {(r["catalog"], r["products"]): r for r in csv.DictReader(f)}
    header, table = _report_table(report)
    assert {(r[0], r[1]) for r in table} == set(rows)
    methods = [LABELS[h] for h in header[4:-1]]
    for cells in table:
        row = rows[(cells[0], cells[1])]
        assert abs(_num(cells[2]) - float(row["fluid_bound"])) <= 0.5
        gains = [_num(g) for g in cells[3].split(" to ")]  # "plan% to bound%" when decomposed
        want = [float(row["fluid_gain_pct"])]
        if row["bound_method"] == "decompose":
            want.insert(0, float(row["fluid_gain_plan_pct"]))
        assert gains == pytest.approx(want, abs=0.005 + 1e-9)
        for m, text in zip(methods, cells[4:-1], strict=True):
            if text == "—":
                assert row[m] == "", (cells[:2], m)
                continue
            mean, ci, pct = re.fullmatch(r"([\d,.-]+) ± ([\d,.]+) \(([\d.]+)%\)", text).groups()
            assert abs(_num(mean) - float(row[m])) <= 0.5, (cells[:2], m)
            assert abs(_num(ci) - float(row[f"{m}_ci"])) <= 0.5, (cells[:2], m)
            assert abs(_num(pct) - float(row[f"{m}_pct_bound"])) <= 0.05 + 1e-9, (cells[:2], m)
        if cells[-1] == "—":
            assert row["coord_gain_pct"] == ""
        else:
            gain, ci = re.fullmatch(r"([+-][\d.]+)% ± ([\d.]+)%", cells[-1]).groups()
            assert abs(float(gain) - float(row["coord_gain_pct"])) <= 0.005 + 1e-9
            assert abs(float(ci) - float(row["coord_gain_ci_pct"])) <= 0.005 + 1e-9
    # paired differences against the siloed firm, as far as the CSV holds them
    for (cat, n), row in rows.items():
        for m in ("mpc", "bidprice", "best-siloed"):
            if row.get(f"{m}_vs_siloed_pct"):
                label = next(k for k, v in LABELS.items() if v == m)
                d, ci = float(row[f"{m}_vs_siloed_pct"]), float(row[f"{m}_vs_siloed_ci_pct"])
                line = next(x for x in report.splitlines() if x.startswith(f"- {cat} {n}: "))
                assert f"{label} {d:+.1f}% ± {ci:.1f}%" in line
    # the weekly totals: "fluid gain of coordination X in all" is the sum of weekly_gain.csv
    with open(COMMITTED / "weekly_gain.csv", newline="") as f:
        weekly = list(csv.DictReader(f))
    for cat, n in {(r["catalog"], r["products"]) for r in weekly}:
        total = sum(
            float(r["fluid_gain"]) for r in weekly if (r["catalog"], r["products"]) == (cat, n)
        )
        said = re.search(rf"- {cat} {n}: fluid gain of coordination ([\d,.-]+) in all", report)
        assert said is not None and abs(_num(said.group(1)) - total) <= 0.5, (cat, n)


def test_committed_tafeng_csv_holds_every_policy_of_its_report():
    report = (COMMITTED / "report.md").read_text()
    header, table = _report_table(report)
    shown = {
        LABELS[h]
        for h, c in zip(header[4:-1], zip(*[r[4:-1] for r in table], strict=True), strict=True)
        if any(x != "—" for x in c)
    }
    with open(COMMITTED / "tafeng.csv", newline="") as f:
        columns = set(next(csv.reader(f)))
    assert shown <= columns


def test_committed_tafeng_csv_is_the_one_its_cells_give():
    """The committed CSVs hold exactly the committed cells' numbers (every column included)."""
    check_tafeng_csv(COMMITTED)
