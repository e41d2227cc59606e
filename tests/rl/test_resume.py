"""Runs know what they are: resume checks identity, finished runs stay put, --init fine-tunes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rl_budget import FAST
from run_dirs import copy_run

from coordopt.case_studies import common
from coordopt.cli import main
from coordopt.instance import Instance, content_hash, load_instance, save_instance
from coordopt.rl.checkpoint import CheckpointError
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train

FLAGS = [
    "--hidden-size",
    "16",
    "--num-envs",
    "8",
    "--minibatch-envs",
    "4",
    "--seq-len",
    "4",
    "--critic-pretrain-epochs",
    "3",
    "--eval-every",
    "0",
    "--no-tensorboard",
    "--no-progress",
]


STUDY = {k: v for k, v in FAST.items() if k != "tensorboard"}  # train_agents sets it


def _other_tiny() -> Instance:
    """The bundled tiny with one price changed: same name, other content."""
    tiny = load_instance("tiny")
    return tiny.replace(price=tiny.price * 1.1)


def test_instance_hash_is_of_the_content_not_the_name() -> None:
    tiny = load_instance("tiny")
    assert content_hash(tiny) == content_hash(tiny.replace(name="renamed"))
    assert content_hash(tiny) != content_hash(_other_tiny())
    assert content_hash(tiny) != content_hash(load_instance("small"))


def test_resume_refuses_another_instance_or_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    config = TrainConfig(iterations=1, warm_start="none", **FAST)
    train(load_instance("tiny"), config, out, progress=False)
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    more = TrainConfig(iterations=2, warm_start="none", **FAST)
    with pytest.raises(CheckpointError, match="instance: the run was trained on 'tiny'"):
        train(_other_tiny(), more, out, resume=True, progress=False)
    other = TrainConfig(**{**more.to_dict(), "hidden_size": 32, "clip": 0.3})
    with pytest.raises(CheckpointError, match=r"hidden_size: run 16, now 32; clip: run 0.2"):
        train(load_instance("tiny"), other, out, resume=True, progress=False)
    argv = ["train", "small", "--out", str(out), "--resume", "--iterations", "2"]
    assert main(argv) == 2
    assert "instance: the run was trained on 'tiny'" in capsys.readouterr().err
    assert main([*argv[:1], "tiny", *argv[2:], "--seed", "7"]) == 2
    assert "seed: run 0, now 7" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    # the same instance and settings (the budget may grow) resume; the saved config is kept
    assert main(["train", "tiny", "--out", str(out), "--resume", "--iterations", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == 2


def test_resuming_a_finished_run_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    config = TrainConfig(iterations=2, warm_start="none", **FAST)
    first = train(load_instance("tiny"), config, out, progress=False)
    stamp = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in out.iterdir()}
    again = train(load_instance("tiny"), config, out, resume=True, progress=False)
    assert "finished at iteration 2" in capsys.readouterr().err
    assert again.as_dict() == json.loads(json.dumps(first.as_dict(), default=float))
    assert main(["train", "tiny", "--out", str(out), "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 2
    assert {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in out.iterdir()} == stamp


def test_a_run_resumed_after_the_clones_evaluation_reports_what_ppo_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupted right after the evaluation before PPO (the warm-started clone's) and
    resumed: its checkpoint keeps the clone's per-episode profits, so the later evaluations
    are paired with them as in the uninterrupted run (the same ``vs_initial`` and 95%
    half-width). A stored list with a NaN, a string or more entries than evaluation episodes
    is refused naming the field."""
    inst = load_instance("tiny")
    flags = {**FAST, "eval_every": 1, "eval_episodes": 8}
    whole = train(inst, TrainConfig(iterations=2, **flags), tmp_path / "whole", progress=False)
    train(inst, TrainConfig(iterations=0, **flags), tmp_path / "split", progress=False)
    split = train(
        inst, TrainConfig(iterations=2, **flags), tmp_path / "split", resume=True, progress=False
    )
    summaries = [json.loads((r.out_dir / "summary.json").read_text()) for r in (whole, split)]
    for key in ("best_eval", "final_eval"):
        full, resumed = (s[key] for s in summaries)
        assert {"vs_initial", "vs_initial_ci95"} <= set(resumed), resumed
        for field in ("vs_initial", "vs_initial_ci95", "mean"):
            assert resumed[field] == full[field], (key, field)
    assert summaries[1]["final_eval"]["iteration"] == 1  # made after the resume
    argv = ["train", "tiny", "--resume", "--iterations", "3", "--no-progress"]
    for case, problem in (
        ("nan", "field 'initial_profits.3' must be a finite number, got nan"),
        ("string", "field 'initial_profits.0' must be a number, got '12.5'"),
        ("too many", "holds 16 episodes' profits, its configuration's eval_episodes is 8"),
        ("not a list", "field 'initial_profits' must be a list"),
    ):
        run = copy_run(tmp_path / "split", tmp_path / case)
        blob = torch.load(run / "checkpoint.pt", weights_only=True)
        meta = json.loads(blob["meta"])
        profits = meta["initial_profits"]
        assert len(profits) == 8
        meta["initial_profits"] = {
            "nan": [*profits[:3], float("nan"), *profits[4:]],
            "string": ["12.5", *profits[1:]],
            "too many": profits * 2,
            "not a list": {"0": profits[0]},
        }[case]
        torch.save({**blob, "meta": json.dumps(meta)}, run / "checkpoint.pt")
        assert main([*argv, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert "checkpoint.pt: its metadata's " in err and problem in err, (case, err)


def test_init_fine_tunes_the_agents_of_another_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, new = tmp_path / "tiny-run", tmp_path / "small-run"
    train(load_instance("tiny"), TrainConfig(iterations=1, **FAST), source, progress=False)
    # architecture flags default to the source run's (hidden size 16 here)
    argv = ["train", "small", "--init", str(source), "--out", str(new), "--warm-start", "none"]
    assert main([*argv, *FLAGS[2:], "--iterations", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["init"]["instance"] == {
        "name": "tiny",
        "hash": content_hash(load_instance("tiny")),
    }
    assert summary["init"]["iteration"] == 1 and summary["init"]["config"]["hidden_size"] == 16
    assert summary["instance"]["hash"] == content_hash(load_instance("small"))
    assert summary["warm_start"] is None and summary["env_steps"] > 0  # the critic's refit
    src = torch.load(source / "checkpoint.pt", weights_only=True)
    got = torch.load(new / "final.pt", weights_only=True)
    actors = [k for k in src["agents"] if not k.startswith("critics.")]
    assert actors and all(torch.equal(src["agents"][k], got["agents"][k]) for k in actors)
    assert json.loads(got["meta"])["iteration"] == 0  # a fresh counter
    # fine-tune for an iteration, then evaluate on small
    tuned = tmp_path / "tuned"
    argv = ["train", "small", "--init", str(source), "--out", str(tuned), "--warm-start", "none"]
    assert main([*argv, *FLAGS[2:], "--iterations", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 1
    assert main(["evaluate", "small", "--policy", str(tuned), "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    # with an expert, cloning continues from the loaded agents (the first round's NLL starts
    # where they are, not at a fresh network's); --bc-rounds 0 skips it
    cloned = train(
        load_instance("small"),
        TrainConfig(iterations=0, warm_start="siloed", **{**FAST, "hidden_size": 16}),
        tmp_path / "cloned",
        init=source,
        progress=False,
    )
    report = json.loads((cloned.out_dir / "summary.json").read_text())
    assert report["init"]["run"] == str(source) and report["warm_start"]["expert"] == "siloed"
    fresh = train(
        load_instance("small"),
        TrainConfig(iterations=0, warm_start="siloed", **{**FAST, "hidden_size": 16}),
        tmp_path / "fresh",
        progress=False,
    )
    before = json.loads((fresh.out_dir / "summary.json").read_text())["warm_start"]["nll_before"]
    assert report["warm_start"]["nll_before"] != before  # started from the loaded weights
    skipped = TrainConfig(iterations=0, warm_start="siloed", **{**FAST, "bc_rounds": 0})
    kept = train(
        load_instance("small"), skipped, tmp_path / "ppo-only", init=source, progress=False
    )
    assert json.loads((kept.out_dir / "summary.json").read_text())["warm_start"] is None
    # incompatible networks, and --init with --resume, are refused
    bad = [*argv[:5], str(tmp_path / "bad"), "--hidden-size", "32", "--iterations", "1"]
    assert main(bad) == 2
    assert "hidden_size: source 16, this run 32" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 2  # argparse: not allowed with --init
    with pytest.raises(ValueError, match="mutually exclusive"):
        train(load_instance("small"), TrainConfig(**FAST), tuned, resume=True, init=source)


def _fast_train_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    real = common.train_agents

    def fast(*args: Any, **overrides: Any) -> Any:
        return real(*args, **{**STUDY, "bc_epochs": 1, "critic_pretrain_epochs": 1, **overrides})

    monkeypatch.setattr(common, "train_agents", fast)


def test_init_carries_agents_across_generated_catalogs_of_other_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from coordopt.generator import generate_instance

    paths = []
    for n, m in ((4, 2), (12, 5)):
        inst = generate_instance(seed=n, n_products=n, n_segments=m, horizon=6, slate_size=2)
        paths.append(save_instance(inst, tmp_path / f"gen{n}.npz"))
    source, tuned = tmp_path / "source", tmp_path / "tuned"
    # a named teacher: auto would run its teacher trial on these catalogs (no exact DP)
    teacher = ["--warm-start", "bidprice"]
    argv = ["train", str(paths[0]), "--out", str(source), *FLAGS, *teacher, "--iterations", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    # fine-tune on the bigger catalog with the imitation penalty toward its own expert
    argv = ["train", str(paths[1]), "--init", str(source), "--out", str(tuned), *FLAGS[2:]]
    assert main([*argv, *teacher, "--iterations", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["iterations"] == 2 and summary["init"]["instance"]["name"] == "synthetic-n4-m2-s4"
    )
    rows = list(csv.DictReader((tuned / "log.csv").open()))
    assert float(rows[0]["bc_coef"]) > 0 and math.isfinite(float(rows[0]["bc_nll_replenishment"]))
    assert main(["evaluate", str(paths[1]), "--policy", str(tuned), "--episodes", "2"]) == 0


def test_train_agents_resumes_only_a_matching_run(tmp_path: Path) -> None:
    tiny = load_instance("tiny")
    _, info = common.train_agents(tiny, "rl-multi-cold", 0, 1, tmp_path, **STUDY)
    assert info["iterations"] == 1
    _, info = common.train_agents(tiny, "rl-multi-cold", 0, 2, tmp_path, **STUDY)
    assert info["iterations"] == 2  # resumed: same instance and settings, a larger budget
    with pytest.raises(CheckpointError, match="instance: the run was trained on 'tiny'"):
        common.train_agents(_other_tiny(), "rl-multi-cold", 0, 2, tmp_path, **STUDY)
    with pytest.raises(CheckpointError, match="seed: run 0, now 1"):
        common.train_agents(tiny, "rl-multi-cold", 1, 2, tmp_path, **STUDY)


def test_demo_reports_agents_trained_on_its_own_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fast_train_agents(monkeypatch)
    other = save_instance(_other_tiny(), tmp_path / "other.toml")
    argv = ["--iterations", "1", "--episodes", "2", "--out", str(tmp_path / "demo"), "--json"]
    runs = {}
    for name in ("tiny", str(other)):
        assert main(["demo", name, *argv]) == 0
        report = json.loads(capsys.readouterr().out)
        run = Path(report["training"]["run_dir"])
        summary = json.loads((run / "summary.json").read_text())
        assert summary["instance"]["hash"] == content_hash(load_instance(name))
        runs[name] = run
    assert runs["tiny"] != runs[str(other)]  # same name, other content: its own agents
