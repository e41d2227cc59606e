"""Observation features: the slate signals against a dense reference; seasonal demand; the
declared feature names and the widths they give."""

from __future__ import annotations

import pytest
import torch

from coordopt.instance import load_instance
from coordopt.rl.features import (
    GLOBAL,
    INFORMATION,
    build_context,
    feature_names,
    observe,
    recommendation_signals,
    season,
)
from coordopt.simulator import SimParams, empty_slates, reset


def test_recommendation_signals_equal_the_dense_indicator_sums() -> None:
    params = SimParams.from_instance(load_instance("small"))
    ctx = build_context(params, 16)
    gen = torch.Generator().manual_seed(0)
    b, m, n, k = 5, params.n_segments, params.n_products, 3
    slates = torch.stack(
        [torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(m)]) for _ in range(b)]
    )
    slates[0, 0, 1:] = -1  # a short slate
    slates[1, 2, :] = -1  # an empty one
    dense = torch.zeros(b, m, n + 1)
    dense.scatter_(2, torch.where(slates < 0, n, slates), 1.0)
    dense = dense[..., :n]
    want = torch.stack([dense.mean(1), (dense * ctx.uplift_demand).sum(1)], dim=-1)
    assert torch.allclose(recommendation_signals(ctx, slates), want, atol=1e-6)


def test_season_is_one_for_constant_arrivals_and_follows_a_peak() -> None:
    share = torch.tensor([[0.2, 0.1, 0.0], [0.0, 0.3, 0.1]])  # (M=2, N=3)
    flat = season(torch.tensor([[2.0, 1.0]]).expand(4, 2), share)
    assert torch.allclose(flat[:4], torch.ones(4, 3)) and torch.equal(flat[4], torch.zeros(3))
    arrivals = torch.tensor([[1.0, 1.0], [3.0, 1.0], [1.0, 1.0], [1.0, 1.0]])  # segment 0 peaks
    peak = season(arrivals, share)
    assert torch.allclose(peak[:4, 0], torch.tensor([1.0, 3.0, 1.0, 1.0]) / 1.5)  # segment 0
    assert torch.allclose(peak[:4, 2], torch.ones(4))  # only segment 1: flat
    assert peak[1, 1] > 1 > peak[0, 1]
    # the context of a constant-rate instance: ones, and zero after the horizon
    ctx = build_context(SimParams.from_instance(load_instance("tiny")), 8)
    assert torch.allclose(ctx.season[:-1], torch.ones_like(ctx.season[:-1]))


@pytest.mark.parametrize("stockout", ["lost", "hidden"])
def test_the_plan_inputs_name_the_teachers_order_bin_margin_and_slates(stockout: str) -> None:
    """With the plan among the features, the replenishment agent sees the bid-price teacher's
    own order (in bins) for the state it is in, and marketing its stock-adjusted margins and
    the gains whose top-K positive entries are the teacher's slates."""
    from coordopt.rl.distributions import order_bins
    from coordopt.rl.features import teacher_gain
    from coordopt.simulator import step
    from coordopt.solvers.bidprice import BidPricePolicy

    params = SimParams.from_instance(load_instance("small").replace(stockout=stockout))
    teacher = BidPricePolicy(params, reoptimize_every=0)
    ctx = build_context(params, 16, plan=True, teacher=teacher)
    assert ctx.plan is not None and build_context(params, 16).plan is None
    teacher.reset(4)
    state, gen = reset(params, 4), torch.Generator().manual_seed(3)
    checked = same = slots = 0
    names = feature_names("coordinated", plan=True)
    ops_without_plan = feature_names("coordinated")["ops"]
    for t in range(params.horizon):
        obs = observe(ctx, state, empty_slates(params, 4), "coordinated")
        assert obs.ops.shape[-1] == len(names["ops"]) == len(ops_without_plan) + 2
        assert obs.mkt.shape[-1] == len(names["mkt"])
        action = teacher.act(state)
        named = torch.round(obs.ops[..., names["ops"].index("ops_plan.order_gap")] * (ctx.bins - 1))
        want = order_bins(action.orders, ctx.order_step, ctx.n_valid_bins)
        # the teacher orders round(max(0, target - position)), then its bin is rounded again:
        # the feature's bin where it is positive, up to that double rounding
        positive = named > 0
        named = named[positive].long().clamp(max=ctx.bins - 1)
        assert torch.all((named - want[positive]).abs() <= 1)
        assert torch.all(want[~positive] == 0)
        checked += int(positive.sum())
        same += int((named == want[positive]).sum())
        margin = teacher.plan.margin[t] / params.price.mean()
        assert torch.allclose(obs.mkt[..., -1], margin.to(obs.mkt.dtype).expand(4, -1))
        assert obs.margin is not None and obs.threshold is not None
        top = teacher_gain(ctx.plan, obs.margin, obs.threshold).topk(params.slate_size, -1)
        slates = torch.where(top.values > 0, top.indices, -1)
        assert torch.equal(slates, action.slates)  # the same products in the same order
        slots += int((slates >= 0).sum())
        state, _ = step(state, action, params, gen)
    assert checked > 100 and same > 0.95 * checked  # many orders, nearly all the same bin
    assert slots > 0.5 * params.horizon * 4 * params.n_segments * params.slate_size


@pytest.mark.parametrize("information", INFORMATION)
def test_every_input_is_as_wide_as_its_named_features(information: str) -> None:
    """The networks' widths are the counts of the declared names, which never repeat within
    an input; a part computed with a feature missing or unknown is refused by name."""
    params = SimParams.from_instance(load_instance("small"))
    ctx = build_context(params, 8)
    obs = observe(ctx, reset(params, 2), empty_slates(params, 2), information)
    names = feature_names(information)
    tensors = {
        "ops": obs.ops,
        "mkt": obs.mkt,
        "critic": obs.critic,
        "segment": ctx.segment,
        "pair": ctx.pair,
        "global": obs.glob,
    }
    assert set(names) == set(tensors)
    for key, tensor in tensors.items():
        assert tensor.shape[-1] == len(names[key]) == len(set(names[key])), key
    with pytest.raises(ValueError, match="'global' computed are \\['periods_to_go'\\]"):
        GLOBAL.ordered({"periods_to_go": 1.0})
