"""Bid-price control: order-up-to rules, the season's end, stock-aware slates, and its value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from coordopt.evaluation import compare, evaluate
from coordopt.instance import load_instance
from coordopt.periods import arrives_too_late
from coordopt.policies import SiloedPolicy, critical_fractile, make_policy
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.bidprice import BidPricePolicy


def small_params() -> SimParams:
    return SimParams.from_instance(load_instance("small"), dtype=torch.float64)


def late(inst) -> np.ndarray:
    """``(T, N)``: an order placed in period t would arrive after the last period."""
    late = arrives_too_late(inst.lead_time, inst.horizon)
    t = np.arange(inst.horizon)[:, None]
    np.testing.assert_array_equal(late, t + inst.lead_time[None] > inst.horizon - 1)
    return late


def played_orders(policy, params: SimParams, batch: int = 3) -> np.ndarray:
    """``(T, B, N)`` orders of one episode."""
    state = reset(params, batch)
    policy.reset(batch)
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(params.horizon):
        action = policy.act(state)
        out.append(action.orders.numpy())
        state, _ = step(state, action, params, gen)
    return np.stack(out)


def test_last_order_fractile_prices_leftovers_at_cost_less_salvage() -> None:
    inst = load_instance("small")
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    over = inst.holding_cost + inst.unit_cost - inst.salvage_value
    np.testing.assert_allclose(critical_fractile(inst, last_order=True), under / (under + over))
    assert (critical_fractile(inst, last_order=True) < critical_fractile(inst)).all()


def test_bidprice_never_orders_what_would_arrive_after_the_end() -> None:
    params = small_params()
    inst = params.instance
    policy = BidPricePolicy(params, reoptimize_every=3)
    orders = played_orders(policy, params)
    assert late(inst).any() and (orders[late(inst)[:, None, :].repeat(3, 1)] == 0).all()
    assert orders[~late(inst)[:, None, :].repeat(3, 1)].sum() > 0


def test_bidprice_targets_are_the_plan_position_or_the_newsvendor_level() -> None:
    params = small_params()
    inst = params.instance
    policy = BidPricePolicy(params, reoptimize_every=0)
    plan = policy.solution.plan
    demand = plan.sales + plan.lost
    t, lead = np.arange(inst.horizon)[:, None], inst.lead_time[None]
    last = t + lead == inst.horizon - 1
    fractile = np.where(last, critical_fractile(inst, last_order=True), critical_fractile(inst))
    csd = np.vstack([np.zeros((1, inst.n_products)), np.cumsum(demand, axis=0)])
    window = np.take_along_axis(csd, np.minimum(t + lead + 1, inst.horizon), 0) - csd[:-1]
    newsvendor = stats.poisson.ppf(fractile, window)
    target = policy.plan.target.numpy()
    ok = ~late(inst)
    assert (target[ok] >= newsvendor[ok] - 1e-9).all()
    assert (target[late(inst)] == 0).all()
    # the last order holds less safety stock than a period in mid-season would
    assert (target[last] < stats.poisson.ppf(critical_fractile(inst), window)[last] + 1e-9).all()


def test_reoptimising_from_excess_stock_orders_nothing_more() -> None:
    """The re-optimised plan already carries the stock on hand: no second safety stock."""
    params = small_params()
    policy = BidPricePolicy(params, reoptimize_every=4)
    state = reset(params, 2)
    policy.reset(2)
    plenty = SiloedPolicy(params).base_stock[4] * 3
    state = dataclasses.replace(state, t=4, on_hand=plenty.expand(2, -1).clone())
    action = policy.act(state)  # t = 4 re-optimises from this state
    assert policy.solution is not policy.initial
    assert (action.orders == 0).all()


def test_bidprice_slates_skip_products_out_of_stock() -> None:
    params = small_params()
    inst = params.instance
    policy = BidPricePolicy(params, reoptimize_every=0)
    state = reset(params, 2)
    policy.reset(2)
    first = policy.act(state)
    shown = torch.unique(first.slates[first.slates >= 0])
    empty = torch.zeros(inst.n_products, dtype=torch.bool)
    empty[shown[:2]] = True  # sell out two products the policy was recommending
    on_hand = torch.where(empty, 0.0, state.on_hand + 50.0)
    pipeline = torch.where(empty[None, :, None], 0.0, state.pipeline)
    t = 1 + int(inst.lead_time.max())  # orders placed now cannot arrive this period...
    state = dataclasses.replace(state, t=t, on_hand=on_hand, pipeline=pipeline)
    zero_lead = torch.as_tensor(inst.lead_time == 0)
    action = policy.act(state)
    shown_now = action.slates[action.slates >= 0]
    # ...unless the lead time is zero: those products may be restocked and shown
    assert not (empty & ~zero_lead)[shown_now].any()


def test_siloed_season_end_stops_only_the_late_orders() -> None:
    params = small_params()
    inst = params.instance
    plain, aware = SiloedPolicy(params, season_end=False), SiloedPolicy(params)
    assert plain.name == "siloed:season_end=false" and aware.name == "siloed"
    assert (plain.base_stock.numpy()[late(inst)] > 0).any()  # the old baseline, named
    assert (aware.base_stock.numpy()[late(inst)] == 0).all()  # the default knows the season
    np.testing.assert_array_equal(
        SiloedPolicy(params, season_end=True).base_stock.numpy(), aware.base_stock.numpy()
    )
    assert (aware.base_stock.numpy()[late(inst)] == 0).all()
    np.testing.assert_array_equal(
        aware.base_stock.numpy()[~late(inst)], plain.base_stock.numpy()[~late(inst)]
    )


def test_bidprice_beats_both_siloed_firms_on_small() -> None:
    params = small_params()
    bid = evaluate(params, make_policy("bidprice", params), episodes=8, seed=3)
    for options in ({}, {"season_end": False}):
        siloed = evaluate(params, make_policy("siloed", params, **options), episodes=8, seed=3)
        diff = compare(bid, siloed)
        assert diff["mean"] > diff["ci95"] > 0, (options, diff)


def test_bad_policy_options_are_refused_naming_the_option() -> None:
    params = small_params()
    with pytest.raises(ValueError, match=r"option reoptimize_every must be >= 0 .*got -3"):
        make_policy("bidprice", params, reoptimize_every=-3)
    with pytest.raises(ValueError, match=r"option safety_stock must be true or false, got 'no'"):
        make_policy("bidprice", params, safety_stock="no")
    with pytest.raises(ValueError, match=r"option season_end must be true or false, got 'maybe'"):
        make_policy("siloed", params, season_end="maybe")
