"""Defects of issue 20 (item 6), each pinned by a test that failed before its fix: the
demo's teacher in its log, train's failures through the one error boundary, the demo's flag
ranges, one device rule for flags and training, and the size guard on a policy spec."""

from __future__ import annotations

import sys

import pytest
import torch

from coordopt import guards, load_instance
from coordopt.cli import main
from coordopt.commands.common import policy_work
from coordopt.guards import ExitCode, estimate


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


class Stop(Exception):
    """Stops a command once the part under test has run."""


# --------------------------------------------------------------------------- demo


def test_demo_logs_the_teacher_its_agents_are_warm_started_from(monkeypatch, capsys, tmp_path):
    """``small`` has no exact DP, and the warm start's teacher there is bid price, not MPC."""
    from coordopt.rl import runs
    from coordopt.rl.runs import study_teacher

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(runs, "train_agents", stop)
    for name in ("small", "tiny"):
        assert main(["demo", name, "--out", str(tmp_path)]) == ExitCode.INTERNAL
        teacher = study_teacher(load_instance(name))  # what train_agents warm-starts from
        assert teacher == {"small": "bidprice", "tiny": "dp"}[name]
        (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "warm-started" in ln]
        assert line.endswith(f"warm-started from {teacher} ...")


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--episodes", "0", ">= 1"),
        ("--episodes", "2.5", "integer"),
        ("--iterations", "-1", ">= 0"),
        ("--seed", "-1", ">= 0 and <= 4.29497e+09"),
        ("--seed", str(2**32), "<= 4.29497e+09"),
    ],
)
def test_demo_flags_are_checked_before_any_work(monkeypatch, capsys, flag, value, rule):
    from coordopt.commands import demo

    def no_work(*args, **kwargs):
        raise AssertionError("demo started work on a bad flag")

    monkeypatch.setattr(demo, "load_instance", no_work)
    assert main(["demo", "tiny", flag, value]) == ExitCode.USAGE
    (line,) = errors(capsys)
    assert f"argument {flag}" in line and rule in line and value in line


# --------------------------------------------------------------------------- train


def test_diverged_training_goes_through_the_error_boundary(monkeypatch, capsys, tmp_path):
    from coordopt.rl import ppo

    def diverge(*args, **kwargs):
        raise ppo.TrainingDiverged("non-finite loss at iteration 1")

    monkeypatch.setattr(ppo, "train", diverge)
    argv = ["train", "tiny", "--iterations", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == ExitCode.DIVERGED
    (line,) = errors(capsys)
    assert line == "coordopt train: error: non-finite loss at iteration 1"
    assert main([*argv, "--out", str(tmp_path / "b"), "--debug"]) == ExitCode.DIVERGED
    assert "Traceback" in capsys.readouterr().err  # --debug: the boundary's traceback


def test_peer_failures_go_through_the_error_boundary(monkeypatch, capsys, tmp_path):
    from coordopt.commands import train_peer as command
    from coordopt.rl import peers

    def overflow(*args, **kwargs):
        raise FloatingPointError("non-finite actor loss")

    for module in (command, peers):  # wherever the command takes train_peer from
        monkeypatch.setattr(module, "train_peer", overflow, raising=False)
    argv = ["train", "tiny", "--algorithm", "mappo", "--iterations", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--debug"]) == ExitCode.DIVERGED
    err = capsys.readouterr().err
    assert "Traceback" in err and "coordopt train: error: non-finite actor loss" in err


def test_a_missing_torchrl_extra_is_bad_input_named_before_any_work(monkeypatch, capsys, tmp_path):
    from coordopt.commands import train_peer as command

    for name in [m for m in sys.modules if m.split(".")[0] == "torchrl"] + ["torchrl"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torchrl...` now fails
    monkeypatch.delitem(sys.modules, "coordopt.torchrl_env", raising=False)

    def no_work(*args, **kwargs):
        raise AssertionError("started work without torchrl")

    monkeypatch.setattr(command, "load_instance", no_work, raising=False)
    monkeypatch.setattr("coordopt.instance.load_instance", no_work)
    argv = ["train", "tiny", "--algorithm", "ippo", "--out", str(tmp_path / "run")]
    assert main(argv) == ExitCode.USAGE
    (line,) = errors(capsys)
    assert "coordopt[torchrl]" in line
    assert main([*argv, "--debug"]) == ExitCode.USAGE
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------- devices


def _accepts(check, name: str) -> bool:
    try:
        check(name)
    except Exception:
        return False
    return True


def test_the_device_flag_and_training_accept_the_same_devices(monkeypatch):
    """Where every device is available, the flag's check and training's accept the same
    names (mps was accepted by the flag, then refused by training)."""
    from coordopt.rl.ppo import resolve_device

    assert resolve_device is guards.resolve_device  # one rule, not two copies
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    names = ["cpu", "cuda", "cuda:1", "mps", "mps:0", "meta", "xpu", "nope"]
    flag = {n for n in names if _accepts(guards.device_type, n)}
    assert flag == {n for n in names if _accepts(resolve_device, n)}
    assert flag == {"cpu", "cuda", "cuda:1"}
    assert flag == {n for n in names if _accepts(guards.resolve_device, n)}


def test_mps_is_refused_as_bad_input_naming_the_flag(capsys):
    assert main(["evaluate", "tiny", "--device", "mps", "--episodes", "1"]) == ExitCode.USAGE
    (line,) = errors(capsys)
    assert "argument --device" in line and "not supported" in line and "cpu, cuda" in line


def test_unavailable_cuda_keeps_its_own_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["evaluate", "tiny", "--device", "cuda", "--episodes", "1"]) == ExitCode.DEVICE
    assert "CUDA is not available" in errors(capsys)[0]


# --------------------------------------------------------------------------- size guard


def test_a_policy_spec_is_priced_as_its_policy(tmp_path):
    assert policy_work("mpc:threads=1", 3, 10) == policy_work("mpc", 3, 10) == {"lp_solves": 30}
    assert policy_work("fluid:seed=2", 3, 10) == {"lp_solves": 1}
    run = tmp_path / "a:b"  # a run directory is taken whole, colon and all
    run.mkdir()
    (run / "config.json").write_text('{"hidden_size": 8, "scorer": "additive"}')
    assert policy_work(str(run), 3, 10) == {"agent_hidden": 8}


@pytest.mark.parametrize("spec", ["mpc", "mpc:threads=1", "mpc:seed=3;threads=1"])
def test_the_size_guard_sees_mpc_behind_its_options(monkeypatch, capsys, spec):
    inst = load_instance("tiny")
    sizes = inst.horizon, inst.n_segments, inst.n_products
    siloed = estimate(*sizes, episodes=2, batch=256)
    mpc = estimate(*sizes, episodes=2, batch=256, lp_solves=2 * inst.horizon)
    assert mpc.seconds > siloed.seconds
    monkeypatch.setattr(guards, "TIME_LIMIT", (siloed.seconds + mpc.seconds) / 2)
    assert main(["evaluate", "tiny", "--policy", spec, "--episodes", "2"]) == ExitCode.TOO_LARGE
    (line,) = errors(capsys)
    assert "fluid solve" in line and "--force" in line
