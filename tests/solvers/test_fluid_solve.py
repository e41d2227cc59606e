"""Fluid solves: Pyomo and bulk paths agree, solutions satisfy the program, statuses are
read from the solver, the MILP sits below its relaxation, and the CLI reports it all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coordopt.generator import generate_instance
from coordopt.instance import Instance, Stockout, load_instance
from coordopt.models.fluid import FluidStart
from coordopt.solvers.fluid import (
    BulkFluidLP,
    FluidSolution,
    SolveError,
    SolveStatus,
    solve_fluid,
)

TOL = 1e-6


@pytest.fixture(scope="module")
def tiny() -> Instance:
    return load_instance("tiny")


@pytest.fixture(scope="module")
def small() -> Instance:
    return load_instance("small")


def generated(stockout: str) -> Instance:
    inst = generate_instance(
        n_products=5,
        n_segments=3,
        horizon=6,
        slate_size=2,
        max_lead_time=2,
        seed=11,
        mean_arrivals=12.0,
    )
    assert set(inst.lead_time.tolist()) >= {0, 2}, "want lead times spanning 0..2"
    return inst.replace(stockout=Stockout(stockout))


def check_solution(inst: Instance, sol: FluidSolution, start: FluidStart | None = None) -> None:
    """Every constraint family of the fluid program holds on the returned arrays."""
    k = inst.effective_slate_size
    # choice balance and consistency of x
    np.testing.assert_allclose(
        inst.no_purchase * sol.y + sol.x.sum(axis=2),
        np.broadcast_to(inst.arrival_rate, (inst.horizon, inst.n_segments))[sol.t0 :],
        atol=TOL,
    )
    np.testing.assert_allclose(
        sol.x, inst.rec_attraction * sol.alpha + inst.base_attraction * sol.beta, atol=TOL
    )
    offered = sol.alpha + sol.beta
    assert (offered <= sol.y[..., None] + TOL).all()
    if inst.stockout is Stockout.LOST:
        np.testing.assert_allclose(
            offered, np.broadcast_to(sol.y[..., None], offered.shape), atol=TOL
        )
    assert (sol.alpha.sum(axis=2) <= k * sol.y + TOL).all()
    assert (sol.rec_frequency.sum(axis=2) <= k + TOL).all()
    # demand split and inventory flow with lead times
    np.testing.assert_allclose(sol.sales + sol.lost, sol.x.sum(axis=1), atol=TOL)
    h, n = sol.orders.shape
    t0 = 0 if start is None else start.t0
    prev = inst.initial_inventory.astype(float) if start is None else start.on_hand
    for t in range(h):
        arrivals = np.zeros(n)
        if start is not None and t < start.pipeline.shape[1]:
            arrivals += start.pipeline[:, t]
        for i in range(n):
            lag = t - inst.lead_time[i]
            if lag >= 0:
                arrivals[i] += sol.orders[lag, i]
        np.testing.assert_allclose(sol.inventory[t], prev + arrivals - sol.sales[t], atol=1e-5)
        if inst.warehouse_capacity is not None:
            assert (prev + arrivals).sum() <= inst.warehouse_capacity + 1e-5
        prev = sol.inventory[t]
    assert (sol.orders <= inst.max_order + TOL).all()
    assert sol.t0 == t0


@pytest.mark.parametrize("name", ["tiny", "small", "gen-lost", "gen-hidden"])
def test_pyomo_and_bulk_paths_agree(name: str) -> None:
    inst = generated(name[4:]) if name.startswith("gen") else load_instance(name)
    a = solve_fluid(inst, method="pyomo")
    b = solve_fluid(inst, method="bulk")
    assert a.status is b.status is SolveStatus.OPTIMAL
    assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)
    np.testing.assert_allclose(a.inventory_price, b.inventory_price, atol=1e-5)
    for sol in (a, b):
        check_solution(inst, sol)


@pytest.mark.parametrize("stockout", ["lost", "hidden"])
def test_paths_agree_with_capacity_fixed_costs_and_variants(stockout: str) -> None:
    base = generated(stockout)
    inst = base.replace(
        warehouse_capacity=float(base.initial_inventory.sum() + 15),
        fixed_order_cost=np.full(base.n_products, 2.0),
    )
    for variant in ("coordinated", "siloed-slates", "unlimited-stock"):
        a = solve_fluid(inst, method="pyomo", variant=variant)
        b = solve_fluid(inst, method="bulk", variant=variant)
        assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6), variant
        if variant != "unlimited-stock":
            check_solution(inst, b)


def test_coordination_is_worth_at_least_the_siloed_plan(small: Instance) -> None:
    """Fixing the slates restricts the coordinated program, so it cannot do better."""
    coord = solve_fluid(small, variant="coordinated")
    siloed = solve_fluid(small, variant="siloed-slates")
    assert siloed.objective <= coord.objective + 1e-6
    freq = siloed.rec_frequency[siloed.y > 1e-9]
    assert np.all((freq < 1e-7) | (freq > 1 - 1e-7))  # static slates: shown always or never


def test_mid_horizon_start_paths_agree_and_masked_model_matches(small: Instance) -> None:
    n = small.n_products
    start = FluidStart(7, np.arange(n, dtype=float), np.tile([[2.0, 1.0]], (n, 1)))
    a = solve_fluid(small, method="pyomo", start=start)
    b = solve_fluid(small, method="bulk", start=start)
    assert a.objective == pytest.approx(b.objective, rel=1e-8)
    assert a.orders.shape == (small.horizon - 7, n)
    check_solution(small, a, start)
    lp = BulkFluidLP(small)  # full horizon, moved to the state by bounds only
    first = lp.solve()
    lp.set_state(start)
    c = lp.solve()
    assert c.objective == pytest.approx(a.objective, rel=1e-8)
    np.testing.assert_allclose(c.inventory_price, a.inventory_price, atol=1e-5)
    lp.set_state(FluidStart(0, small.initial_inventory, np.zeros((n, 2))))
    assert lp.solve().objective == pytest.approx(first.objective, rel=1e-9)


def test_inventory_price_is_the_marginal_value_of_stock(small: Instance) -> None:
    sol = solve_fluid(small)
    bumped = small.replace(
        initial_inventory=small.initial_inventory + np.eye(small.n_products, dtype=int)[3]
    )
    gain = solve_fluid(bumped).objective - sol.objective
    # one unit is within the basis' range here (check both one-sided limits)
    assert gain == pytest.approx(sol.inventory_price[0, 3], rel=1e-6)


def test_milp_lies_below_its_relaxation(tiny: Instance) -> None:
    inst = tiny.replace(fixed_order_cost=[4.0, 3.0])
    relaxed = solve_fluid(inst)
    milp = solve_fluid(inst, integer_orders=True)
    integral = solve_fluid(inst, integer_orders=True, integer_quantities=True)
    assert milp.status is SolveStatus.OPTIMAL and np.isnan(milp.inventory_price).all()
    assert relaxed.objective >= milp.objective - 1e-6 >= integral.objective - 2e-6
    assert relaxed.objective > milp.objective + 1e-3  # fixed costs make the relaxation loose
    np.testing.assert_allclose(integral.orders, np.round(integral.orders), atol=1e-6)
    check_solution(inst, integral)
    # the Pyomo MILP agrees up to HiGHS's default relative gap
    assert solve_fluid(inst, method="pyomo", integer_orders=True).objective == pytest.approx(
        milp.objective, rel=2e-4
    )


@pytest.mark.parametrize("method", ["bulk", "pyomo"])
def test_infeasible_and_unbounded_are_reported(tiny: Instance, method: str) -> None:
    crowded = tiny.replace(warehouse_capacity=1.0)  # below the initial inventory of 2
    with pytest.raises(SolveError, match="infeasible") as info:
        solve_fluid(crowded, method=method)
    assert info.value.status is SolveStatus.INFEASIBLE
    sol = solve_fluid(crowded, method=method, raise_on_failure=False)
    assert sol.status is SolveStatus.INFEASIBLE and not sol.has_solution
    assert np.isnan(sol.orders).all() and "warehouse_capacity" in sol.message
    # salvage above cost and no order cap: buying to salvage pays without limit
    profitable = tiny.replace(salvage_value=[7.0, 1.0], max_order=[np.inf, 6])
    sol = solve_fluid(profitable, method=method, raise_on_failure=False)
    assert sol.status is SolveStatus.UNBOUNDED and "salvage_value" in sol.message


@pytest.mark.parametrize("method", ["bulk", "pyomo"])
def test_time_limit_is_reported(tiny: Instance, method: str) -> None:
    inst = tiny.replace(fixed_order_cost=[4.0, 3.0])
    sol = solve_fluid(
        inst, method=method, integer_orders=True, time_limit=0.0, raise_on_failure=False
    )
    assert sol.status is SolveStatus.TIME_LIMIT
    with pytest.raises(SolveError) as info:
        solve_fluid(inst, method=method, integer_orders=True, time_limit=0.0)
    assert info.value.status is SolveStatus.TIME_LIMIT


def test_warm_start_from_a_previous_basis(small: Instance) -> None:
    cold = solve_fluid(small)
    warm = solve_fluid(small, warm_start=cold, algorithm="simplex")
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)


def test_bad_method_is_refused(tiny: Instance) -> None:
    with pytest.raises(ValueError, match="method"):
        solve_fluid(tiny, method="gurobi")


def test_cli_solve_fluid_json(tiny: Instance, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from coordopt.cli import main

    out = tmp_path / "plan.npz"
    assert main(["solve", "tiny", "--method", "fluid", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("method", "status", "objective", "seconds", "first_orders", "first_slates"):
        assert key in result
    assert result["method"] == "fluid" and result["status"] == "optimal"
    sol = solve_fluid(tiny)
    assert result["objective"] == pytest.approx(sol.objective, rel=1e-9)
    assert len(result["first_orders"]) == tiny.n_products
    assert len(result["first_slates"]) == tiny.n_segments
    assert all(len(s) <= tiny.slate_size for s in result["first_slates"])
    with np.load(out) as z:
        np.testing.assert_allclose(z["orders"], sol.orders, atol=1e-7)


def test_cli_reports_infeasible_status(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from coordopt.cli import main
    from coordopt.instance import save_instance

    path = save_instance(load_instance("tiny").replace(warehouse_capacity=1.0), tmp_path / "c.toml")
    assert main(["solve", str(path), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "infeasible" and result["objective"] is None


@pytest.mark.parametrize("method", ["bulk", "pyomo"])
@pytest.mark.parametrize(
    "kind",
    [{"integer_orders": True}, {"integer_quantities": True}, {"fixed_order_cost": [1.0, 1.0]}],
)
def test_milp_and_fixed_costs_report_unbounded_as_the_lp_does(
    tiny: Instance, method: str, kind: dict
) -> None:
    # the order indicators' big-M caps must not turn an unbounded program into an "optimum"
    profitable = tiny.replace(salvage_value=[7.0, 1.0], max_order=[np.inf, 6])
    flags = {k: v for k, v in kind.items() if k != "fixed_order_cost"}
    if "fixed_order_cost" in kind:
        profitable = profitable.replace(fixed_order_cost=kind["fixed_order_cost"])
    sol = solve_fluid(profitable, method=method, raise_on_failure=False, **flags)
    assert sol.status is SolveStatus.UNBOUNDED and not sol.has_solution
    assert "salvage_value" in sol.message
    # the same MILP with salvage below cost still solves, below its relaxation
    bounded = profitable.replace(salvage_value=[2.0, 1.0])
    milp = solve_fluid(bounded, method=method, **flags)
    assert milp.status is SolveStatus.OPTIMAL
    assert solve_fluid(bounded, method=method).objective >= milp.objective - 1e-6
