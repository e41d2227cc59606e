"""Credit per decision (``--credit decision``): reward streams that add up to the profit, value
heads per product and segment, the option end to end, and what it changes in PPO at a
catalog-like size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rl_budget import FAST

from coordopt import economics
from coordopt.cli import main
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.rl import credit
from coordopt.rl.checkpoint import init_config, resume_config
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context, observe
from coordopt.rl.networks import build_agents
from coordopt.rl.ppo import train
from coordopt.simulator import (
    Action,
    SimParams,
    choice_terms,
    demand_rates,
    empty_slates,
    period_flows,
    reset,
    step,
)

HEADS = ("critics.firm.product_head.", "critics.firm.segment_head.")


def _random_slates(b: int, m: int, n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Distinct products per segment, some slates stopped after their first slot."""
    slates = torch.rand(b, m, n, generator=gen).argsort(-1)[..., :k]
    stopped = torch.rand(b, m, generator=gen) < 0.3
    slates[..., 1:] = torch.where(stopped[..., None], -1, slates[..., 1:])
    return slates


@pytest.mark.parametrize("stockout", ["lost", "hidden"])
def test_the_streams_per_product_and_per_segment_add_up_to_the_profit(stockout: str) -> None:
    """Every period, random orders and slates: each product's terms add up to the step's terms
    and its profit over products to the reward; the segments' demand rates (built from the
    simulator's own choice coefficients, so one denominator) add up to the simulator's, and
    their shares of the profit to the reward -- also where no segment demands a product
    (hidden mode, out of stock: shared equally), with fixed order costs and salvage."""
    inst = generate_instance(
        GeneratorConfig(n_products=12, n_segments=4, horizon=5, slate_size=2, initial_periods=0.3),
        seed=3,
    )
    inst = inst.replace(stockout=stockout, fixed_order_cost=np.full(inst.n_products, 2.5))
    params = SimParams.from_instance(inst, dtype=torch.float64)
    b, n, m = 16, params.n_products, params.n_segments
    gen = torch.Generator().manual_seed(0)
    state, undemanded = reset(params, b), 0
    for t in range(params.horizon):
        orders = torch.randint(0, 8, (b, n), generator=gen).double()
        slates = _random_slates(b, m, n, 2, gen)
        state, res = step(state, Action(orders=orders, slates=slates), params, gen)
        flows = period_flows(res.orders, res.sales, res.lost, res.available - res.sales, t, params)
        each = economics.product_term_values(flows, params.money, torch.zeros_like(res.sales))
        for name, value in each.items():
            torch.testing.assert_close(value.sum(-1), res.terms[name], rtol=1e-12, atol=1e-9)
        money = credit.product_profits(res, t, params)
        torch.testing.assert_close(money.sum(-1), res.reward, rtol=1e-12, atol=1e-9)
        rates = credit.segment_rates(res.available, slates, params, t)
        torch.testing.assert_close(rates.sum(1), demand_rates(res.available, slates, params, t))
        coef = choice_terms(res.available, slates, params, t).coef  # (B, M)
        buy_or_not = rates.sum(-1) + coef * params.no_purchase  # each segment's choices sum to 1
        torch.testing.assert_close(buy_or_not, params.arrival_rate[t].expand(b, m))
        undemanded += int((rates.sum(1) == 0).sum())
        shares = credit.segment_profits(money, res.available, slates, params, t)
        assert shares.shape == (b, m)
        torch.testing.assert_close(shares.sum(-1), res.reward, rtol=1e-12, atol=1e-9)
        streams = credit.decision_rewards(res, slates, t, params, scale=4.0)
        torch.testing.assert_close(streams["products"], money / 4.0)
        torch.testing.assert_close(streams["segments"], shares / 4.0)
    assert res.terms["salvage"].abs().sum() > 0  # the last period's salvage was counted
    assert (undemanded > 0) == (stockout == "hidden")


def test_the_value_heads_are_shared_across_products_and_segments() -> None:
    """One set of weights values every product and segment of any catalog; the per-decision
    log-probabilities add up to the actors' joint ones."""
    agents = build_agents(TrainConfig(credit="decision", hidden_size=8, scorer="additive"))
    assert agents.value_streams == ("firm", "products", "segments")
    for n, m in ((6, 2), (15, 5)):
        inst = generate_instance(GeneratorConfig(n_products=n, n_segments=m, horizon=3), seed=1)
        params = SimParams.from_instance(inst)
        ctx = build_context(params, 32)
        obs = observe(ctx, reset(params, 3), empty_slates(params, 3), agents.information)
        values = agents.values(obs, ctx)
        assert {k: tuple(v.shape) for k, v in values.items()} == {
            "firm": (3,),
            "products": (3, n),
            "segments": (3, m),
        }
        out = agents.step(obs, ctx, agents.initial_hidden(3, params.device))
        assert out.decision_logp["replenishment"].shape == (3, n)
        assert out.decision_logp["recommendation"].shape == (3, m)
        for a, logp in out.decision_logp.items():
            torch.testing.assert_close(logp.sum(-1), out.logp[a])


def test_joint_credit_builds_the_same_networks_with_the_same_seed() -> None:
    """The value heads are created after every other parameter: a joint run's networks (and so
    its seeded numbers) are those of the agents without the option."""
    torch.manual_seed(0)
    joint = build_agents(TrainConfig(hidden_size=8, scorer="additive", credit="joint")).state_dict()
    torch.manual_seed(0)
    decision = build_agents(
        TrainConfig(hidden_size=8, scorer="additive", credit="decision")
    ).state_dict()
    assert list(joint) == [k for k in decision if not k.startswith(HEADS)]
    assert any(k.startswith(HEADS) for k in decision)
    for k, v in joint.items():
        assert torch.equal(v, decision[k]), k


def test_the_option_is_checked_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--credit must be one of auto, joint, decision"):
        TrainConfig(credit="product")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--credit decision needs the centralised critic"):
        TrainConfig(credit="decision", timescales="independent")


def test_auto_credit_is_per_decision_except_for_independent_learners() -> None:
    assert TrainConfig().per_decision
    assert TrainConfig(timescales="single").per_decision
    assert not TrainConfig(timescales="independent").per_decision  # their rewards: their own
    assert not TrainConfig(credit="joint").per_decision
    # a run saved before the option existed trained with joint credit
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "credit"}
    assert TrainConfig.from_dict(saved).credit == "joint"


def test_train_with_credit_per_decision_records_it_and_what_learning_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``coordopt train --credit decision``: the run's config holds the option (resume and
    ``--init`` keep it), the log the clipped fractions, the summary the clone's and the best
    iteration's profits paired on the evaluation stream."""
    out = tmp_path / "run"
    flags = {**FAST, "eval_every": 1, "eval_episodes": 8, "iterations": 2}
    argv = ["train", "tiny", "--out", str(out), "--credit", "decision", "--json"]
    for name, value in flags.items():
        if isinstance(value, bool):
            argv.append(f"--{'' if value else 'no-'}{name.replace('_', '-')}")
        else:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert json.loads((out / "config.json").read_text())["credit"] == "decision"
    assert resume_config(out, {}).credit == "decision"
    assert init_config(out, {}).credit == "decision"
    best, initial = summary["best_eval"], summary["initial_eval"]
    assert initial["vs_initial"] == 0.0
    assert {"vs_initial", "vs_initial_ci95"} <= set(best)
    assert best["mean"] - initial["mean"] == pytest.approx(best["vs_initial"])
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = dict(zip(header, rows[1].split(","), strict=True))
    assert 0.0 <= float(first["clipfrac_replenishment"]) <= 1.0
    assert first["eval_vs_initial"] != ""


def test_credit_per_decision_keeps_the_first_update_in_the_trust_region_and_improves_a_clone(
    tmp_path: Path,
) -> None:
    """A generated catalog of 120 products and 8 segments, 6 periods, the agents cloned from
    the siloed firm in 3 epochs of one DAgger round: deliberately imperfect (it orders far too
    much and loses money).

    With joint credit one env-period's ratio multiplies 120 order ratios, and the first update
    clips about half of the env-periods; with credit per decision (the same seed, data and step
    sizes) well under 30% of the orders leave the clip range (measured: 0.48-0.59 against
    0.03-0.16 over four instance and training seeds). Eight PPO iterations then improve the
    greedy clone beyond the 95% interval of the paired difference on the evaluation stream (a
    wrong sign, advantage, ratio or stream leaves it where it was or lower).
    """
    inst = generate_instance(
        GeneratorConfig(n_products=120, n_segments=8, horizon=6, slate_size=2), seed=1
    )
    config = dict(
        seed=1,
        warm_start="siloed",
        hidden_size=16,
        num_envs=16,
        minibatch_envs=8,
        seq_len=6,
        bc_rounds=1,
        bc_envs=8,
        bc_epochs=3,
        critic_pretrain_epochs=30,
        bc_coef=0.0,
        timescales="single",
        lr_fast=2e-3,
        warm_lr_scale=1.0,
        epochs_fast=4,
        eval_episodes=32,
        tensorboard=False,
    )
    joint = train(
        inst,
        TrainConfig(iterations=1, eval_every=0, credit="joint", **config),  # type: ignore[arg-type]
        tmp_path / "joint",
        progress=False,
    )
    iterations = 8
    decision = train(
        inst,
        TrainConfig(
            iterations=iterations,
            eval_every=iterations,
            credit="decision",
            **config,  # type: ignore[arg-type]
        ),
        tmp_path / "decision",
        progress=False,
    )
    first = {"joint": joint.history[0], "decision": decision.history[0]}
    assert first["joint"]["clipfrac_replenishment"] > 0.45, first
    assert first["decision"]["clipfrac_replenishment"] < 0.3, first
    best = decision.best_eval
    assert best["vs_initial"] > best["vs_initial_ci95"], (decision.initial_eval, best)
