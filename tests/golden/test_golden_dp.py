"""Golden instances for the exact DP: closed forms, enumeration, and the simulator's verdict."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from coordopt.evaluation import evaluate
from coordopt.instance import instance_from_dict, load_instance
from coordopt.simulator import SimParams
from coordopt.solvers.dp import DPPolicy, solve_dp


def _product(**fields):
    base = {"name": "P", "price": 1.0, "unit_cost": 0.0}
    base.update(fields)
    return base


# --------------------------------------------------------------------------- newsvendor


def test_one_period_newsvendor_critical_fractile_and_profit():
    p, c, b, h, v = 10.0, 4.0, 1.0, 0.5, 1.5
    lam, w, w0 = 8.0, 3.0, 1.0
    inst = instance_from_dict(
        {
            "name": "newsvendor",
            "horizon": 1,
            "product": [
                _product(
                    price=p,
                    unit_cost=c,
                    lost_sale_penalty=b,
                    holding_cost=h,
                    salvage_value=v,
                    max_order=30,
                )
            ],
            "segment": [{"arrival_rate": lam, "base_attraction": [w], "no_purchase": w0}],
        }
    )
    mu = lam * w / (w0 + w)  # 6
    # underage p - c + b, overage c + h - v (end stock pays h and is salvaged at v)
    ratio = (p - c + b) / ((p - c + b) + (c + h - v))
    q_star = int(stats.poisson.ppf(ratio, mu))
    cdf = stats.poisson.cdf
    assert cdf(q_star, mu) > ratio + 1e-6 and cdf(q_star - 1, mu) < ratio - 1e-6  # no tie
    sales = mu * cdf(q_star - 2, mu) + q_star * (1 - cdf(q_star - 1, mu))  # E[min(D, q)]
    profit = p * sales - c * q_star - h * (q_star - sales) - b * (mu - sales) + v * (q_star - sales)
    sol = solve_dp(inst)
    assert sol.status == "optimal"
    assert int(sol.first_orders[0]) == q_star
    assert sol.value == pytest.approx(profit, rel=1e-12)


# --------------------------------------------------------------------------- best slate


def test_ample_stock_one_period_picks_the_enumerated_best_slates():
    prices = [12.0, 8.0, 5.0]
    lam = [4.0, 3.0]
    base = [[0.3, 0.8, 1.2], [0.2, 0.5, 0.9]]
    rec = [[1.0, 1.3, 2.5], [0.25, 0.55, 2.4]]
    w0 = [1.0, 1.5]
    inst = instance_from_dict(
        {
            "name": "slates",
            "horizon": 1,
            "slate_size": 2,
            "product": [
                _product(name=f"P{i}", price=prices[i], initial_inventory=25, max_order=0)
                for i in range(3)
            ],
            "segment": [
                {
                    "arrival_rate": lam[k],
                    "base_attraction": base[k],
                    "rec_attraction": rec[k],
                    "no_purchase": w0[k],
                }
                for k in range(2)
            ],
        }
    )
    best_sets, best_value = [], 0.0
    for k in range(2):
        scored = []
        for size in range(3):
            for s in itertools.combinations(range(3), size):
                w = [rec[k][i] if i in s else base[k][i] for i in range(3)]
                rev = lam[k] * sum(prices[i] * w[i] for i in range(3)) / (w0[k] + sum(w))
                scored.append((rev, set(s)))
        scored.sort(key=lambda r: -r[0])
        assert scored[0][0] > scored[1][0] + 1e-6  # a unique best slate
        best_sets.append(scored[0][1])
        best_value += scored[0][0]
    sol = solve_dp(inst)
    got = [set(int(i) for i in row if i >= 0) for row in sol.first_slates]
    assert got == best_sets
    # sales = demand up to a stock-out probability of ~1e-17
    assert sol.value == pytest.approx(best_value, rel=1e-12)


# --------------------------------------------------------------------------- DP vs simulator

VARIANTS = {
    "tiny": {},
    "tiny_hidden": {"stockout": "hidden"},
    "tiny_lead2": {"lead_time": [2, 0]},
    "tiny_seasonal": {"arrival_rate": np.array([[1.0, 1.5, 2.0, 4.0, 6.0, 5.0, 2.0, 1.0]]).T},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_simulated_dp_matches_its_value_and_beats_siloed(variant):
    inst = load_instance("tiny")
    if VARIANTS[variant]:
        inst = inst.replace(**VARIANTS[variant])
    params = SimParams.from_instance(inst)
    policy = DPPolicy(params)
    sol = policy.solution
    assert sol.status == "optimal"
    dp = evaluate(params, policy, episodes=2000, seed=0)
    siloed = evaluate(params, "siloed", episodes=2000, seed=0)
    # DP and simulator semantics agree: the simulated mean covers the computed value
    # (2 half-widths ~ 4 standard errors; the streams are seeded, so this is deterministic).
    assert abs(dp.mean - sol.value) <= 2 * dp.ci95, (dp.mean, dp.ci95, sol.value)
    assert sol.value >= siloed.mean - siloed.ci95
    assert np.mean(dp.profit - siloed.profit) > 0


def test_evaluate_by_name_runs_the_dp_on_tiny():
    ev = evaluate(load_instance("tiny"), "dp", episodes=64, seed=1)
    assert ev.policy == "dp" and ev.episodes == 64 and np.isfinite(ev.mean)
