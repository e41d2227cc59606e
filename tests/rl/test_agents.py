"""The agents' networks: batched sequence evaluation equals period-by-period steps; scorer choice."""

from __future__ import annotations

import pytest
import torch

from coordopt.instance import load_instance
from coordopt.rl.config import TrainConfig
from coordopt.rl.distributions import order_bins
from coordopt.rl.features import build_context, observe
from coordopt.rl.networks import (
    FACTORISED_FROM,
    GAIN_LOGITS,
    build_agents,
    choose_scorer,
    guide_logits,
)
from coordopt.rl.rollout import collect_rollout
from coordopt.simulator import Action, SimParams, empty_slates, reset, step
from coordopt.solvers.lagrangian import StaticMarginPolicy


@pytest.mark.parametrize(
    ("scorer", "plan", "guide"),
    [
        ("additive", False, False),
        ("factorised", False, False),
        ("factorised", True, False),
        ("additive", False, True),
    ],
)
def test_sequence_evaluation_equals_period_by_period_steps(
    scorer: str, plan: bool, guide: bool
) -> None:
    """PPO re-scores a chunk in one pass; it must match stepping the memories period by period
    (also with the plan inputs, the order head's linear skip and the slate-gain skip, and with
    the teacher's decisions' skips)."""
    params = SimParams.from_instance(load_instance("small"), dtype=torch.float64)
    torch.manual_seed(0)
    config = TrainConfig(hidden_size=16, scorer=scorer, plan_inputs=plan, teacher_inputs=guide)
    agents = build_agents(config, params).double()
    if plan:  # skips that matter (they start at zero)
        torch.nn.init.normal_(agents.replenishment.skip.weight)
        torch.nn.init.constant_(agents.recommendation.gain_weight, 0.3)
    teacher = None
    if guide:
        teacher = StaticMarginPolicy(params, max_states=4096)
        torch.nn.init.constant_(agents.replenishment.guide_weight, 0.1)
        torch.nn.init.constant_(agents.recommendation.guide_weight, 0.1)
    ctx = build_context(params, agents.bins, plan=plan, guide=teacher)
    gen = torch.Generator().manual_seed(0)
    ro = collect_rollout(agents, ctx, 4, gen, gen)
    s, e = 3, 9
    hidden = {a: h[s] for a, h in ro.hidden.items()}
    seq = agents.evaluate(
        ro.obs.map(lambda x: x[s:e]), ctx, hidden, ro.order_bins[s:e], ro.slates[s:e]
    )
    for t in range(s, e):
        out = agents.step(
            ro.obs.map(lambda x, t=t: x[t]),
            ctx,
            hidden,
            order_bins=ro.order_bins[t],
            slates=ro.slates[t],
        )
        for a in out.logp:
            assert torch.allclose(seq.logp[a][t - s], out.logp[a], atol=1e-9)
            assert torch.allclose(seq.entropy[a][t - s], out.entropy[a], atol=1e-9)
            assert torch.allclose(out.logp[a], ro.logp[a][t].double(), atol=1e-9)  # as sampled
        hidden = out.hidden
    only = agents.evaluate(
        ro.obs.map(lambda x: x[s:e]),
        ctx,
        {a: h[s] for a, h in ro.hidden.items()},
        ro.order_bins[s:e],
        ro.slates[s:e],
        actors=("recommendation",),
    )
    assert set(only.logp) == {"recommendation"} and only.order_logits is None
    assert torch.equal(only.logp["recommendation"], seq.logp["recommendation"])


def test_a_large_gain_weight_makes_the_greedy_slates_the_teachers() -> None:
    """The slate-gain skip can represent the bid-price teacher's slates exactly: with its
    weight large, the greedy slates along the agents' own trajectory are the teacher's."""
    from coordopt.rl.features import observe
    from coordopt.simulator import empty_slates, reset, step
    from coordopt.solvers.bidprice import BidPricePolicy

    params = SimParams.from_instance(load_instance("small"))
    torch.manual_seed(0)
    agents = build_agents(TrainConfig(hidden_size=16, plan_inputs=True), params)
    teacher = BidPricePolicy(params, reoptimize_every=0)
    ctx = build_context(params, agents.bins, plan=True, teacher=teacher)
    state, gen = reset(params, 4), torch.Generator().manual_seed(1)
    hidden, last = agents.initial_hidden(4, params.device), empty_slates(params, 4)
    with torch.no_grad():
        agents.recommendation.gain_weight.fill_(1e3)
        for _ in range(params.horizon):
            out = agents.step(observe(ctx, state, last, "coordinated"), ctx, hidden, greedy=True)
            # on the agents' states: the teacher's availability counts its own orders (lead 0)
            assert torch.equal(out.slates, teacher.act(state).slates)
            hidden, last = out.hidden, out.slates
            state, _ = step(state, Action(orders=out.orders, slates=out.slates), params, gen)


def test_the_teachers_decisions_skip_adds_logits_at_its_choices_only() -> None:
    """``guide_logits``: one order bin per product, a slate's products (an empty slot, -1,
    chooses nothing), each ``GAIN_LOGITS * weight``; no decisions, a clear error."""
    w = torch.tensor(0.5)
    bins = guide_logits(w, torch.tensor([[2], [0]]), 4)
    assert torch.equal(bins, torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0]]) * GAIN_LOGITS * 0.5)
    slates = guide_logits(w, torch.tensor([[3, 1, -1]]), 5)
    assert torch.equal(slates, torch.tensor([[0, 1, 0, 1, 0]]) * GAIN_LOGITS * 0.5)
    with pytest.raises(ValueError, match="the teacher-decision skip"):
        guide_logits(w, None, 4)


def test_large_guide_weights_make_the_greedy_decisions_the_teachers() -> None:
    """With the teacher's decisions as inputs the agents can be their teacher exactly, at any
    size: with both skip weights large, the greedy orders and slates along the agents' own
    trajectory are the static-margin firm's (whose slates no network feature gives)."""
    params = SimParams.from_instance(load_instance("small"))
    torch.manual_seed(0)
    agents = build_agents(TrainConfig(hidden_size=16, teacher_inputs=True), params)
    teacher = StaticMarginPolicy(params, max_states=4096)
    ctx = build_context(params, agents.bins, guide=teacher)
    state, gen = reset(params, 4), torch.Generator().manual_seed(1)
    hidden, last = agents.initial_hidden(4, params.device), empty_slates(params, 4)
    with torch.no_grad():
        agents.replenishment.guide_weight.fill_(1e3)
        agents.recommendation.guide_weight.fill_(1e3)
        for _ in range(params.horizon):
            out = agents.step(observe(ctx, state, last, "coordinated"), ctx, hidden, greedy=True)
            act = teacher.act(state)
            bins = order_bins(act.orders, ctx.order_step, ctx.n_valid_bins)
            assert torch.equal(out.order_bins, bins)
            assert torch.equal(out.slates.sort(-1).values, act.slates.sort(-1).values)  # sets
            hidden, last = out.hidden, out.slates
            state, _ = step(state, Action(orders=out.orders, slates=out.slates), params, gen)


def test_auto_scorer_is_factorised_from_the_threshold_and_runs_name_it() -> None:
    assert choose_scorer("auto", 10, 5) == "additive"
    assert choose_scorer("auto", FACTORISED_FROM, 1) == "factorised"
    assert choose_scorer("additive", 1000, 100) == "additive"
    assert choose_scorer("factorised", 2, 1) == "factorised"
    with pytest.raises(ValueError, match="auto"):
        build_agents(TrainConfig())  # auto needs the instance
