"""Behaviour cloning drives the imitation loss down; the critic fits the cloned returns."""

from __future__ import annotations

import pytest
import torch

from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.rl import warmstart
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import GLOBAL, Observation, build_context, feature_names
from coordopt.rl.networks import build_agents
from coordopt.rl.rollout import RunningMeanStd
from coordopt.rl.warmstart import (
    behaviour_clone,
    expert_name,
    graph_parts,
    make_expert,
    pretrain_critic,
)
from coordopt.simulator import SimParams


@pytest.mark.parametrize("group", [0, 4])  # full-batch steps; steps on groups of 4 envs
def test_behaviour_cloning_halves_the_imitation_loss_on_tiny(group: int) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(
        hidden_size=32,
        bc_rounds=2,
        bc_envs=16,
        bc_epochs=60 if group == 0 else 15,
        bc_minibatch_envs=group,
        bc_lr=1e-2,
        critic_pretrain_epochs=60,
    )
    params = SimParams.from_instance(load_instance("tiny"))
    ctx = build_context(params, cfg.order_bins)
    agents = build_agents(cfg, params)
    gens = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    report = behaviour_clone(agents, ctx, make_policy("siloed", params), cfg, *gens)
    before = sum(report.nll_before.values())
    after = sum(report.nll_after.values())
    assert after < 0.5 * before, (report.nll_before, report.nll_after)
    assert report.nll_after["recommendation"] < 0.5 * report.nll_before["recommendation"]
    assert report.nll_after["replenishment"] < 0.5 * report.nll_before["replenishment"]
    assert report.states == 2 * 16 * params.horizon
    norms = {n: RunningMeanStd() for n in agents.value_streams}
    losses = pretrain_critic(agents, ctx, cfg, 1.0, norms, *gens)
    assert losses["firm"] < 0.5  # normalised targets have variance ~1: the fit explains most


def test_graph_parts_cap_the_cells_of_one_backward_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    params = SimParams.from_instance(load_instance("tiny"))
    cells = params.horizon * params.n_products * params.n_segments
    envs = torch.arange(7)
    assert [len(p) for p in graph_parts(envs, params)] == [7]
    monkeypatch.setattr(warmstart, "GRAPH_CELLS", 3 * cells)
    parts = graph_parts(envs, params)
    assert [len(p) for p in parts] == [3, 2, 2] and torch.equal(torch.cat(parts), envs)
    monkeypatch.setattr(warmstart, "GRAPH_CELLS", 1)  # never fewer than one environment a part
    assert [len(p) for p in graph_parts(envs, params)] == [1] * 7


def test_cloning_in_parts_takes_the_same_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting a group's backward pass into parts (memory) leaves cloning and the critic's
    fit unchanged: the parts' gradients add up to the group's."""
    cfg = TrainConfig(
        hidden_size=16, bc_rounds=2, bc_envs=6, bc_epochs=3, bc_minibatch_envs=3,
        critic_pretrain_epochs=3,
    )  # fmt: skip
    params = SimParams.from_instance(load_instance("tiny"))
    ctx = build_context(params, cfg.order_bins)
    trained = []
    for cap in (warmstart.GRAPH_CELLS, params.horizon * params.n_products * params.n_segments):
        monkeypatch.setattr(warmstart, "GRAPH_CELLS", cap)
        torch.manual_seed(0)
        agents = build_agents(cfg, params)
        gens = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        report = behaviour_clone(agents, ctx, make_policy("siloed", params), cfg, *gens)
        norms = {n: RunningMeanStd() for n in agents.value_streams}
        losses = pretrain_critic(agents, ctx, cfg, 1.0, norms, *gens)
        trained.append((agents.state_dict(), report.nll_after, losses))
    (whole, nll_whole, loss_whole), (parts, nll_parts, loss_parts) = trained
    for key, value in whole.items():
        torch.testing.assert_close(parts[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert nll_parts == pytest.approx(nll_whole, rel=1e-4)
    assert loss_parts == pytest.approx(loss_whole, rel=1e-4)


def test_order_head_learns_a_state_dependent_rule() -> None:
    """Order bins that are a function of on-hand stock must be fitted beyond their marginal law.

    Guards against an actor that can only learn the marginal: a zero-initialised output layer
    under Adam saturated the hidden units, and cloning MPC on ``small`` stalled at the
    marginal's NLL (greedy clone far below the siloed baseline).
    """
    torch.manual_seed(0)
    params = SimParams.from_instance(load_instance("small"))
    ctx = build_context(params, 16)
    actor = build_agents(TrainConfig(hidden_size=32, order_bins=16), params).replenishment
    batch, n = 64, params.n_products
    names = feature_names("coordinated")["ops"]
    obs = torch.rand(batch, n, len(names))
    target = (obs[..., names.index("ops.on_hand")] * 8).floor().long()  # on-hand / demand scale
    freq = torch.bincount(target.flatten(), minlength=16).float()
    freq = freq[freq > 0] / freq.sum()
    marginal = float(-(freq * freq.log()).sum())
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    # one period: the actors take time-major (T, B, ...) observations
    observation = Observation(obs, obs, obs, torch.zeros(batch, len(GLOBAL))).map(lambda x: x[None])
    for _ in range(150):
        logits, _ = actor(observation, ctx, torch.zeros(batch, 32))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * marginal, (float(loss.detach()), marginal)


def test_auto_expert_is_the_dp_when_it_fits_else_a_teacher_trial() -> None:
    tiny = SimParams.from_instance(load_instance("tiny"))
    assert make_expert("auto", tiny).name == "dp"
    # no max_order on small: no finite DP; the trial (tests/rl/test_teacher_trial.py) decides
    assert expert_name("auto", load_instance("small")) == warmstart.TRIAL
    assert expert_name("auto", load_instance("large")) == warmstart.TRIAL
    assert expert_name("mpc", load_instance("small")) == "mpc"  # a named expert stays
    assert TrainConfig().warm_start == "auto"
