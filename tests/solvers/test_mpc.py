"""MPC and the open-loop fluid plan as policies; slates drawn from fluid frequencies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coordopt.evaluation import evaluate
from coordopt.instance import load_instance
from coordopt.models.fluid import FluidStart
from coordopt.policies import make_policy
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.fluid import solve_fluid
from coordopt.solvers.fluid_policy import FluidPlanPolicy, sample_slates
from coordopt.solvers.mpc import MPCPolicy


def test_sample_slates_hits_the_frequencies() -> None:
    freq = np.array([[0.5, 0.3, 0.9, 0.0, 0.3], [1.0, 0.0, 0.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    draws = 8_000
    counts = np.zeros_like(freq)
    for _ in range(draws):
        s = sample_slates(freq, 2, rng)
        for k, row in enumerate(s):
            chosen = row[row >= 0]
            assert len(set(chosen.tolist())) == len(chosen) <= 2
            counts[k, chosen] += 1
    np.testing.assert_allclose(counts / draws, freq, atol=0.025)


def test_sample_slates_scales_overfull_rows() -> None:
    s = sample_slates(np.ones((3, 6)), 2, np.random.default_rng(1))
    assert (s >= 0).sum(axis=1).tolist() == [2, 2, 2]


def run_episode(policy, params, batch: int = 3, seed: int = 0):
    state = reset(params, batch)
    policy.reset(batch)
    gen = torch.Generator().manual_seed(seed)
    actions = []
    for _ in range(params.horizon):
        action = policy.act(state)
        actions.append(action)
        state, _ = step(state, action, params, gen)
    return actions


def test_mpc_actions_are_valid_and_reproducible() -> None:
    inst = load_instance("tiny")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    a = run_episode(MPCPolicy(params, seed=5), params)
    b = run_episode(make_policy("mpc", params, seed=5), params)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.orders, y.orders) and torch.equal(x.slates, y.slates)
        assert x.slates.shape == (3, inst.n_segments, inst.slate_size)
        assert (x.orders == x.orders.round()).all() and (x.orders >= 0).all()
        assert (x.orders <= torch.tensor(inst.max_order)).all()


def test_mpc_first_decision_is_the_fluid_plan() -> None:
    inst = load_instance("small")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    policy = MPCPolicy(params, seed=0)
    action = policy.act(reset(params, 2))
    plan = solve_fluid(inst)
    expect = np.clip(np.rint(plan.orders[0]), 0, inst.max_order)
    np.testing.assert_allclose(action.orders.numpy(), np.tile(expect, (2, 1)))
    # from a mid-horizon state it re-plans over the remaining periods
    on_hand, pipe = np.full(inst.n_products, 4.0), np.ones((inst.n_products, 2))
    sol = policy.plan(9, on_hand, pipe)
    ref = solve_fluid(inst, method="pyomo", start=FluidStart(9, on_hand, pipe))
    assert sol.objective == pytest.approx(ref.objective, rel=1e-8)


def test_fluid_plan_policy_plays_the_plan_open_loop() -> None:
    """A hand-made plan on tiny (max_order 6 and 4): period t's orders are the plan's row t
    rounded to the nearest unit and kept within [0, max_order], whatever the stock; slates
    drawn from one-hot frequencies are that product, and an all-zero row leaves it empty."""
    inst = load_instance("tiny").replace(max_order=np.array([6.0, 4.0]))
    params = SimParams.from_instance(inst, dtype=torch.float64)
    orders = [[2.4, 0.0], [2.6, 3.49], [-0.7, 6.8], [7.2, 0.51]]
    orders += [[1.0, 3.0], [0.49, 1e-9], [5.51, 4.4], [0.0, 0.0]]
    expect = [[2, 0], [3, 3], [0, 4], [6, 1], [1, 3], [0, 0], [6, 4], [0, 0]]
    freq = np.zeros((8, 1, 2))
    freq[[0, 2, 3, 6], 0, 0] = 1.0  # product A recommended
    freq[[1, 4, 7], 0, 1] = 1.0  # product B; period 5: nothing
    plan = dataclasses.replace(solve_fluid(inst), orders=np.array(orders), rec_frequency=freq)
    actions = run_episode(FluidPlanPolicy(params, seed=2, plan=plan), params, batch=2)
    got = np.stack([a.orders.numpy() for a in actions])  # (T, batch, N)
    np.testing.assert_array_equal(got, np.array(expect, dtype=float)[:, None].repeat(2, axis=1))
    slates = [a.slates[:, 0, 0].tolist() for a in actions]  # segment 0, the one slot
    assert slates == [[0, 0], [1, 1], [0, 0], [0, 0], [1, 1], [-1, -1], [0, 0], [1, 1]]


def test_mpc_beats_doing_nothing_and_stays_below_the_bound_on_tiny() -> None:
    inst = load_instance("tiny")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    res_mpc = evaluate(params, MPCPolicy(params, seed=0), episodes=16, seed=1)
    res_null = evaluate(params, "null", episodes=16, seed=1)
    bound = solve_fluid(inst).objective
    assert res_null.mean < res_mpc.mean <= bound


def test_mpc_plans_past_an_overfull_warehouse() -> None:
    """Stock already in the pipeline can overfill the warehouse (the simulator refuses the
    excess); MPC then plans without the capacity rows instead of failing."""
    inst = load_instance("tiny").replace(warehouse_capacity=4.0)
    params = SimParams.from_instance(inst, dtype=torch.float64)
    policy = MPCPolicy(params)
    sol = policy.plan(3, np.array([4.0, 0.0]), np.array([[3.0], [0.0]]))
    assert sol.has_solution and policy.relaxed_warehouse == 1
    ok = policy.plan(3, np.array([1.0, 0.0]), np.array([[1.0], [0.0]]))  # rows restored
    assert ok.has_solution and policy.relaxed_warehouse == 1


def test_mpc_redoes_a_failed_warm_resolve_cold(monkeypatch) -> None:
    """A warm dual-simplex re-solve that HiGHS cannot finish ("unknown") is redone cold by
    interior point, and the plan is the one a fresh solve from that state gives."""
    from coordopt.solvers.fluid import SolveStatus

    inst = load_instance("small")
    pol = MPCPolicy(SimParams.from_instance(inst))
    lp = pol.lp
    real_solve = lp.solve
    calls: list[str | None] = []

    def flaky(*, algorithm=None, **kw):
        calls.append(algorithm)
        sol = real_solve(algorithm=algorithm, **kw)
        if len(calls) == 1:  # the warm re-solve fails once
            return dataclasses.replace(sol, objective=float("nan"), status=SolveStatus.ERROR)
        return sol

    monkeypatch.setattr(lp, "solve", flaky)
    on_hand = np.full(inst.n_products, 40.0)
    pipeline = np.zeros((inst.n_products, max(1, inst.max_lead_time)))
    sol = pol.plan(3, on_hand, pipeline)
    assert calls == [None, "ipm"] and pol.cold_resolves == 1
    fresh = solve_fluid(inst, start=FluidStart(3, on_hand, pipeline)).require()
    assert sol.objective == pytest.approx(fresh.objective, rel=1e-7)
