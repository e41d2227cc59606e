"""The shared solution contract: every solver reports the same shape with one status enum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coordopt.instance import load_instance
from coordopt.solution import PLAN_AXES, Solution, SolveStatus, slates_from_frequency
from coordopt.solvers.catalog import solve_catalog
from coordopt.solvers.dp import solve_dp
from coordopt.solvers.fluid import solve_fluid


def _check_shape(sol: Solution, n_products: int, n_segments: int) -> None:
    assert isinstance(sol.status, SolveStatus)
    assert sol.first_orders.shape == (n_products,)
    assert len(sol.first_slates) == n_segments
    assert all(isinstance(i, int) for s in sol.first_slates for i in s)
    if sol.plan is not None:
        for name, axes in PLAN_AXES.items():
            assert getattr(sol.plan, name).ndim == len(axes), name


def test_fluid_lp_result_is_exact_and_its_own_bound():
    inst = load_instance("small")
    raw = solve_fluid(inst)
    sol = raw.result()
    _check_shape(sol, inst.n_products, inst.n_segments)
    assert sol.status is SolveStatus.OPTIMAL and sol.method == "fluid"
    assert sol.objective == sol.bound == sol.plan_value == raw.objective
    assert sol.gap == 0.0
    assert sol.plan is not None
    np.testing.assert_array_equal(sol.plan.orders, raw.orders)
    np.testing.assert_array_equal(sol.first_orders, raw.orders[0])
    # the first slates are the K most frequent first-period products of each segment
    k = inst.effective_slate_size
    for row, slate in zip(raw.rec_frequency[0], sol.first_slates, strict=True):
        assert len(slate) <= k
        assert all(row[i] > 1e-9 for i in slate)
        rest = [row[i] for i in range(inst.n_products) if i not in slate]
        if len(slate) == k and rest:
            assert min(row[i] for i in slate) >= max(rest)


def test_milp_result_bounds_its_incumbent():
    inst = load_instance("tiny")
    sol = solve_fluid(inst, integer_orders=True).result()
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.plan_value == sol.objective
    assert sol.bound is not None and sol.bound >= sol.objective - 1e-6 * abs(sol.objective)
    lp = solve_fluid(inst).result()
    assert sol.objective <= lp.objective + 1e-7  # the MILP restricts the LP
    assert np.isnan(sol.plan.inventory_price).all()  # type: ignore[union-attr]


def test_failed_fluid_result_has_no_solution():
    inst = load_instance("tiny")
    profitable = inst.replace(salvage_value=[7.0, 1.0], max_order=[np.inf, 6])
    bad = solve_fluid(profitable, raise_on_failure=False).result()
    assert bad.status is SolveStatus.UNBOUNDED and not bad.has_solution
    assert bad.bound is None and bad.plan_value is None and bad.gap is None and bad.plan is None
    assert bad.first_slates == [] and np.isnan(bad.first_orders).all()


def test_dp_result_exact_and_restricted():
    inst = load_instance("tiny")
    raw = solve_dp(inst)
    sol = raw.result()
    _check_shape(sol, inst.n_products, inst.n_segments)
    assert sol.status is SolveStatus.OPTIMAL and sol.method == "dp" and sol.plan is None
    assert sol.objective == sol.bound == sol.plan_value == raw.value
    assert sol.first_slates == [[int(i) for i in r if i >= 0] for r in raw.first_slates]
    restricted = solve_dp(inst, inventory_cap=[int(x) for x in inst.initial_inventory]).result()
    assert restricted.status is SolveStatus.OPTIMAL_RESTRICTED
    assert restricted.bound is None  # a restricted optimum is a lower bound only
    assert restricted.objective <= sol.objective + 1e-9
    assert "restricted" in restricted.message


def test_decomposition_result_is_a_plan_under_its_bound():
    inst = load_instance("small")
    sol = solve_catalog(inst, max_iterations=3).result()
    _check_shape(sol, inst.n_products, inst.n_segments)
    assert sol.method == "decompose"
    assert sol.bound is not None and sol.plan_value is not None
    assert sol.objective == sol.bound >= sol.plan_value - 1e-6
    assert sol.status is SolveStatus.TIME_LIMIT  # the iteration limit stopped it
    assert sol.details["iterations"] == 3 and sol.details["residual"] < 1e-7
    # the fluid optimum lies between the plan and the bound
    opt = solve_fluid(inst).objective
    assert sol.plan_value - 1e-6 <= opt <= sol.bound + 1e-6
    done = solve_catalog(inst, gap=0.5).result()
    assert done.status is SolveStatus.FEASIBLE and "gap" in done.message


def test_slates_from_frequency_orders_and_cuts():
    freq = np.array([[0.2, 0.9, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    assert slates_from_frequency(freq, 2) == [[1, 3], []]
    assert slates_from_frequency(freq, 5) == [[1, 3, 0], []]
    assert slates_from_frequency(np.full((1, 2), math.nan), 1) == []


@pytest.mark.parametrize("status", list(SolveStatus))
def test_statuses_are_plain_strings(status):
    assert status == status.value and isinstance(status.value, str)
