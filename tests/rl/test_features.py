"""Observation features: the slate signals against a dense reference; seasonal demand."""

from __future__ import annotations

import torch

from coordopt.instance import load_instance
from coordopt.rl.features import build_context, recommendation_signals, season
from coordopt.simulator import SimParams


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
