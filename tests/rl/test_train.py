"""Training runs: resume equals an uninterrupted run; CLI smoke; the trained policy evaluates."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from rl_budget import FAST

from coordopt.cli import main
from coordopt.evaluation import evaluate
from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.rl.config import TrainConfig, field_docs
from coordopt.rl.ppo import TrainResult, train
from coordopt.simulator import SimParams


def _params(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "final.pt", weights_only=True)["agents"]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    inst = load_instance("tiny")
    cfg = TrainConfig(iterations=4, **FAST)
    train(inst, cfg, tmp_path / "full", progress=False)
    train(inst, TrainConfig(iterations=2, **FAST), tmp_path / "split", progress=False)
    first_half = _params(tmp_path / "split")
    train(inst, cfg, tmp_path / "split", resume=True, progress=False)
    full, split = _params(tmp_path / "full"), _params(tmp_path / "split")
    assert full.keys() == split.keys()
    for k in full:
        assert torch.equal(full[k], split[k]), k
    assert any(not torch.equal(first_half[k], full[k]) for k in full)  # iterations 3-4 did learn
    rows = list(csv.DictReader((tmp_path / "split" / "log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="--resume"):
        train(inst, cfg, tmp_path / "full", progress=False)


def test_cli_smoke_and_trained_policy_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "train",
        "tiny",
        "--out",
        str(out),
        "--iterations",
        "2",
        "--num-envs",
        "8",
        "--minibatch-envs",
        "4",
        "--hidden-size",
        "16",
        "--bc-rounds",
        "1",
        "--bc-envs",
        "8",
        "--bc-epochs",
        "2",
        "--critic-pretrain-epochs",
        "2",
        "--eval-every",
        "1",
        "--eval-episodes",
        "8",
        "--no-tensorboard",
        "--no-progress",
        "--json",
        "--timescales",
        "independent",
        "--information",
        "siloed",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    # the budget counts the warm start's simulations: one DAgger round and the critic's rollout
    assert summary["warm_start"]["expert"] == "dp"  # auto: tiny is DP-sized
    assert summary["warm_start"]["env_steps"] == 2 * 8 * 8
    assert summary["iterations"] == 2 and summary["env_steps"] == 2 * 8 * 8 + 2 * 8 * 8
    assert summary["steps_per_second"] > 0 and "siloed" in summary["baselines"]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 2 and all(
        r["eval_profit"] and float(r["steps_per_second"]) > 0 for r in rows
    )
    # the warm-started agents are evaluated before PPO; best.pt holds the best evaluation
    evals = [summary["initial_eval"]["mean"]] + [float(r["eval_profit"]) for r in rows]
    assert summary["initial_eval"]["env_steps"] == summary["warm_start"]["env_steps"]
    assert summary["best_eval"]["mean"] == max(evals) and (out / "best.pt").is_file()
    # greedy or sampled for best.pt, by a paired evaluation on the training's stream: greedy is
    # best.pt's own evaluation; sampled is chosen only beyond the interval
    d = summary["decoding"]
    assert d["greedy"] == pytest.approx(summary["best_eval"]["mean"], rel=1e-12)
    assert d["sampled_minus_greedy"] == pytest.approx(d["sampled"] - d["greedy"], abs=1e-6)
    assert d["deterministic"] == (d["sampled_minus_greedy"] - d["ci95"] <= 0)
    # the run directory is a policy acting as the run chose (another checkpoint: greedy), the
    # same numbers for the same seed; size-agnostic: it runs on small too
    params = SimParams.from_instance(load_instance("tiny"))
    assert make_policy(str(out), params).deterministic == d["deterministic"]
    assert make_policy(str(out), params, checkpoint="final.pt").deterministic
    a = evaluate(params, make_policy(str(out), params), episodes=8, seed=3)
    b = evaluate(params, make_policy(str(out), params), episodes=8, seed=3)
    assert (a.profit == b.profit).all()
    flipped = {**summary, "decoding": {**d, "deterministic": not d["deterministic"]}}
    (out / "summary.json").write_text(json.dumps(flipped))
    assert make_policy(str(out), params).deterministic != d["deterministic"]
    assert make_policy(str(out), params, deterministic=True).deterministic
    small = SimParams.from_instance(load_instance("small"))
    ev = evaluate(small, make_policy(str(out), small, deterministic=False), episodes=2, seed=0)
    assert ev.profit.shape == (2,)
    # the evaluate command simulates in float64: the agents follow the simulator's dtype
    assert main(["evaluate", "tiny", "--policy", str(out), "--episodes", "4", "--json"]) == 0


def test_cli_errors_are_actionable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "tiny", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "tiny", "--out", str(tmp_path / "y"), "--device", "cuda"]) == 7
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["train", "tiny", "--out", str(tmp_path / "z"), "--num-envs", "0"]) == 2
    assert "--num-envs" in capsys.readouterr().err


def test_every_config_field_is_documented() -> None:
    docs = field_docs()
    assert set(docs) == set(TrainConfig.__dataclass_fields__)
    assert all(len(d) > 10 and "\n" not in d for d in docs.values())


def test_factorised_scorer_trains_and_runs_at_another_size(tmp_path: Path) -> None:
    config = TrainConfig(iterations=2, seed=0, scorer="factorised", **FAST)
    train(load_instance("tiny"), config, tmp_path / "run", progress=False)
    params = SimParams.from_instance(load_instance("small"))
    policy = make_policy(str(tmp_path / "run"), params)
    assert policy.agents.recommendation.scorer == "factorised"  # type: ignore[attr-defined]
    ev = evaluate(params, policy, episodes=4, seed=0)
    assert ev.profit.shape == (4,) and bool(torch.isfinite(torch.tensor(ev.profit)).all())


def test_time_budget_stops_after_an_iteration_and_the_run_resumes(tmp_path: Path) -> None:
    inst = load_instance("tiny")
    train(inst, TrainConfig(iterations=3, **FAST), tmp_path / "full", progress=False)
    short = TrainConfig(iterations=3, time_budget=1e-9, **FAST)
    result = train(inst, short, tmp_path / "split", progress=False)
    assert result.iterations == 1  # stopped after the first iteration, checkpointed
    assert result.stop == "time_budget"  # and says why: the clock, not the seed, ended it
    assert TrainResult.read(tmp_path / "split").stop == "time_budget"
    cont = TrainConfig(iterations=3, time_budget=0.0, **FAST)
    resumed = train(inst, cont, tmp_path / "split", resume=True, progress=False)
    assert resumed.iterations == 3 and resumed.stop == "iterations"
    full, split = _params(tmp_path / "full"), _params(tmp_path / "split")
    assert all(torch.equal(full[k], split[k]) for k in full)


def test_catalog_scale_defaults_come_from_the_instance_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from coordopt.rl.config import SCALE_DEFAULTS, at_catalog_scale, size_defaults

    large, medium = load_instance("large"), load_instance("medium")
    assert at_catalog_scale(large) and not at_catalog_scale(medium)
    assert size_defaults(medium) == {}
    config = TrainConfig(**size_defaults(large))
    assert config.time_budget > 0 and config.num_envs < TrainConfig().num_envs
    assert set(SCALE_DEFAULTS) <= set(field_docs())  # every one is a documented flag
    assert main(["train", "--help"]) == 0
    assert "(default: 0.0; at catalog scale: 45.0)" in " ".join(capsys.readouterr().out.split())
    # the bid-price teacher's catalog solve counts in the size guard's estimate
    from coordopt.commands.train import training_work

    assert config.plan_inputs and not TrainConfig().plan_inputs
    assert training_work(config, large)["catalog_solve"]
    assert "teacher_inputs" not in size_defaults(large, {"warm_start": "none"})  # no teacher
    cold = dataclasses.replace(config, warm_start="none", teacher_inputs=False)
    assert training_work(cold, large)["catalog_solve"]  # the plan the agents observe
    assert not training_work(dataclasses.replace(cold, plan_inputs=False), large)["catalog_solve"]


def test_agents_that_observe_the_plan_train_and_run_on_another_instance(tmp_path: Path) -> None:
    """A run with --plan-inputs saves agents with the wide-and-deep order head; loaded on
    another instance they observe that instance's own plan; --init into agents without the
    plan inputs is refused, naming the flag."""
    from coordopt.rl.checkpoint import CheckpointError

    config = TrainConfig(iterations=1, plan_inputs=True, warm_start="bidprice", **FAST)
    train(load_instance("tiny"), config, tmp_path / "run", progress=False)
    assert "replenishment.skip.weight" in _params(tmp_path / "run")
    params = SimParams.from_instance(load_instance("small"))
    policy = make_policy(str(tmp_path / "run"), params)
    ctx = policy.ctx  # type: ignore[attr-defined]
    assert ctx.plan is not None and ctx.plan.target.shape == (params.horizon + 1, 10)
    ev = evaluate(params, policy, episodes=4, seed=0)
    assert bool(torch.isfinite(torch.tensor(ev.profit)).all())
    plain = TrainConfig(iterations=1, warm_start="none", **FAST)
    with pytest.raises(CheckpointError, match="plan_inputs: source True, this run False"):
        train(load_instance("tiny"), plain, tmp_path / "b", init=tmp_path / "run", progress=False)


def test_agents_that_see_their_teachers_decisions_record_it_and_rebuild_it(
    tmp_path: Path,
) -> None:
    """--teacher-inputs: cloning learns to follow the teacher's decisions (both skip weights
    grow from zero); the run records the teacher's spec and a loaded policy rebuilds that
    teacher on the instance it acts on; a checkpoint naming none, or naming no teacher, is
    refused; --init from agents without the inputs starts their weights at zero."""
    from coordopt.rl.checkpoint import CheckpointError
    from coordopt.solvers.lagrangian import StaticMarginPolicy

    with pytest.raises(ValueError, match="--teacher-inputs needs a teacher"):
        TrainConfig(teacher_inputs=True, warm_start="none")
    spec = "static:max_states=4096"
    config = TrainConfig(iterations=1, teacher_inputs=True, warm_start=spec, **FAST)
    out = tmp_path / "run"
    train(load_instance("small"), config, out, progress=False)
    weights = _params(out)
    assert float(weights["replenishment.guide_weight"]) > 0
    assert float(weights["recommendation.guide_weight"]) > 0
    blob = torch.load(out / "final.pt", weights_only=True)
    assert json.loads(blob["meta"])["guide"] == spec
    params = SimParams.from_instance(load_instance("tiny"))
    policy = make_policy(str(out), params)
    guide = policy.ctx.guide  # type: ignore[attr-defined]
    assert isinstance(guide, StaticMarginPolicy) and guide.params is params
    assert bool(torch.isfinite(torch.tensor(evaluate(params, policy, 4, 0).profit)).all())
    for value, message in ((None, "names no teacher"), ("nonsense", "field 'guide'")):
        meta = json.loads(blob["meta"]) | {"guide": value}
        torch.save({**blob, "meta": json.dumps(meta)}, out / "final.pt")
        (out / "best.pt").unlink(missing_ok=True)
        with pytest.raises(CheckpointError, match=message):
            make_policy(str(out), params)
    plain = TrainConfig(iterations=1, warm_start="none", **FAST)
    train(load_instance("tiny"), plain, tmp_path / "plain", progress=False)
    tuned = dataclasses.replace(config, iterations=0, bc_rounds=0)
    train(load_instance("tiny"), tuned, tmp_path / "tuned", init=tmp_path / "plain", progress=False)
    assert float(_params(tmp_path / "tuned")["replenishment.guide_weight"]) == 0.0
