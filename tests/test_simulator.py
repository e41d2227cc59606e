"""Batched simulator: differential tests against the scalar reference, invariants, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_sim import ref_rates, ref_reset, ref_step

from coordopt import generate_instance, load_instance
from coordopt.checks import InvariantError, check_action, check_step
from coordopt.instance import Stockout
from coordopt.simulator import (
    Action,
    SimParams,
    advance,
    available_stock,
    demand_rates,
    reset,
    step,
)


def random_slates(rng: np.random.Generator, b: int, m: int, n: int, k: int) -> np.ndarray:
    out = np.full((b, m, k), -1, dtype=np.int64)
    for bi in range(b):
        for seg in range(m):
            size = rng.integers(0, min(k, n) + 1)
            out[bi, seg, :size] = rng.choice(n, size=size, replace=False)
    return out


def variants():
    base = generate_instance(
        seed=3, n_products=6, n_segments=3, horizon=7, slate_size=2, max_lead_time=2
    )
    yield "lost", base
    yield (
        "hidden",
        base.replace(stockout=Stockout.HIDDEN, initial_inventory=np.array([0, 3, 0, 5, 1, 0])),
    )
    yield "capacity", base.replace(warehouse_capacity=40.0)
    yield (
        "fixed-cost+cap-orders",
        base.replace(fixed_order_cost=np.full(6, 5.0), max_order=np.full(6, 7.0), discount=0.9),
    )
    yield "tiny", load_instance("tiny")
    yield (
        "seasonal",
        base.replace(arrival_rate=base.arrival_rate * np.linspace(0.3, 2.5, base.horizon)[:, None]),
    )


@pytest.mark.parametrize(("label", "inst"), list(variants()))
def test_batched_matches_scalar_reference_on_same_draws(label, inst):
    rng = np.random.default_rng(0)
    b, n, m = 5, inst.n_products, inst.n_segments
    k = inst.effective_slate_size
    params = SimParams.from_instance(inst, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    state = reset(params, b)
    refs = [ref_reset(inst) for _ in range(b)]
    for _t in range(inst.horizon):
        orders = rng.integers(0, 12, (b, n)).astype(float)
        slates = random_slates(rng, b, m, n, k)
        action = Action(torch.tensor(orders), torch.tensor(slates))
        check_action(action, params)
        avail, q, arrivals, overflow = available_stock(state, action.orders, params)
        rates = demand_rates(avail, action.slates, params, state.t)
        demand = torch.poisson(rates, generator=gen)
        new_state, res = advance(state, avail, q, arrivals, overflow, demand, params)
        check_step(state, res, new_state, params)
        for bi in range(b):
            slate_lists = [[int(x) for x in row if x >= 0] for row in slates[bi]]
            new_ref, out = ref_step(
                inst, refs[bi], list(orders[bi]), slate_lists, list(demand[bi].numpy())
            )
            np.testing.assert_allclose(out["flow_available"], avail[bi].numpy(), err_msg=label)
            np.testing.assert_allclose(
                ref_rates(inst, state.t, out["flow_available"], slate_lists),
                rates[bi].numpy(),
                rtol=1e-10,
                err_msg=label,
            )
            np.testing.assert_allclose(out["flow_sales"], res.sales[bi].numpy(), err_msg=label)
            np.testing.assert_allclose(out["flow_lost"], res.lost[bi].numpy(), err_msg=label)
            np.testing.assert_allclose(
                out["flow_overflow"], res.overflow[bi].numpy(), err_msg=label
            )
            np.testing.assert_allclose(
                new_ref.on_hand, new_state.on_hand[bi].numpy(), err_msg=label
            )
            np.testing.assert_allclose(
                new_ref.pipeline, new_state.pipeline[bi].numpy(), err_msg=label
            )
            for term, value in {"reward": res.reward, **res.terms}.items():
                assert out[term] == pytest.approx(float(value[bi]), rel=1e-10, abs=1e-9), (
                    label,
                    term,
                )
            refs[bi] = new_ref
        state = new_state
    assert state.t == inst.horizon


def test_step_uses_the_generator_and_is_deterministic():
    inst = load_instance("small")
    params = SimParams.from_instance(inst)
    slates = torch.zeros(4, inst.n_segments, inst.slate_size, dtype=torch.long) - 1
    action = Action(torch.full((4, inst.n_products), 3.0), slates)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        s = reset(params, 4)
        rewards = []
        for _ in range(inst.horizon):
            s, r = step(s, action, params, g)
            rewards.append(r.reward)
        return torch.stack(rewards)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_recommendation_moves_demand_toward_the_slate():
    inst = load_instance("small")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    state = reset(params, 1)
    none = torch.full((1, inst.n_segments, inst.slate_size), -1)
    target = int(np.argmax((inst.rec_attraction - inst.base_attraction).sum(0)))
    only = none.clone()
    only[..., 0] = target
    r0 = demand_rates(state.on_hand, none, params, 0)[0]
    r1 = demand_rates(state.on_hand, only, params, 0)[0]
    assert r1[target] > r0[target]
    others = torch.arange(inst.n_products) != target
    assert (r1[others] <= r0[others] + 1e-12).all()  # substitution: the others lose share


def test_hidden_mode_moves_demand_to_products_in_stock():
    inst = load_instance("small").replace(stockout=Stockout.HIDDEN)
    params = SimParams.from_instance(inst, dtype=torch.float64)
    avail = torch.full((1, inst.n_products), 5.0)
    empty = torch.full((1, inst.n_segments, inst.slate_size), -1)
    r_full = demand_rates(avail, empty, params, 0)[0]
    avail[0, 0] = 0
    r_out = demand_rates(avail, empty, params, 0)[0]
    assert r_out[0] == 0
    assert (r_out[1:] > r_full[1:]).all()


def test_step_refuses_to_run_past_the_horizon():
    params = SimParams.from_instance(load_instance("tiny"))
    s = reset(params, 1)
    a = Action(torch.zeros(1, 2), torch.full((1, 1, 1), -1))
    for _ in range(params.horizon):
        s, _ = step(s, a, params)
    with pytest.raises(ValueError, match="episode is over"):
        step(s, a, params)


def test_check_action_rejects_duplicates_and_fractional_orders():
    params = SimParams.from_instance(load_instance("small"))
    ok = torch.tensor([[[0, 1, 2]] * 5])
    check_action(Action(torch.zeros(1, 10), ok), params)
    dup = ok.clone()
    dup[0, 2, 1] = 0
    with pytest.raises(InvariantError, match="twice"):
        check_action(Action(torch.zeros(1, 10), dup), params)
    with pytest.raises(InvariantError, match="non-negative integers"):
        check_action(Action(torch.full((1, 10), 0.5), ok), params)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    hidden=st.booleans(),
    cap=st.one_of(st.none(), st.floats(0, 200)),
    lead=st.integers(0, 3),
    batch=st.integers(1, 4),
)
def test_conservation_and_nonnegativity_under_random_instances_and_actions(
    seed, hidden, cap, lead, batch
):
    inst = generate_instance(
        seed=seed,
        n_products=5,
        n_segments=3,
        horizon=6,
        slate_size=2,
        max_lead_time=lead,
        stockout="hidden" if hidden else "lost",
    )
    if cap is not None:
        inst = inst.replace(warehouse_capacity=cap)
    params = SimParams.from_instance(inst)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    state = reset(params, batch)
    for _ in range(inst.horizon):
        action = Action(
            torch.tensor(rng.integers(0, 30, (batch, 5)), dtype=torch.float32),
            torch.tensor(random_slates(rng, batch, 3, 5, 2)),
        )
        new, res = step(state, action, params, gen)
        check_step(state, res, new, params)
        if cap is not None:
            assert (
                res.available.sum(1) <= max(cap, float(state.on_hand.sum(1).max())) + 1e-3
            ).all()
        state = new


def test_warehouse_capacity_accepts_exactly_the_pro_rata_share():
    inst = load_instance("tiny").replace(
        warehouse_capacity=15.0,
        initial_inventory=np.array([0, 0]),
        lead_time=np.array([0, 0]),
        max_order=np.array([100.0, 100.0]),
    )
    params = SimParams.from_instance(inst)
    state = reset(params, 1)
    avail, _, arrivals, overflow = available_stock(state, torch.tensor([[22.0, 0.0]]), params)
    assert avail.tolist() == [[15.0, 0.0]]  # 22 * 15 / 22 = 15, not 14
    assert overflow.tolist() == [[7.0, 0.0]] and arrivals.tolist() == [[22.0, 0.0]]


def test_seasonal_rates_follow_the_period():
    """Demand rates scale with the period's arrival rate, which also sets the Poisson draws."""
    base = load_instance("small")
    factor = np.linspace(0.5, 3.0, base.horizon)
    inst = base.replace(arrival_rate=base.arrival_rate * factor[:, None])
    params = SimParams.from_instance(inst, dtype=torch.float64)
    flat = SimParams.from_instance(base, dtype=torch.float64)
    avail = torch.full((1, inst.n_products), 5.0)
    slates = torch.full((1, inst.n_segments, inst.slate_size), -1)
    for t in (0, 7, inst.horizon - 1):
        np.testing.assert_allclose(
            demand_rates(avail, slates, params, t), factor[t] * demand_rates(avail, slates, flat, t)
        )
