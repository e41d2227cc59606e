"""The Pyomo fluid model: its structure follows docs/model.md family by family."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from coordopt.choice import best_revenue_slates
from coordopt.instance import Stockout, load_instance
from coordopt.models.fluid import (
    FluidStart,
    FluidVariant,
    build_fluid_model,
    fluid_data,
    max_demand_rate,
)


@pytest.fixture(scope="module")
def tiny():
    return load_instance("tiny")


def test_families_and_sizes(tiny):
    m = build_fluid_model(tiny)
    h, k, n = tiny.horizon, tiny.n_segments, tiny.n_products
    assert len(m.choice_balance) == h * k
    assert len(m.offer_once) == h * k * n
    assert len(m.slate_capacity) == h * k
    assert len(m.inventory_flow) == h * n
    assert len(m.demand_split) == h * n
    assert not hasattr(m, "warehouse_capacity")  # tiny has none
    assert not hasattr(m, "z")  # no fixed costs, no MILP
    assert all(m.q[t, i].ub == tiny.max_order[i] for t in m.T for i in m.I)


def test_offer_once_sense_follows_stockout_mode(tiny):
    lost = build_fluid_model(tiny)
    hidden = build_fluid_model(tiny.replace(stockout=Stockout.HIDDEN))
    assert all(c.equality for c in lost.offer_once.values())
    assert not any(c.equality for c in hidden.offer_once.values())


def test_orders_before_start_do_not_exist(tiny):
    """Product A has lead time 1: the first flow row holds no order, the second holds q[1]."""
    m = build_fluid_model(tiny)
    from pyomo.core.expr.visitor import identify_variables

    first = {v.name for v in identify_variables(m.inventory_flow[1, 0].body)}
    second = {v.name for v in identify_variables(m.inventory_flow[2, 0].body)}
    assert not any(name.startswith("q[") for name in first)
    assert "q[1,0]" in second
    b_first = {v.name for v in identify_variables(m.inventory_flow[1, 1].body)}
    assert "q[1,1]" in b_first  # lead time 0 arrives at once


def test_start_state_shrinks_horizon_and_holds_pipeline(tiny):
    pipeline = np.array([[3.0], [0.0]])
    d = fluid_data(tiny, start=FluidStart(5, np.array([1.0, 2.0]), pipeline))
    assert d.horizon == tiny.horizon - 5
    np.testing.assert_array_equal(d.arrivals[0], [3.0, 0.0])
    np.testing.assert_array_equal(d.arrivals[1:], 0.0)
    np.testing.assert_array_equal(d.on_hand, [1.0, 2.0])
    with pytest.raises(ValueError, match="outside the horizon"):
        fluid_data(tiny, start=FluidStart(tiny.horizon, np.zeros(2), pipeline))


def test_siloed_variant_fixes_recommendations(tiny):
    m = build_fluid_model(tiny, variant="siloed-slates")
    slates, _ = best_revenue_slates(tiny)
    chosen = set(int(i) for i in slates[0] if i >= 0)
    for t in m.T:
        for i in m.I:
            fixed = m.beta[t, 0, i] if i in chosen else m.alpha[t, 0, i]
            assert fixed.fixed and fixed.value == 0.0


def test_unlimited_stock_has_no_inventory(tiny):
    m = build_fluid_model(tiny, variant=FluidVariant.UNLIMITED_STOCK)
    assert not hasattr(m, "q") and not hasattr(m, "inventory_flow")
    assert m.objective.sense == pyo.maximize


def test_order_indicators_and_big_m(tiny):
    inst = tiny.replace(fixed_order_cost=[4.0, 3.0], max_order=[np.inf, 6])
    relaxed = build_fluid_model(inst)
    assert relaxed.z[1, 0].domain is pyo.UnitInterval
    milp = build_fluid_model(inst, integer_orders=True, integer_quantities=True)
    assert milp.z[1, 0].domain is pyo.Binary and milp.q[1, 0].domain is pyo.NonNegativeIntegers
    d = milp.fluid_data
    # uncapped product A (L=1): big-M is the most it can sell after arrival
    expect = max_demand_rate(inst)[0] * np.clip(inst.horizon - np.arange(inst.horizon) - 1, 0, None)
    np.testing.assert_allclose(d.big_m[:, 0], expect)
    np.testing.assert_allclose(d.big_m[:, 1], 6.0)
    assert d.big_m[-1, 0] == 0.0  # an order in the last period never arrives


def test_warehouse_rows_count_stock_after_arrivals(tiny):
    inst = tiny.replace(warehouse_capacity=5.0)
    m = build_fluid_model(inst)
    assert len(m.warehouse_capacity) == inst.horizon
    from pyomo.repn import generate_standard_repn

    first = generate_standard_repn(m.warehouse_capacity[1].body)
    assert first.constant == pytest.approx(inst.initial_inventory.sum())  # start stock counts
    assert {v.name for v in first.linear_vars} == {"q[1,1]"}  # B's lead-time-0 order
    assert pyo.value(m.warehouse_capacity[1].upper) == 5.0
