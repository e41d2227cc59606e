"""The agents' networks: batched sequence evaluation equals period-by-period steps; scorer choice."""

from __future__ import annotations

import pytest
import torch

from coordopt.instance import load_instance
from coordopt.rl.agents import FACTORISED_FROM, build_agents, choose_scorer
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context
from coordopt.rl.rollout import collect_rollout
from coordopt.simulator import SimParams


@pytest.mark.parametrize(
    ("scorer", "plan"), [("additive", False), ("factorised", False), ("factorised", True)]
)
def test_sequence_evaluation_equals_period_by_period_steps(scorer: str, plan: bool) -> None:
    """PPO re-scores a chunk in one pass; it must match stepping the memories period by period
    (also with the plan inputs and the order head's linear skip)."""
    params = SimParams.from_instance(load_instance("small"), dtype=torch.float64)
    torch.manual_seed(0)
    config = TrainConfig(hidden_size=16, scorer=scorer, plan_inputs=plan)
    agents = build_agents(config, params).double()
    if plan:  # a skip that matters (it starts at zero)
        torch.nn.init.normal_(agents.replenishment.skip.weight)
    ctx = build_context(params, agents.bins, plan=plan)
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


def test_auto_scorer_is_factorised_from_the_threshold_and_runs_name_it() -> None:
    assert choose_scorer("auto", 10, 5) == "additive"
    assert choose_scorer("auto", FACTORISED_FROM, 1) == "factorised"
    assert choose_scorer("additive", 1000, 100) == "additive"
    assert choose_scorer("factorised", 2, 1) == "factorised"
    with pytest.raises(ValueError, match="auto"):
        build_agents(TrainConfig())  # auto needs the instance
