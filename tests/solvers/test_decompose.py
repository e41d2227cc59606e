"""Block decomposition of the fluid program: blocks, Lagrangian bound, assembled plan."""

from __future__ import annotations

import numpy as np
import pytest

from coordopt.generator import generate_instance
from coordopt.models.fluid import fluid_data
from coordopt.solvers import decompose as D
from coordopt.solvers.highs_bulk import assemble_fluid_lp

REL = 1e-6


@pytest.fixture(scope="module")
def case():
    inst = generate_instance(n_products=60, n_segments=8, horizon=6, slate_size=3, seed=1)
    full, duals = D.solve_full_lp(inst)
    blocks = D.product_blocks(inst, max_block_size=15, seed=0)
    programs = [D.BlockProgram(inst, b) for b in blocks]
    return inst, full, duals, blocks, programs


def test_blocks_partition_the_catalog_within_the_cap(case):
    inst, _, _, blocks, _ = case
    allp = np.sort(np.concatenate(blocks))
    assert np.array_equal(allp, np.arange(inst.n_products))
    assert max(len(b) for b in blocks) <= 15
    assert len(blocks) >= 4


def test_blocks_are_deterministic_and_group_similar_products(case):
    inst, _, _, blocks, _ = case
    again = D.product_blocks(inst, max_block_size=15, seed=0)
    assert [b.tolist() for b in again] == [b.tolist() for b in blocks]
    prof = np.sqrt(D.demand_profiles(inst))
    unit = prof / np.linalg.norm(prof, axis=1, keepdims=True)
    sim = unit @ unit.T
    owner = np.empty(inst.n_products, dtype=int)
    for j, b in enumerate(blocks):
        owner[b] = j
    same = owner[:, None] == owner[None, :]
    np.fill_diagonal(same, False)
    other = ~same
    np.fill_diagonal(other, False)
    assert sim[same].mean() > sim[other].mean()


def test_split_respects_small_caps():
    inst = generate_instance(n_products=30, n_segments=4, horizon=3, seed=2)
    blocks = D.product_blocks(inst, max_block_size=3, min_block_size=1)
    assert max(len(b) for b in blocks) <= 3
    assert np.array_equal(np.sort(np.concatenate(blocks)), np.arange(30))


def test_full_optimum_is_feasible_and_reassembles(case):
    inst, full, _, _, _ = case
    assert max(D.plan_residuals(inst, full).values()) < 1e-7
    again = D.assemble_plan(inst, full.rec_frequency)
    assert again.objective == pytest.approx(full.objective, rel=REL)


def test_bound_is_valid_for_any_multipliers(case):
    inst, full, _, blocks, programs = case
    t, m = inst.horizon, inst.n_segments
    zero = D.Multipliers(np.zeros((t, m)), np.zeros((t, m)), np.zeros((len(blocks), t, m)))
    assert D.lagrangian_bound(inst, programs, zero).bound >= full.objective * (1 - REL)
    rng = np.random.default_rng(0)
    for _ in range(3):
        mult = D.Multipliers(
            rng.normal(0, 3, (t, m)),
            rng.exponential(1.0, (t, m)),
            rng.normal(0, 2, (len(blocks), t, m)),
        )
        assert D.lagrangian_bound(inst, programs, mult).bound >= full.objective * (1 - REL)


def test_bound_equals_optimum_at_the_full_duals(case):
    inst, full, duals, blocks, programs = case
    mult = D.multipliers_from_duals(duals, blocks)
    assert np.abs(mult.y_coefficient(inst)).max() < 1e-6
    assert D.lagrangian_bound(inst, programs, mult).bound == pytest.approx(full.objective, rel=REL)


def test_negative_slate_multiplier_is_refused(case):
    inst, _, _, blocks, programs = case
    t, m = inst.horizon, inst.n_segments
    bad = D.Multipliers(np.zeros((t, m)), -np.ones((t, m)), np.zeros((len(blocks), t, m)))
    with pytest.raises(ValueError, match="nu"):
        D.lagrangian_bound(inst, programs, bad)


def test_decomposed_plan_sits_between_bound_and_value(case):
    inst, full, _, _, _ = case
    plan = D.solve_decomposed(inst, max_block_size=15, iterations=2)
    assert plan.bound >= full.objective * (1 - REL)
    assert full.objective >= plan.value * (1 - REL)
    assert plan.residual < 1e-6
    assert plan.gap >= -REL  # a bound over a feasible plan; how small the gap gets is a
    # quality figure, measured by benchmarks/bench_decompose.py, not a correctness property
    t, m, n = inst.horizon, inst.n_segments, inst.n_products
    assert plan.alpha.shape == plan.rec_frequency.shape == plan.x.shape == (t, m, n)
    assert plan.orders.shape == plan.inventory.shape == (t, n)
    assert sum(plan.block_sizes) == n
    assert plan.bound == min(plan.bound_history)
    assert plan.value == max(plan.value_history)


def test_plan_satisfies_the_full_matrix(case):
    """Differential check: the assembled plan against the bulk path's constraint matrix."""
    inst, _, _, blocks, _ = case
    plan = D.solve_decomposed(inst, blocks=blocks, iterations=0)
    arrays = assemble_fluid_lp(fluid_data(inst))
    lay = arrays.layout
    x = np.zeros(lay.n_cols)
    for name, val in (
        ("alpha", plan.alpha),
        ("beta", plan.beta),
        ("y", plan.y),
        ("q", plan.orders),
        ("s", plan.sales),
        ("l", plan.lost),
        ("inv", plan.inventory),
    ):
        x[lay.col(name)] = val
    ax = arrays.matrix @ x
    assert (ax >= arrays.row_lower - 1e-6).all() and (ax <= arrays.row_upper + 1e-6).all()
    assert float(arrays.cost @ x) == pytest.approx(plan.value, rel=REL)


def test_residuals_catch_a_violation(case):
    inst, full, _, _, _ = case
    broken = D.FluidPoint(
        full.alpha * 1.1,
        full.beta,
        full.y,
        full.orders,
        full.sales,
        full.lost,
        full.inventory,
        full.indicators,
        full.objective,
    )
    res = D.plan_residuals(inst, broken)
    assert res["choice_balance"] > 1e-3 and res["offer_once"] > 1e-6


def test_hidden_mode_bound_and_plan():
    inst = generate_instance(
        n_products=24, n_segments=4, horizon=4, slate_size=2, seed=3, stockout="hidden"
    )
    full, _ = D.solve_full_lp(inst)
    plan = D.solve_decomposed(inst, max_block_size=8, iterations=1)
    assert plan.bound >= full.objective * (1 - REL) >= plan.value * (1 - 2 * REL)
    assert plan.residual < 1e-6


def test_warehouse_capacity_is_refused_with_a_reason():
    inst = generate_instance(n_products=6, n_segments=2, horizon=3, seed=0)
    inst = inst.replace(warehouse_capacity=100.0)
    with pytest.raises(D.DecompositionError, match="warehouse_capacity"):
        D.solve_decomposed(inst)


def test_rebuilt_block_models_give_the_same_bound(case):
    inst, _, _, blocks, _ = case
    kept = D.solve_decomposed(inst, blocks=blocks, iterations=1, keep_models=True)
    rebuilt = D.solve_decomposed(inst, blocks=blocks, iterations=1, keep_models=False)
    assert rebuilt.bound == pytest.approx(kept.bound, rel=1e-7)
    assert rebuilt.value == pytest.approx(kept.value, rel=1e-6)
