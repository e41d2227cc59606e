"""Synchronised-adjustment insights: metrics on constructed data, real sources, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coordopt import insights as I
from coordopt.cli import main
from coordopt.insights.report import metric_cell
from coordopt.instance import load_instance
from coordopt.solution import Plan


def _data(
    intensity,
    available,
    orders=None,
    arrivals=None,
    *,
    n=None,
    sim=None,
    lead=None,
    simulated=False,
):
    """InsightData from (T,E,M,N) intensity and (T,E,N) arrays, unit base demand."""
    intensity = np.asarray(intensity, dtype=float)
    t, e, m, n = intensity.shape
    zeros = np.zeros((t, e, n))
    return I.InsightData(
        "test",
        intensity,
        np.asarray(available, dtype=float),
        zeros if orders is None else np.asarray(orders, dtype=float),
        zeros if arrivals is None else np.asarray(arrivals, dtype=float),
        base_demand=np.ones((t, n)),
        weights=np.ones((t, m)),
        lead_time=np.zeros(n, dtype=int) if lead is None else lead,
        similarity=np.zeros((n, n)) if sim is None else sim,
        simulated=simulated,
    )


def test_intensity_cover_sign_follows_the_data():
    cover = np.tile(np.arange(5.0), (4, 1, 1))  # (T,E,N)
    push = _data((cover / 4.0)[:, :, None, :], cover)
    against = _data((1 - cover / 4.0)[:, :, None, :], cover)
    assert I.intensity_cover_corr(push) == pytest.approx(1.0)
    assert I.intensity_cover_corr(against) == pytest.approx(-1.0)


def test_intensity_orders_uses_the_arrival_period():
    t, n = 6, 5
    orders = np.zeros((t, 1, n))
    orders[0, 0] = np.arange(n)  # ordered in period 0, arrives in period 2 (lead 2)
    inten = np.zeros((t, 1, 1, n))
    inten[2, 0, 0] = np.arange(n) / n
    d = _data(inten, np.ones((t, 1, n)), orders=orders, lead=np.full(n, 2))
    assert I.intensity_orders_corr(d) == pytest.approx(1.0)


def test_post_arrival_lift_and_order_drop():
    t, n = 8, 3
    arr = np.zeros((t, 1, n))
    arr[4, 0, :] = 10.0
    inten = np.zeros((t, 1, 1, n))
    inten[4:, 0, 0, :] = 0.8  # recommended once the stock arrives
    orders = np.ones((t, 1, n))
    orders[-1] = 0.0
    d = _data(inten, np.ones((t, 1, n)), orders=orders, arrivals=arr)
    assert I.post_arrival_lift(d) == pytest.approx(0.8)
    assert I.end_order_drop(d) > 0
    flat = _data(
        np.full((t, 1, 1, n), 0.5), np.ones((t, 1, n)), orders=np.ones((t, 1, n)), arrivals=arr
    )
    assert I.post_arrival_lift(flat) == pytest.approx(0.0)
    assert I.end_order_drop(flat) == pytest.approx(0.0)


def test_substitution_goes_to_the_closest_substitute():
    t, n = 6, 6
    sim = np.zeros((n, n))
    sim[0, 1] = sim[1, 0] = 0.9  # product 1 is 0's closest substitute
    for j in range(2, n):
        sim[0, j] = sim[j, 0] = 0.1
    inten = np.zeros((t, 1, 1, n))
    inten[:, 0, 0, 0] = 1.0
    avail = np.full((t, 1, n), 5.0)
    avail[3:, 0, 0] = 0.0  # product 0 runs out at period 3
    inten[3:, 0, 0, 0] = 0.0
    inten[3:, 0, 0, 1] = 1.0  # and its slot goes to product 1
    d = _data(inten, avail, sim=sim)
    share, excess = I.substitute_excess(d, n_substitutes=1)
    assert share == pytest.approx(1.0)
    assert excess == pytest.approx(1.0 - 1 / (n - 1))
    wrong = inten.copy()
    wrong[3:, 0, 0, 1] = 0.0
    wrong[3:, 0, 0, 4] = 1.0
    assert I.substitute_excess(_data(wrong, avail, sim=sim), n_substitutes=1)[1] < 0


def test_end_cover_ratio_rewards_recommending_stocked_products():
    t, n = 6, 4
    cover = np.tile(np.array([0.0, 1.0, 2.0, 3.0]), (t, 1, 1))
    onto_stock = np.zeros((t, 1, 1, n))
    onto_stock[..., 3] = 1.0
    onto_empty = np.zeros((t, 1, 1, n))
    onto_empty[..., 0] = 1.0
    assert I.end_weighted_cover(_data(onto_stock, cover)) == pytest.approx(2.0)
    assert I.end_weighted_cover(_data(onto_empty, cover)) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def small():
    inst = load_instance("small")
    return inst, I.simulate(inst, "siloed", episodes=16, seed=0)


def test_trajectory_representation(small):
    inst, sil = small
    t, e = inst.horizon, 16
    assert sil.intensity.shape == (t, e, inst.n_segments, inst.n_products)
    assert set(np.unique(sil.intensity)) <= {0.0, 1.0}
    assert (sil.intensity.sum(axis=3) <= inst.slate_size).all()
    assert (sil.arrivals >= 0).all() and (sil.available >= sil.arrivals - 1e-9).all()
    # siloed slates are static: the intensity never moves with stock
    assert np.ptp(sil.intensity, axis=(0, 1)).max() == 0.0


def test_metrics_have_bootstrap_intervals_for_simulations(small):
    _, sil = small
    res = I.insight_metrics(sil, baseline=sil, n_boot=40, seed=1)
    m = res["metrics"]
    assert set(m) == set(I.PATTERNS)
    assert m["post_arrival_lift"]["value"] == pytest.approx(0.0)  # static slates
    # identical episodes: nothing to resample, so the interval collapses onto the value
    same = I.insight_metrics(sil.take(np.zeros(16, dtype=int)), n_boot=40, seed=1)["metrics"]
    value = same["end_order_drop"]["value"]
    assert same["end_order_drop"]["ci"] == (pytest.approx(value), pytest.approx(value))
    # four times the episodes: about half the width (the 1/sqrt(E) law of a mean)
    inst = load_instance("small")
    many = I.simulate(inst, "siloed", episodes=64, seed=5)
    few = many.take(np.arange(16))
    widths = []
    for d in (few, many):
        lo, hi = I.insight_metrics(d, n_boot=200, seed=2)["metrics"]["end_order_drop"]["ci"]
        widths.append(hi - lo)
    assert widths[1] > 0 and 1.4 < widths[0] / widths[1] < 3.3, widths


def test_fluid_plan_metrics_and_alignment(small):
    inst, sil = small
    fluid = I.fluid_plan(inst)
    assert fluid.intensity.shape == (inst.horizon, 1, inst.n_segments, inst.n_products)
    res = I.insight_metrics(fluid, baseline=sil)
    m = res["metrics"]
    assert all(v["ci"] is None for v in m.values())  # a plan is not a sample
    assert m["end_order_drop"]["value"] > 0  # the fluid plan stops ordering near the end
    assert m["intensity_orders_corr"]["sign_ok"] is True
    same = I.alignment_score(fluid, fluid)
    assert same["intensity_corr"] == pytest.approx(1.0) and same["orders_rel_l1"] == 0.0
    versus = I.alignment_score(sil, fluid)
    assert versus["intensity_corr"] < 0.999 and versus["orders_rel_l1"] > 0.0
    conf = I.confirmations(I.insight_metrics(sil, n_boot=0), res)
    assert conf["end_order_drop"]["optimal"] is True


def test_from_plan_reads_the_contract_plan():
    inst = load_instance("tiny")
    t, n, m = inst.horizon, inst.n_products, inst.n_segments
    tn, tmn = np.zeros((t, n)), np.zeros((t, m, n))
    plan = Plan(
        orders=np.ones((t, n)),
        alpha=tmn,
        beta=tmn,
        x=tmn,
        y=np.zeros((t, m)),
        rec_frequency=np.full((t, m, n), 0.5),
        sales=tn,
        lost=tn,
        inventory=tn,
        inventory_price=tn,
    )
    d = I.from_plan(inst, plan)
    assert d.available[0, 0].tolist() == (inst.initial_inventory + (inst.lead_time == 0)).tolist()
    assert not d.simulated and math.isclose(float(d.product_intensity.max()), 0.5)


def test_cli_writes_plots_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "ins"
    rc = main(
        [
            "insights",
            "tiny",
            "--method",
            "siloed",
            "--episodes",
            "8",
            "--bootstrap",
            "10",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    # tiny fits the exact DP, so the DP is the optimum the patterns are confirmed against
    assert summary["method"] == "siloed" and summary["optimal_reference"] == "dp"
    inst = load_instance("tiny")
    baseline = I.simulate(inst, "siloed", 8, 0)
    dp = I.insight_metrics(I.simulate(inst, "dp", 8, 0), baseline=baseline, n_boot=0)
    siloed = I.insight_metrics(baseline, baseline=baseline, n_boot=0)
    for k in I.PATTERNS:
        assert summary["confirmations"][k]["optimal"] == dp["metrics"][k]["sign_ok"], k
        assert summary["confirmations"][k]["measured"] == siloed["metrics"][k]["sign_ok"], k
    for name in ("intensity_vs_cover.png", "timeline.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((out / "insights.json").read_text())
    assert written["instance"] == "tiny" and written["results"] == summary["results"]
    # every cell of the Markdown table is the number in the JSON results
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:-1]]
        for line in (out / "insights.md").read_text().splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in I.PATTERNS
    }
    assert set(rows) == set(I.PATTERNS)
    for k, cells in rows.items():
        assert cells == [metric_cell(r["metrics"][k]) for r in summary["results"]], k
    for k in I.PATTERNS:  # the measured column is the siloed policy's own metrics
        got, want = summary["results"][0]["metrics"][k]["value"], siloed["metrics"][k]["value"]
        assert (got is None and math.isnan(want)) or got == pytest.approx(want), k
    assert any(v["value"] is not None for v in summary["results"][0]["metrics"].values())
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_fluid_plan_at_catalog_scale_is_the_catalog_solvers_plan(small, monkeypatch):
    from coordopt.insights import data

    inst, sil = small
    exact = I.fluid_plan(inst)
    monkeypatch.setattr(data, "FULL_LP_CELLS", 100)
    plan = I.fluid_plan(inst)
    assert plan.intensity.shape == exact.intensity.shape
    m = I.insight_metrics(plan, baseline=sil)["metrics"]
    assert m["end_order_drop"]["value"] > 0  # the same run-down pattern as the exact plan
    assert I.alignment_score(plan, exact)["intensity_corr"] > 0.9
