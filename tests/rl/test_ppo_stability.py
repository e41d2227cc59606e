"""The PPO update survives huge and non-finite log-ratios without corrupting the weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coordopt.instance import load_instance
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context
from coordopt.rl.networks import build_agents
from coordopt.rl.ppo import TrainingDiverged, _optimisers, ppo_update
from coordopt.rl.rollout import Rollout, collect_rollout, gae
from coordopt.rl.schedules import make_timescales
from coordopt.simulator import SimParams


def _update(shift: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One PPO update on a fresh ``tiny`` rollout whose stored log-probs are moved by
    ``shift[agent]`` (``(T, B)``); returns the stats and the weights before the update."""
    torch.manual_seed(0)
    # joint credit: one ratio per env-period, the one that sums every decision's log-ratio
    config = TrainConfig(num_envs=8, minibatch_envs=8, seq_len=4, warm_start="none", credit="joint")
    params = SimParams.from_instance(load_instance("tiny"))
    ctx = build_context(params, config.order_bins)
    agents = build_agents(config, params)
    gen = torch.Generator().manual_seed(0)
    ro = collect_rollout(agents, ctx, config.num_envs, gen, gen)
    ro = dataclasses.replace(ro, logp={a: lp + shift.get(a, 0.0) for a, lp in ro.logp.items()})
    assert isinstance(ro, Rollout)
    adv, ret = gae(ro.rewards["firm"], ro.values["firm"], 1.0, config.gae_lambda)
    before = {k: v.clone() for k, v in agents.state_dict().items()}
    stats = ppo_update(
        agents,
        ctx,
        config,
        ro,
        {"firm": adv},
        {"firm": ret},
        make_timescales(config),
        _optimisers(agents),
        0.0,
        0,
        np.random.default_rng(0),
    )
    for name, value in agents.state_dict().items():
        assert torch.isfinite(value).all(), name
    return stats, {k: v for k, v in before.items() if not torch.equal(v, agents.state_dict()[k])}


def test_huge_planted_log_ratios_keep_the_update_finite() -> None:
    """Stored log-probs 1,000 nats below (and above) the current ones: ``exp(new - old)``
    overflows float32 without the clamp, the loss and its gradient become inf/NaN. With it
    every minibatch updates every learner and all weights stay finite."""
    horizon, batch = load_instance("tiny").horizon, 8
    sign = torch.where(torch.arange(batch) % 2 == 0, -1.0, 1.0).expand(horizon, batch)
    stats, changed = _update({"recommendation": 1000.0 * sign, "replenishment": -1000.0 * sign})
    assert stats["nonfinite_recommendation"] == 0.0
    assert stats["nonfinite_replenishment"] == 0.0
    assert all(np.isfinite(v) for v in stats.values()), stats
    assert any(k.startswith("recommendation.") for k in changed)
    assert any(k.startswith("replenishment.") for k in changed)


def test_a_non_finite_minibatch_is_skipped_and_reported() -> None:
    """A NaN planted in the first period's stored log-probs poisons the minibatches of that
    chunk: they are skipped for that learner (reported as a fraction), the others update."""
    horizon, batch = load_instance("tiny").horizon, 8
    shift = torch.zeros(horizon, batch)
    shift[0, 0] = torch.nan
    stats, changed = _update({"recommendation": shift})
    assert 0.0 < stats["nonfinite_recommendation"] < 1.0
    assert stats["nonfinite_replenishment"] == 0.0
    assert any(k.startswith("recommendation.") for k in changed)


def test_every_minibatch_non_finite_stops_training() -> None:
    """When no minibatch of a learner is finite the update cannot proceed: a clear error."""
    horizon, batch = load_instance("tiny").horizon, 8
    with pytest.raises(TrainingDiverged, match=r"recommendation .* every minibatch"):
        _update({"recommendation": torch.full((horizon, batch), torch.nan)})
