"""``--warm-start``: teacher specs with options, checked like ``evaluate --policy``; ``auto``
is the exact DP where it fits, else the strongest candidate of a short teacher trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coordopt.cli import build_parser, main
from coordopt.evaluation import evaluate
from coordopt.guards import ExitCode
from coordopt.instance import load_instance
from coordopt.policies import make_policy, teachers
from coordopt.rl import warmstart
from coordopt.rl.checkpoint import resume_config
from coordopt.rl.config import TrainConfig
from coordopt.rl.rundir import CONFIG, CheckpointError
from coordopt.rl.warmstart import TRIAL, choose_expert, expert_name, make_expert
from coordopt.simulator import SimParams

ACCEPTED = [
    "auto",
    "none",
    *teachers(),
    "siloed:inventory=dp",
    "siloed:season_end=false",
    "lagrangian:max_states=64;iterations=8",
    "bidprice:reoptimize_every=0",
    "siloed:inventory=dp;max_states=4096",
]
REFUSED = {
    "siloed:inventory=evil": "option inventory must be one of base-stock, dp, got 'evil'",
    "os.system": "NAME one of siloed",
    "null": "NAME one of siloed",  # a policy, but not a teacher
    "auto:seed=1": "NAME one of siloed",
    "lagrangian:max_states=0": "option max_states must be >= 1",
    "bidprice:nonsense=1": "option nonsense is not one it takes",
    "siloed:inventory": "options are KEY=VALUE",
    "": "got ''",
}


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("spec", ACCEPTED)
def test_warm_start_accepts_auto_none_and_teacher_specs(spec: str) -> None:
    assert TrainConfig(warm_start=spec).warm_start == spec
    args = build_parser().parse_args(["train", "tiny", "--out", "x", "--warm-start", spec])
    assert args.warm_start == spec


@pytest.mark.parametrize(("spec", "why"), REFUSED.items())
def test_a_bad_warm_start_is_refused_naming_the_flag_the_value_and_what_is_allowed(
    spec: str, why: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    allowed = "auto, none or a teacher NAME[:KEY=VALUE;...] with NAME one of"
    with pytest.raises(ValueError, match="--warm-start") as caught:
        TrainConfig(warm_start=spec)
    assert why in str(caught.value) and allowed in str(caught.value)
    out = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(out), "--warm-start", spec]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "argument --warm-start" in err and why in err and allowed in err
    assert not (out / CONFIG).exists()  # refused before any work


def test_a_saved_config_with_a_hostile_warm_start_is_refused(tmp_path: Path) -> None:
    for hostile in ("siloed:inventory=evil", "os.system", ["bidprice"], 7):
        run = tmp_path / str(abs(hash(str(hostile))))
        run.mkdir()
        saved = {**TrainConfig().to_dict(), "warm_start": hostile}
        (run / CONFIG).write_text(json.dumps(saved))
        with pytest.raises(CheckpointError, match="--warm-start") as caught:
            resume_config(run, {})
        assert "malformed" in str(caught.value)
    saved = {**TrainConfig().to_dict(), "warm_start": "siloed:inventory=dp"}  # a good one reads
    (run / CONFIG).write_text(json.dumps(saved))
    assert resume_config(run, {}).warm_start == "siloed:inventory=dp"


def test_an_expert_is_built_from_its_spec_with_its_own_options() -> None:
    params = SimParams.from_instance(load_instance("tiny"))
    assert make_expert("siloed:season_end=false", params).name == "siloed:season_end=false"
    bidprice = make_expert("bidprice:reoptimize_every=0", params, reoptimize=3)
    assert bidprice.reoptimize_every == 0  # type: ignore[attr-defined]  # its own option wins
    assert make_expert("bidprice", params, reoptimize=3).reoptimize_every == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="NAME one of"):
        make_expert("null", params)


# --------------------------------------------------------------------------- auto


def test_auto_is_the_dp_where_it_fits_without_a_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_trial(*args: object, **kwargs: object) -> None:
        raise AssertionError("a teacher trial where the DP fits")

    monkeypatch.setattr(warmstart, "teacher_trial", no_trial)
    tiny = SimParams.from_instance(load_instance("tiny"))
    expert, trial = choose_expert("auto", tiny)
    assert expert.name == "dp" and trial is None
    assert expert_name("auto", load_instance("small")) == TRIAL  # no finite DP there
    assert expert_name("siloed:inventory=dp", load_instance("small")) == "siloed:inventory=dp"
    assert TrainConfig().warm_start == "auto"


CHEAP = ("siloed:season_end=false", "bidprice:reoptimize_every=0", "siloed")
"""Candidates that build in a second on ``tiny`` (the real ones solve programs)."""


@pytest.fixture
def no_dp(monkeypatch: pytest.MonkeyPatch) -> SimParams:
    """``tiny`` as if its exact DP did not fit, with :data:`CHEAP` candidates."""
    monkeypatch.setattr(warmstart, "reference_method", lambda inst: "fluid")
    monkeypatch.setattr(warmstart, "TRIAL_CANDIDATES", CHEAP)
    return SimParams.from_instance(load_instance("tiny"))


def test_the_trial_picks_the_highest_measured_mean_deterministically(
    no_dp: SimParams, capsys: pytest.CaptureFixture[str]
) -> None:
    expert, trial = choose_expert("auto", no_dp, episodes=6, seed=3)
    assert trial is not None
    report = trial.as_dict()
    means = {r["teacher"]: r["mean"] for r in report["candidates"]}
    assert set(means) == set(CHEAP) and report["skipped"] == []
    assert report["winner"] == max(means, key=lambda k: means[k]) == expert.name
    assert [r["mean"] for r in report["candidates"]] == sorted(means.values(), reverse=True)
    # the means are each candidate's own evaluation on the same stream (common random numbers)
    for spec, mean in means.items():
        assert evaluate(no_dp, make_policy(spec, no_dp), episodes=6, seed=3).mean == mean
    win = report["candidates"][0]
    assert win["vs_winner"] == 0.0
    for r in report["candidates"][1:]:
        assert r["vs_winner"] == pytest.approx(r["mean"] - win["mean"])
        assert np.isfinite(r["vs_winner_ci95"]) and r["vs_winner_ci95"] >= 0
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "teacher trial" in ln]
    assert line.startswith("teacher trial (6 episodes, seed 3): " + report["winner"])
    assert trial.plan_teacher is not None  # the bid-price candidate, for the agents' plan
    again = choose_expert("auto", no_dp, episodes=6, seed=3)[1]
    assert again is not None and again.as_dict()["candidates"] == [
        {**r, "seconds": again.ranked[i]["seconds"]} for i, r in enumerate(report["candidates"])
    ]  # the same choice and numbers for the same seed (only the wall times differ)


def test_a_candidate_over_the_cost_cap_is_skipped_and_said_so(
    no_dp: SimParams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(warmstart, "TRIAL_CANDIDATES", (*CHEAP, "siloed:inventory=dp"))
    priced = warmstart.trial_seconds("siloed:inventory=dp", no_dp.instance, 4)
    cheap = max(warmstart.trial_seconds(c, no_dp.instance, 4) for c in CHEAP)
    assert cheap < priced  # per-product programs are priced at their state cap
    monkeypatch.setattr(warmstart, "TRIAL_SECONDS", (cheap + priced) / 2)

    def built(text: str, *args: object) -> object:
        assert text != "siloed:inventory=dp", "a skipped candidate was built"
        return make(text, *args)

    make = warmstart._make
    monkeypatch.setattr(warmstart, "_make", built)
    _, trial = choose_expert("auto", no_dp, episodes=4, seed=0)
    assert trial is not None
    (skip,) = trial.as_dict()["skipped"]
    assert skip["teacher"] == "siloed:inventory=dp"
    assert skip["estimated_seconds"] == pytest.approx(priced)
    assert {r["teacher"] for r in trial.ranked} == set(CHEAP)
    assert "skipped siloed:inventory=dp (estimated" in capsys.readouterr().err
    monkeypatch.setattr(warmstart, "TRIAL_SECONDS", 0.0)  # nothing left to try: refused, clearly
    with pytest.raises(ValueError, match="no candidate teacher"):
        choose_expert("auto", no_dp, episodes=4, seed=0)


def test_training_reports_the_trial_in_its_summary(no_dp: SimParams, tmp_path: Path) -> None:
    from coordopt.rl.ppo import train

    config = TrainConfig(
        iterations=1, num_envs=2, minibatch_envs=2, hidden_size=8, eval_every=0,
        bc_rounds=1, bc_envs=2, bc_label_envs=2, bc_epochs=1, critic_pretrain_epochs=1,
        expert_label_envs=1, teacher_episodes=3, tensorboard=False, plan_inputs=True,
    )  # fmt: skip
    result = train(no_dp.instance, config, tmp_path / "run", progress=False)
    report = result.warm_start
    assert report is not None and report["trial"] is not None
    assert report["expert"] == report["trial"]["winner"]
    assert report["trial"]["episodes"] == 3
    assert [r["teacher"] for r in report["trial"]["candidates"]] != []
    # the budget counts every simulated period: the trial's candidates, one DAgger round and
    # the critic's rollout (2 environments each), then one PPO iteration's
    h = no_dp.horizon
    tried = len(report["trial"]["candidates"]) * 3 * h
    assert report["env_steps"] == tried + 2 * 2 * h == result.env_steps - 2 * h
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["warm_start"]["trial"]["winner"] == report["expert"]


def test_teacher_episodes_applies_only_with_auto(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["train", "tiny", "--out", str(tmp_path / "run"), "--teacher-episodes", "4"]
    assert main([*argv, "--warm-start", "siloed"]) == ExitCode.USAGE
    assert "--teacher-episodes: applies only with --warm-start auto" in capsys.readouterr().err
    assert main([*argv[:-1], "0"]) == ExitCode.USAGE
    assert "argument --teacher-episodes: must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--teacher-episodes must be >= 1"):
        TrainConfig(teacher_episodes=0)


class Stop(Exception):
    """Stops ``coordopt train`` before training."""


def test_train_says_the_teacher_is_the_trials_and_prices_every_candidate(
    no_dp: SimParams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    from coordopt.commands.train import training_work
    from coordopt.rl import ppo

    def stop(*args: object, **kwargs: object) -> None:
        raise Stop

    monkeypatch.setattr(ppo, "train", stop)
    assert main(["train", "tiny", "--out", str(tmp_path / "run")]) == ExitCode.INTERNAL
    assert "warm start: auto (teacher trial), " in capsys.readouterr().err
    inst = no_dp.instance
    config = TrainConfig(teacher_episodes=5, eval_every=0)
    work = training_work(config, inst)
    assert work["catalog_solve"] and work["episodes"] == 5 * len(CHEAP)  # bidprice among them
    named = training_work(TrainConfig(warm_start="siloed", eval_every=0), inst)
    assert not named["catalog_solve"] and named["episodes"] == 0
    monkeypatch.setattr(warmstart, "TRIAL_CANDIDATES", ("siloed:inventory=dp",))
    assert training_work(config, inst)["program_seconds"] > 0


@pytest.mark.parametrize(
    "spec", ["siloed:inventory=dp;max_states=64", "lagrangian:iterations=1;max_states=16;grid=2"]
)
def test_the_new_teachers_teach_and_the_agents_still_observe_bid_prices_plan(spec: str) -> None:
    """The best siloed firm and the decomposition policy label states like any expert (their
    float64 orders into the agents' bins), and the plan the agents observe is still bid
    price's, built for them when the teacher is not bid-price control."""
    import torch

    from coordopt.rl.features import build_context
    from coordopt.rl.networks import build_agents
    from coordopt.rl.warmstart import behaviour_clone

    params = SimParams.from_instance(load_instance("tiny"))
    cfg = TrainConfig(
        hidden_size=8, bc_rounds=2, bc_envs=4, bc_label_envs=4, bc_epochs=1, plan_inputs=True
    )
    expert = make_expert(spec, params)
    ctx = build_context(params, cfg.order_bins, plan=True, teacher=expert)
    assert ctx.plan is not None
    gens = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    report = behaviour_clone(build_agents(cfg, params), ctx, expert, cfg, *gens)
    assert report.expert == spec and np.isfinite(report.expert_profit)
    assert all(np.isfinite(v) for v in report.nll_after.values())
