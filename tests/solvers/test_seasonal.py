"""Seasonal arrival rates (a list of T per-period values per segment) in every solver:
Pyomo against the bulk arrays, mid-horizon starts (MPC), and the value of foresight."""

from __future__ import annotations

import numpy as np
import pytest

from coordopt.evaluation import evaluate
from coordopt.generator import seasonal_profile
from coordopt.instance import Instance, load_instance
from coordopt.models.fluid import FluidStart, build_fluid_model
from coordopt.simulator import SimParams
from coordopt.solvers.fluid import BulkFluidLP, SolveStatus, solve_fluid
from coordopt.solvers.mpc import MPCPolicy


def seasonal(stockout: str = "lost") -> Instance:
    """``small`` (lead times 0..2) with arrivals swinging +-80% around their mean."""
    small = load_instance("small")
    profile = seasonal_profile(small.horizon, 0.8, 0.6)[:, None]
    inst = small.replace(arrival_rate=small.arrival_rate * profile, stockout=stockout)
    assert inst.seasonal
    return inst


@pytest.mark.parametrize("stockout", ["lost", "hidden"])
@pytest.mark.parametrize("variant", ["coordinated", "siloed-slates", "unlimited-stock"])
def test_pyomo_and_bulk_agree_on_a_seasonal_instance(stockout: str, variant: str) -> None:
    inst = seasonal(stockout)
    a = solve_fluid(inst, method="pyomo", variant=variant)
    b = solve_fluid(inst, method="bulk", variant=variant)
    assert a.status is b.status is SolveStatus.OPTIMAL
    assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)
    for sol in (a, b):  # choice balance holds with each period's own rates
        np.testing.assert_allclose(
            inst.no_purchase * sol.y + sol.x.sum(axis=2), inst.arrival_rate, atol=1e-6
        )


def test_choice_balance_rows_carry_each_periods_rate() -> None:
    inst = seasonal()
    model = build_fluid_model(inst)
    for t in (1, 12, 26):
        for k in range(inst.n_segments):
            row = model.choice_balance[t, k]
            assert row.upper() == pytest.approx(inst.arrival_rate[t - 1, k])


def test_seasonality_changes_the_bound() -> None:
    """The same mean arrivals spread evenly give another optimum, so the per-period rates
    are really used (a solver reading one rate per segment would not see the peak)."""
    inst = seasonal()
    flat = inst.replace(arrival_rate=inst.mean_arrival_rate)
    assert not flat.seasonal
    assert abs(solve_fluid(inst).objective - solve_fluid(flat).objective) > 1e-3


def test_mid_horizon_starts_see_the_remaining_periods() -> None:
    """MPC's path (a full-horizon LP moved by bounds) equals a Pyomo model built from t0."""
    inst = seasonal()
    n = inst.n_products
    start = FluidStart(9, np.arange(n, dtype=float), np.tile([[2.0, 1.0]], (n, 1)))
    a = solve_fluid(inst, method="pyomo", start=start)
    lp = BulkFluidLP(inst)
    lp.solve()
    lp.set_state(start)
    b = lp.solve()
    assert a.objective == pytest.approx(b.objective, rel=1e-8)
    np.testing.assert_allclose(
        inst.no_purchase * a.y + a.x.sum(axis=2), inst.arrival_rate[9:], atol=1e-6
    )


def test_mpc_plans_from_the_state_with_period_rates() -> None:
    inst = seasonal()
    params = SimParams.from_instance(inst)
    policy = MPCPolicy(params)
    n = inst.n_products
    on_hand, pipeline = np.full(n, 3.0), np.zeros((n, 2))
    plan = policy.plan(2, on_hand, pipeline)
    direct = solve_fluid(inst, method="pyomo", start=FluidStart(2, on_hand, pipeline))
    assert plan.objective == pytest.approx(direct.objective, rel=1e-8)
    ev = evaluate(params, policy, episodes=4, seed=0)
    assert np.isfinite(ev.mean)


def test_bundled_instances_are_not_seasonal() -> None:
    for name in ("tiny", "small"):
        inst = load_instance(name)
        assert not inst.seasonal and inst.arrival_rate.shape == (inst.horizon, inst.n_segments)
