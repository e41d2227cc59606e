"""Siloed policy: exact assortment (vs enumeration) and base-stock levels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from coordopt import generate_instance, load_instance
from coordopt.checks import check_action
from coordopt.choice import best_revenue_slates, revenue_rate
from coordopt.policies import NullPolicy, Policy, SiloedPolicy, base_stock_levels, make_policy
from coordopt.simulator import SimParams, reset


@pytest.mark.parametrize("seed", range(6))
def test_assortment_equals_enumeration(seed):
    inst = generate_instance(seed=seed, n_products=7, n_segments=4, slate_size=3, uplift=2.0)
    slates, rev = best_revenue_slates(inst)
    for k in range(inst.n_segments):
        best = 0.0
        for size in range(inst.slate_size + 1):
            for s in itertools.combinations(range(inst.n_products), size):
                row = np.full((inst.n_segments, inst.slate_size), -1)
                row[k, :size] = s
                best = max(best, revenue_rate(inst, row)[k])
        assert rev[k] == pytest.approx(best, rel=1e-12)
        assert (slates[k] >= 0).sum() <= inst.slate_size


def _newsvendor_cost(level: int, mean: float, under: float, over: float) -> float:
    """``over E[(S - D)+] + under E[(D - S)+]`` for Poisson demand D, from its pmf by recursion."""
    pmf, short = math.exp(-mean), 0.0
    for k in range(level + 1):
        short += (level - k) * pmf  # E[(S - D)+]
        pmf *= mean / (k + 1)
    return over * short + under * (mean - level + short)


def test_base_stock_minimises_the_newsvendor_cost():
    """The order-up-to level is the cost-minimising stock for demand over L + 1 periods --
    the newsvendor's defining property, checked by enumeration, not by the fractile formula."""
    inst = load_instance("tiny")
    rate = np.array([1.2, 2.5])
    levels = base_stock_levels(inst, rate)
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    for i, mean in enumerate(rate * (inst.lead_time + 1)):
        costs = [
            _newsvendor_cost(s, float(mean), float(under[i]), float(inst.holding_cost[i]))
            for s in range(60)
        ]
        assert (levels[:, i] == int(np.argmin(costs))).all(), (i, levels[:, i], costs[:10])


def test_siloed_orders_up_to_base_stock_and_respects_max_order():
    params = SimParams.from_instance(load_instance("tiny"))
    pol = SiloedPolicy(params)
    assert isinstance(pol, Policy)
    state = reset(params, 3)
    pol.reset(3)
    act = pol.act(state)
    check_action(act, params)
    expected = torch.minimum(
        (pol.base_stock[0] - state.inventory_position()).clamp(min=0), params.max_order
    )
    assert torch.equal(act.orders, expected)
    assert (act.orders <= 6).all()


def test_make_policy_errors_are_actionable():
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(ValueError, match=r"unknown policy 'nope'.*siloed"):
        make_policy("nope", params)
    assert isinstance(make_policy("null", params), NullPolicy)


def test_seasonal_base_stock_covers_the_demand_of_the_periods_its_orders_serve():
    """Per period t: the fractile of Poisson demand summed over t..t+L (the last period's
    rate continuing past the horizon), so stock builds before a peak."""
    inst = load_instance("tiny")  # lead times [1, 0], T = 8
    rate = np.array([1.0, 1.0, 2.0, 6.0, 6.0, 2.0, 1.0, 3.0])[:, None] * np.array([1.0, 0.5])
    levels = base_stock_levels(inst, rate)
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    ratio = under / (under + inst.holding_cost)
    for t in range(inst.horizon):
        window_a = rate[t, 0] + rate[min(t + 1, inst.horizon - 1), 0]  # L = 1
        assert levels[t, 0] == stats.poisson.ppf(ratio[0], window_a)
        assert levels[t, 1] == stats.poisson.ppf(ratio[1], rate[t, 1])  # L = 0
    assert levels[2, 0] > levels[1, 0] and levels[2, 1] < levels[3, 1]  # ahead of the peak
