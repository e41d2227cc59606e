"""Evaluation with common random numbers."""

from __future__ import annotations

import numpy as np
import pytest

from coordopt import load_instance
from coordopt.evaluation import ci_halfwidth, compare, evaluate, rollout
from coordopt.policies import SiloedPolicy
from coordopt.simulator import SimParams


def test_same_seed_same_result_different_seed_different():
    inst = load_instance("small")
    a = evaluate(inst, "siloed", episodes=20, seed=3)
    b = evaluate(inst, "siloed", episodes=20, seed=3)
    c = evaluate(inst, "siloed", episodes=20, seed=4)
    np.testing.assert_array_equal(a.profit, b.profit)
    assert not np.array_equal(a.profit, c.profit)


def test_common_random_numbers_tighten_the_paired_difference():
    inst = load_instance("small")
    sil = evaluate(inst, "siloed", episodes=60, seed=1, batch_size=20)
    null = evaluate(inst, "null", episodes=60, seed=1, batch_size=20)
    indep = evaluate(inst, "null", episodes=60, seed=2, batch_size=20)
    paired = compare(sil, null)
    assert paired["mean"] > 0
    # The customers are shared: the paired interval is tighter than that of independent streams.
    unpaired = ci_halfwidth(sil.profit - indep.profit)
    assert paired["ci95"] < unpaired
    with pytest.raises(ValueError, match="same seed"):
        compare(sil, indep)


def test_summary_terms_add_up_to_profit():
    ev = evaluate(load_instance("tiny"), "siloed", episodes=50, seed=0)
    s = ev.summary()
    t = s["terms"]
    total = (
        t["revenue"] - t["ordering_cost"] - t["holding_cost"] - t["lost_sale_cost"] + t["salvage"]
    )
    assert total == pytest.approx(s["mean"], rel=1e-9)
    assert 0 <= s["fill_rate"] <= 1 and s["ci95"] > 0
    assert {"policy", "episodes", "mean", "ci95"} <= set(s)


def test_recorded_trajectory_is_consistent():
    params = SimParams.from_instance(load_instance("small"))
    stats = rollout(params, SiloedPolicy(params), batch_size=4, seed=0, record=True)
    tr = stats.trajectory
    assert tr is not None and tr.sales.shape == (26, 4, 10)
    np.testing.assert_allclose(tr.sales.sum((0, 2)), stats.sales)
    np.testing.assert_allclose(tr.reward.sum(0), stats.profit, rtol=1e-5)
