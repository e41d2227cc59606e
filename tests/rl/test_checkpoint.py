"""Checkpoints are tensors and plain data: a pickle payload never runs, bad files are refused."""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from rl_budget import FAST
from run_dirs import copy_run

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


def test_pickle_payload_never_runs(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    run = copy_run(run_dir, tmp_path / "shared")
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
    run = copy_run(run_dir, tmp_path / "run")
    blob = torch.load(run / "best.pt", weights_only=True)
    torch.save(_mutate(blob, case), run / "best.pt")
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(CheckpointError, match=re.escape(str(run / "best.pt"))):
        make_policy(str(run), params)


def test_truncated_and_empty_files_are_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path / "run")
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
    run = copy_run(run_dir, tmp_path / "run")
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
    run = copy_run(run_dir, tmp_path / "linked")
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


# --------------------------------------------------------------------------- issue 22


def _with_blob(run_dir: Path, tmp_path: Path, name: str, change: Any) -> Path:
    """A copy of the run whose checkpoint ``name`` went through ``change(blob)``."""
    run = copy_run(run_dir, tmp_path / "run")
    blob = torch.load(run / name, weights_only=True)
    torch.save(change(blob) or blob, run / name)
    return run


def _set_meta(blob: dict, **changes: object) -> None:
    meta = json.loads(blob["meta"])
    for key, value in changes.items():
        if key.startswith("config."):
            meta["config"][key.removeprefix("config.")] = value
        else:
            meta[key] = value
    blob["meta"] = json.dumps(meta)


def _first_weight(blob: dict) -> str:
    return next(k for k, v in blob["agents"].items() if v.dim() == 2)


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", "holds NaN or infinite values"),
        ("inf", "holds NaN or infinite values"),
        ("integer", "torch.int64, its network torch.float32"),
        ("float64", "torch.float64, its network torch.float32"),
    ],
)
def test_weights_must_be_finite_floats_of_the_declared_dtype(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    """All-NaN or integer weights used to evaluate as a do-nothing policy with exit 0."""

    def change(blob: dict) -> None:
        for key, w in blob["agents"].items():
            if case == "nan":
                blob["agents"][key] = torch.full_like(w, float("nan"))
            elif case == "inf":
                blob["agents"][key] = torch.full_like(w, float("inf"))
            elif case == "integer":
                blob["agents"][key] = w.to(torch.int64)
            else:
                blob["agents"][key] = w.double()

    run = _with_blob(run_dir, tmp_path, "best.pt", change)
    assert main(["evaluate", "tiny", "--policy", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'best.pt'}:" in err and message in err


def test_a_config_describing_huge_networks_is_refused_before_allocating(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from coordopt.guards import SizeError

    params = SimParams.from_instance(load_instance("tiny"))
    for sizes in ({"config.hidden_size": 1_000_000}, {"config.order_bins": 2**40}):
        run = _with_blob(
            run_dir,
            tmp_path / str(len(str(sizes))),
            "best.pt",
            lambda b, s=sizes: _set_meta(b, **s),
        )
        with pytest.raises(SizeError, match="refused before building them"):
            make_policy(str(run), params)
        assert main(["evaluate", "tiny", "--policy", str(run), "--episodes", "2"]) == 4
        assert "best.pt" in capsys.readouterr().err


def test_a_checkpoint_whose_zip_entries_inflate_too_far_is_refused_unread(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from coordopt.rl import rundir

    # an entry that declares 2 GiB in the central directory: refused from it, never read
    run = copy_run(run_dir, tmp_path / "run")
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 16)
        archive.writestr("archive/data/0", b"\0" * 64)
    raw = bytearray(bomb.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last entry's central directory record
    raw[central + 24 : central + 28] = (2 * 2**30).to_bytes(4, "little")  # its size, 2 GiB
    (run / "best.pt").write_bytes(bytes(raw))
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a, **k: pytest.fail("read an entry"))
    with pytest.raises(CheckpointError, match=r"entries inflate to 2,147,483,[0-9]+ bytes"):
        load(run / "best.pt")
    monkeypatch.undo()
    # a real deflate bomb (compressed 1000:1), under a lowered cap
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", b"\0" * 2**22)
    monkeypatch.setattr(rundir, "MAX_CHECKPOINT_BYTES", 2**20)
    with pytest.raises(CheckpointError, match="inflate to 4,194,304 bytes"):
        load(bomb)
    # and a compressed entry under the cap is refused too (torch.save writes none)
    monkeypatch.setattr(rundir, "MAX_CHECKPOINT_BYTES", 2**30)
    with pytest.raises(CheckpointError, match="is compressed"):
        load(bomb)


def test_a_finished_runs_summary_is_checked_on_resume(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed summary.json of a finished run was reported as the run's result (exit 0)."""
    argv = ["train", "tiny", "--resume", "--no-progress", "--json"]
    for field, value in (("iterations", "three"), ("seconds", -1.0), ("final_eval", [1])):
        run = copy_run(run_dir, tmp_path / f"run-{field}")
        summary = json.loads((run / "summary.json").read_text())
        summary[field] = value
        (run / "summary.json").write_text(json.dumps(summary))
        assert main([*argv, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"summary.json: field '{field}'" in err, err
    run = copy_run(run_dir, tmp_path / "run-deep")
    (run / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main([*argv, "--out", str(run)]) == 2
    assert "nested more than" in capsys.readouterr().err
    assert main([*argv, "--out", str(run_dir)]) == 0  # the intact run: its result, unchanged
    assert json.loads(capsys.readouterr().out)["iterations"] == 1


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"iteration": -5}, "iteration"),
        ({"env_steps": 2.5}, "env_steps"),
        ({"seconds": float("nan")}, "seconds"),
        ({"instance": {"name": "tiny", "hash": 7}}, "instance.hash"),
        ({"normalisers": {"firm": {"mean": 0.0, "var": -1.0, "count": 1.0}}}, "normalisers"),
    ],
)
def test_a_checkpoints_counters_are_checked_on_resume(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, field: str
) -> None:
    """A resumed run with iteration -5 trained six iterations from -5 (exit 0)."""
    run = _with_blob(run_dir, tmp_path, "checkpoint.pt", lambda b: _set_meta(b, **changes))
    (run / "final.pt").unlink()  # not finished: the resume would train on
    argv = ["train", "tiny", "--out", str(run), "--resume", "--no-progress", "--iterations", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: its metadata's field" in err and field in err, err


def test_deeply_nested_metadata_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = _with_blob(
        run_dir,
        tmp_path,
        "best.pt",
        lambda b: _set_meta(b, warm_start={"x": json.loads("[" * 40 + "]" * 40)}),
    )
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(CheckpointError, match="nested more than 32 deep"):
        make_policy(str(run), params)
    run = _with_blob(
        run_dir, tmp_path / "b", "best.pt", lambda b: b.update(meta="[" * 100_000 + "]" * 100_000)
    )
    with pytest.raises(CheckpointError, match="nested more than 32 deep"):
        make_policy(str(run), params)


def test_non_finite_optimiser_state_is_refused(run_dir: Path, tmp_path: Path) -> None:
    def change(blob: dict) -> None:
        state = blob["optimisers"]["critic"]["state"]
        first = next(iter(state))
        state[first]["exp_avg"] = torch.full_like(state[first]["exp_avg"], float("nan"))

    run = _with_blob(run_dir, tmp_path, "checkpoint.pt", change)
    with pytest.raises(CheckpointError, match=r"optimiser state .* holds NaN"):
        load(run / "checkpoint.pt")


def test_a_broadcast_view_larger_than_the_file_is_refused(run_dir: Path, tmp_path: Path) -> None:
    def change(blob: dict) -> None:
        key = _first_weight(blob)
        blob["agents"][key] = torch.zeros(1).expand(10**6, 10**6)

    run = _with_blob(run_dir, tmp_path, "best.pt", change)
    with pytest.raises(CheckpointError, match="larger than its storage"):
        load(run / "best.pt")


def test_run_policy_options_are_checked(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``RUN:foo=1`` and ``RUN:deterministic=maybe`` were accepted (foo ignored, maybe true)."""
    for option, words in (
        ("foo=1", "foo"),
        ("deterministic=maybe", "deterministic must be true or false"),
        ("seed=-1", "seed"),
        ("checkpoint=/etc/passwd", "must be one of best.pt, final.pt, checkpoint.pt"),
    ):
        spec = f"{run_dir}:{option}"
        assert main(["evaluate", "tiny", "--policy", spec, "--episodes", "2"]) == 2
        assert words in capsys.readouterr().err
    spec = f"{run_dir}:deterministic=false;seed=3;checkpoint=final.pt"
    assert main(["evaluate", "tiny", "--policy", spec, "--episodes", "2"]) == 0


def test_json_files_of_a_run_must_not_link_out(run_dir: Path, tmp_path: Path) -> None:
    from coordopt.rl.ppo import TrainResult

    outside = tmp_path / "summary.json"
    outside.write_text((run_dir / "summary.json").read_text())
    run = copy_run(run_dir, tmp_path / "run")
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(outside)
    with pytest.raises(CheckpointError, match="links out of the run directory"):
        TrainResult.read(run)


def test_a_run_trained_on_cuda_loads_as_a_policy_anywhere(run_dir: Path, tmp_path: Path) -> None:
    run = _with_blob(
        run_dir, tmp_path, "best.pt", lambda b: _set_meta(b, **{"config.device": "cuda"})
    )
    params = SimParams.from_instance(load_instance("tiny"))
    assert make_policy(str(run), params).name == "rl:run"


def test_an_interrupted_warm_start_is_continued_by_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the warm start left a folder that neither --resume ("nothing to resume")
    nor a fresh run ("not empty; pass --force") accepted."""

    class Interrupting:
        name = "interrupting"

        def reset(self, batch_size: int) -> None:
            raise KeyboardInterrupt

        def act(self, state: object) -> object:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    config = TrainConfig(iterations=1, **{**FAST, "warm_start": "siloed"})
    with pytest.raises(KeyboardInterrupt):
        train(load_instance("tiny"), config, out, progress=False, expert=Interrupting())
    assert (out / "config.json").is_file() and not (out / "checkpoint.pt").exists()
    argv = ["train", "tiny", "--out", str(out), "--resume", "--no-progress", "--json"]
    assert main(argv) == 0
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert (out / "final.pt").is_file()
    assert json.loads((out / "summary.json").read_text())["iterations"] == 1


def test_a_hostile_config_json_is_never_read_whole(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``evaluate`` sizes a run's work from its config.json: a link to /dev/zero grew without
    bound, deep nesting was an internal error. It is read by the run reader, and the run's
    checkpoint (which holds the configuration the policy is built from) decides."""
    run = copy_run(run_dir, tmp_path / "run")
    for hostile in ("/dev/zero", "deep"):
        (run / "config.json").unlink()
        if hostile == "deep":
            (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
        else:
            (run / "config.json").symlink_to(hostile)
        assert main(["evaluate", "tiny", "--policy", str(run), "--episodes", "2"]) == 0
        assert "rl:run" in capsys.readouterr().out


def test_resume_never_follows_a_checkpoint_linking_out(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((run_dir / "checkpoint.pt").read_bytes())
    run = copy_run(run_dir, tmp_path / "run")
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.pt").symlink_to(outside)
    argv = ["train", "tiny", "--out", str(run), "--resume", "--no-progress"]
    assert main(argv) == 2
    assert "checkpoint.pt: links out of the run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- issue 21


def test_a_checkpoint_names_its_features_and_a_changed_feature_is_named_on_load(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feature added (or renamed) since a run was trained is refused naming the file and
    the features that differ, not a weight's shape."""
    from coordopt.rl import features

    blob = torch.load(run_dir / "best.pt", weights_only=True)
    config = load(run_dir / "best.pt").config
    assert blob["features"] == features.feature_names(config.information, config.plan_inputs)
    params = SimParams.from_instance(load_instance("tiny"))
    grown = features.Part("ops", (*features.OPS.features, "new_signal"))
    monkeypatch.setattr(features, "OPS", grown)
    with pytest.raises(CheckpointError) as refused:
        make_policy(str(run_dir), params)
    message = str(refused.value)
    assert str(run_dir / "best.pt") in message
    assert "input 'ops' (expected 23 features, found 22" in message
    assert "input 'critic'" in message and "'ops.new_signal'" in message
    assert "not computed here" not in message and "input 'mkt'" not in message
    monkeypatch.undo()
    run = _with_blob(run_dir, tmp_path, "best.pt", lambda b: b["features"]["mkt"].reverse())
    with pytest.raises(CheckpointError, match="input 'mkt' \\(expected 15 features, found 15; in"):
        make_policy(str(run), params)


def test_a_checkpoint_written_before_features_were_named_loads_where_the_widths_match(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordopt.rl import features

    def unnamed(blob: dict) -> None:
        del blob["features"]

    run = _with_blob(run_dir, tmp_path, "best.pt", unnamed)
    assert "features" not in torch.load(run / "best.pt", weights_only=True)
    params = SimParams.from_instance(load_instance("tiny"))
    old, new = load(run / "best.pt").agents(), load(run_dir / "best.pt").agents()
    assert all(torch.equal(w, new.state_dict()[k]) for k, w in old.state_dict().items())
    assert make_policy(str(run), params).name == "rl:run"
    # with a feature added since, its weights no longer fit: still refused, naming the file
    monkeypatch.setattr(features, "OPS", features.Part("ops", (*features.OPS.features, "x")))
    with pytest.raises(CheckpointError, match=re.escape(f"{run / 'best.pt'}: weight")):
        make_policy(str(run), params)
