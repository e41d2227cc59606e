"""GAE and returns against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from coordopt.rl.rollout import RunningMeanStd, discounted_returns, gae


def test_gae_matches_hand_computation() -> None:
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    adv, ret = gae(r, v, gamma=0.9, lam=0.8)
    # deltas: 1 + .9*1 - .5 = 1.4; 2 + .9*1.5 - 1 = 2.35; 3 - 1.5 = 1.5 (terminal)
    a2 = 1.5
    a1 = 2.35 + 0.72 * a2
    a0 = 1.4 + 0.72 * a1
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2], rel=1e-6)
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], rel=1e-6)


def test_gae_with_lambda_one_gives_monte_carlo_returns() -> None:
    torch.manual_seed(0)
    r, v = torch.randn(6, 4), torch.randn(6, 4)
    _, ret = gae(r, v, gamma=0.95, lam=1.0)
    assert torch.allclose(ret, discounted_returns(r, 0.95), atol=1e-5)
    assert float(discounted_returns(torch.ones(3, 1), 0.5)[0, 0]) == pytest.approx(1.75)


def test_running_mean_std_matches_batch_statistics() -> None:
    torch.manual_seed(1)
    x = torch.randn(1000) * 3 + 2
    rms = RunningMeanStd()
    for part in x.split(137):
        rms.update(part)
    assert rms.mean == pytest.approx(float(x.mean()), abs=1e-3)
    assert rms.std == pytest.approx(float(x.std(unbiased=False)), rel=1e-3)
