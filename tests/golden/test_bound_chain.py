"""Golden ordering on tiny instances: fluid bound >= DP optimum >= every simulated policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordopt import load_instance
from coordopt.evaluation import evaluate
from coordopt.instance import Stockout
from coordopt.simulator import SimParams
from coordopt.solvers.dp import solve_dp
from coordopt.solvers.fluid import solve_fluid


@pytest.mark.parametrize(
    "changes",
    [{}, {"stockout": Stockout.HIDDEN}, {"lead_time": np.array([2, 1])}, {"discount": 0.9}],
    ids=["tiny", "hidden", "lead2", "discount"],
)
def test_fluid_bound_dominates_dp_which_dominates_every_policy(changes):
    inst = load_instance("tiny").replace(**changes)
    bound = solve_fluid(inst).objective
    optimum = solve_dp(inst).value
    assert bound >= optimum - 1e-9
    params = SimParams.from_instance(inst, dtype=torch.float64)
    for policy in ("siloed", "fluid", "mpc", "null"):
        ev = evaluate(params, policy, episodes=400, seed=11)
        assert ev.mean - ev.ci95 <= optimum, (policy, ev.mean, ev.ci95, optimum)
    dp = evaluate(params, "dp", episodes=400, seed=11)
    assert abs(dp.mean - optimum) <= 2 * dp.ci95  # the simulator and the DP agree
