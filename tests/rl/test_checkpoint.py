"""Checkpoints are tensors and plain data: a pickle payload never runs, bad files are refused."""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest
import torch
from rl_budget import FAST

from coordopt.cli import main
from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.rl.checkpoint import RUN_FILES, CheckpointError, load
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train
from coordopt.simulator import SimParams


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's payload would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (eval_every 1, so best.pt exists too)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    config = TrainConfig(iterations=1, **{**FAST, "eval_every": 1, "eval_episodes": 4})
    train(load_instance("tiny"), config, out, progress=False)
    assert all((out / f).is_file() for f in RUN_FILES)
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_pickle_payload_never_runs(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    run = _copy_run(run_dir, tmp_path / "shared")
    for name in RUN_FILES:
        torch.save({"format": "coordopt-rl/2", "meta": Payload(marker)}, run / name)
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(CheckpointError, match=re.escape("best.pt: not a coordopt checkpoint")):
        make_policy(str(run), params)
    assert main(["evaluate", "tiny", "--policy", str(run), "--episodes", "2"]) == 2
    assert "best.pt: not a coordopt checkpoint" in capsys.readouterr().err
    assert main(["train", "tiny", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "checkpoint.pt: not a coordopt checkpoint" in capsys.readouterr().err
    insights = ["insights", "tiny", "--method", str(run), "--episodes", "2", "--no-plots"]
    assert main([*insights, "--out", str(tmp_path / "ins")]) == 2
    assert "best.pt: not a coordopt checkpoint" in capsys.readouterr().err
    argv = ["train", "small", "--init", str(run), "--out", str(tmp_path / "new")]
    assert main(argv) == 2
    assert "best.pt: not a coordopt checkpoint" in capsys.readouterr().err
    assert not marker.exists()
    # the payload is real: the unsafe reader would have run it
    torch.load(run / "best.pt", weights_only=False)
    assert marker.exists()


def _mutate(blob: dict, case: str) -> object:
    if case == "no format":
        return {k: v for k, v in blob.items() if k != "format"}
    if case == "no agents":
        return {k: v for k, v in blob.items() if k != "agents"}
    if case == "not a dict":
        return [1, 2, 3]
    if case == "meta not JSON":
        return {**blob, "meta": "{oops"}
    if case == "unknown config key":
        return {**blob, "meta": blob["meta"].replace('"seed"', '"sneaky"')}
    if case == "weights of the wrong shape":
        agents = dict(blob["agents"])
        key = next(iter(agents))
        agents[key] = torch.zeros(*agents[key].shape, 3)
        return {**blob, "agents": agents}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "no format",
        "no agents",
        "not a dict",
        "meta not JSON",
        "unknown config key",
        "weights of the wrong shape",
    ],
)
def test_malformed_checkpoints_are_refused_naming_the_file(
    run_dir: Path, tmp_path: Path, case: str
) -> None:
    run = _copy_run(run_dir, tmp_path / "run")
    blob = torch.load(run / "best.pt", weights_only=True)
    torch.save(_mutate(blob, case), run / "best.pt")
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(CheckpointError, match=re.escape(str(run / "best.pt"))):
        make_policy(str(run), params)


def test_truncated_and_empty_files_are_refused(run_dir: Path, tmp_path: Path) -> None:
    run = _copy_run(run_dir, tmp_path / "run")
    data = (run / "checkpoint.pt").read_bytes()
    for payload in (data[: len(data) // 2], b""):
        (run / "checkpoint.pt").write_bytes(payload)
        with pytest.raises(
            CheckpointError, match=re.escape("checkpoint.pt: not a coordopt checkpoint")
        ):
            load(run / "checkpoint.pt")


def test_optimiser_state_of_the_wrong_shape_is_refused_on_resume(
    run_dir: Path, tmp_path: Path
) -> None:
    run = _copy_run(run_dir, tmp_path / "run")
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    state = blob["optimisers"]["critic"]["state"]
    first = next(iter(state))
    state[first]["exp_avg"] = torch.zeros(3, 3, 3)
    torch.save(blob, run / "checkpoint.pt")
    config = TrainConfig(iterations=2, **{**FAST, "eval_every": 1, "eval_episodes": 4})
    with pytest.raises(
        CheckpointError, match=re.escape("checkpoint.pt: its training state is malformed")
    ):
        train(load_instance("tiny"), config, run, resume=True, progress=False)


def test_checkpoint_option_is_confined_to_the_run_files(run_dir: Path, tmp_path: Path) -> None:
    params = SimParams.from_instance(load_instance("tiny"))
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((run_dir / "final.pt").read_bytes())
    for bad in (str(outside), "../run/final.pt", "config.json"):
        with pytest.raises(CheckpointError, match=re.escape("must be one of best.pt, final.pt")):
            make_policy(str(run_dir), params, checkpoint=bad)
    policy = make_policy(str(run_dir), params, checkpoint="final.pt")
    assert policy.name == "rl:run"
    # a run file that links out of the run directory is refused as well
    run = _copy_run(run_dir, tmp_path / "linked")
    (run / "best.pt").unlink()
    (run / "best.pt").symlink_to(outside)
    with pytest.raises(CheckpointError, match=re.escape("links out of the run directory")):
        make_policy(str(run), params)


def test_runs_from_before_the_slate_gain_skip_load_with_it_at_zero(tmp_path: Path) -> None:
    """A plan-input run written before ``recommendation.gain_weight`` existed loads with the
    weight at zero (the same agents); any other missing weight is still refused."""
    out = tmp_path / "run"
    config = TrainConfig(iterations=1, plan_inputs=True, **{**FAST, "eval_every": 0})
    train(load_instance("tiny"), config, out, progress=False)
    blob = torch.load(out / "final.pt", weights_only=True)
    old = {k: v for k, v in blob["agents"].items() if k != "recommendation.gain_weight"}
    assert len(old) == len(blob["agents"]) - 1
    torch.save({**blob, "agents": old}, out / "final.pt")
    params = SimParams.from_instance(load_instance("tiny"))
    policy = make_policy(str(out), params)
    assert policy.agents.recommendation.gain_weight.detach().item() == 0.0
    del old["recommendation.score.bias"]
    torch.save({**blob, "agents": old}, out / "final.pt")
    with pytest.raises(CheckpointError, match=re.escape("recommendation.score.bias")):
        make_policy(str(out), params)
