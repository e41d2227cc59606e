"""The CLI's guards: one-line errors with documented exit codes, --out checked before any
work, size guards with --force, --debug tracebacks, flags validated with their ranges."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from coordopt import guards, load_instance
from coordopt.cli import main
from coordopt.guards import ExitCode, Range, check_out, estimate
from coordopt.instance import save_instance
from coordopt.rl.config import TrainConfig


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line]


@pytest.fixture
def huge_horizon(tmp_path):
    return str(save_instance(load_instance("tiny").replace(horizon=10**9), tmp_path / "h.toml"))


def test_existing_out_is_refused_before_any_work_unless_forced(tmp_path, capsys):
    out = tmp_path / "cat.toml"
    out.write_text("keep me")
    argv = ["generate", "--out", str(out), "--n-products", "3", "--n-segments", "2"]
    assert main(argv) == ExitCode.OUTPUT
    (line,) = errors(capsys)
    assert str(out) in line and "--force" in line and out.read_text() == "keep me"
    assert main([*argv, "--force"]) == 0
    assert load_instance(out).n_products == 3
    npz = tmp_path / "plan.npz"
    npz.write_bytes(b"x")
    assert main(["solve", "tiny", "--out", str(npz)]) == ExitCode.OUTPUT
    assert "the file exists" in errors(capsys)[0] and npz.read_bytes() == b"x"
    # insights checks its folder first, where it used to do all its work before failing
    folder = tmp_path / "ins"
    folder.mkdir()
    (folder / "other.txt").write_text("x")
    assert main(["insights", "tiny", "--out", str(folder), "--no-plots"]) == ExitCode.OUTPUT
    assert "not empty" in errors(capsys)[0] and sorted(os.listdir(folder)) == ["other.txt"]


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--out", "{f}/x.toml"],
        ["solve", "tiny", "--out", "{f}/x.npz"],
        ["insights", "tiny", "--out", "{f}/dir"],
        ["train", "tiny", "--out", "{f}/run"],
        ["reproduce", "timescales", "--quick", "--out", "{f}/study"],
        ["train", "tiny", "--out", "{f}"],
    ],
)
def test_out_under_a_file_is_refused(tmp_path, capsys, argv):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([a.replace("{f}", str(blocker)) for a in argv]) == ExitCode.OUTPUT
    (line,) = errors(capsys)
    assert "--out" in line and "file" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(guards.OutputError, match="not writable"):
        check_out(ro / "x.npz", folder=False, force=False)


def test_reproduce_resumes_its_own_study_folder_only(tmp_path, capsys):
    study = tmp_path / "s"
    (study / "cells").mkdir(parents=True)
    (study / "manifest.json").write_text(json.dumps({"study": "scale"}))
    argv = ["reproduce", "timescales", "--quick", "--out", str(study)]
    assert main(argv) == ExitCode.OUTPUT
    assert "holds the study 'scale'" in errors(capsys)[0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert main(["reproduce", "timescales", "--quick", "--out", str(other)]) == ExitCode.OUTPUT


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{h}"],
        ["evaluate", "{h}", "--policy", "mpc"],
        ["insights", "{h}", "--out", "{tmp}/ins"],
        ["train", "{h}", "--out", "{tmp}/run"],
        ["solve", "{h}"],
        ["solve", "{h}", "--method", "decompose"],
        ["generate", "--out", "{tmp}/g.toml", "--n-products", "10000000"],
        ["bench", "sim", "--products", "10000000"],
        ["evaluate", "large", "--policy", "{tmp}/agents"],  # an additive scorer's B x M x N x H
    ],
)
def test_size_guard_refuses_at_once_with_size_limit_and_way_out(
    tmp_path, capsys, huge_horizon, argv
):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "config.json").write_text('{"hidden_size": 64, "scorer": "additive"}')
    argv = [a.replace("{h}", huge_horizon).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == ExitCode.TOO_LARGE
    (line,) = errors(capsys)
    assert "limit" in line and "--force" in line
    assert any(size in line for size in ("1,000,000,000 periods", "10,000,000 products", "GiB"))
    assert not (tmp_path / "g.toml").exists() and not (tmp_path / "ins").exists()


def test_the_stochastic_bound_is_priced_by_its_programs_and_says_what_to_lower(capsys):
    """Its defaults on `large` (2,048 states, 30 iterations) are priced over the limit; the
    options the scale study runs there are not."""
    assert main(["solve", "large", "--method", "lagrangian"]) == ExitCode.TOO_LARGE
    (line,) = errors(capsys)
    assert "per-product programs" in line and "--max-states" in line and "--time-limit" in line
    est = guards.estimate(52, 100, 1000, program_seconds=256 * 11 * guards.LAGRANGIAN_STATE_SECONDS)
    assert est.seconds < guards.TIME_LIMIT


def test_force_overrides_the_size_guard(monkeypatch, capsys):
    monkeypatch.setattr(guards, "TIME_LIMIT", 1e-9)
    argv = ["evaluate", "tiny", "--episodes", "2", "--json"]
    assert main(argv) == ExitCode.TOO_LARGE
    assert "limit" in errors(capsys)[0]
    assert main([*argv, "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2


def test_estimates_of_absurd_sizes_are_exact_arithmetic():
    est = estimate(10**9, 10**3, 10**7, episodes=10**6, batch=256, lp_solves=1)
    assert est.lp_cells == 10**19 and est.seconds > 1e9 and est.memory > 1e12


def test_training_memory_counts_the_warm_start_and_the_largest_backward_pass(monkeypatch):
    from coordopt.commands.train import training_work
    from coordopt.rl import warmstart
    from coordopt.rl.config import size_defaults

    inst = load_instance("large")  # catalog scale: 3 DAgger rounds of 8, groups of 4
    episode = inst.horizon * inst.n_segments * inst.n_products
    config = TrainConfig(**size_defaults(inst))
    work = training_work(config, inst)
    assert work["stored_envs"] == 24 and work["graph_cells"] == 4 * episode
    monkeypatch.setattr(warmstart, "GRAPH_CELLS", episode)  # cloned one environment at a time
    work = training_work(config, inst)
    assert work["graph_cells"] == config.minibatch_envs * config.seq_len * episode // inst.horizon
    cold = training_work(dataclasses.replace(config, warm_start="none", teacher_inputs=False), inst)
    assert cold["stored_envs"] == 0
    sizes = inst.horizon, inst.n_segments, inst.n_products
    # the same graph and catalog solve (the plan the agents observe); 24 labelled episodes, then
    # (freed) the 8 of each PPO rollout
    assert estimate(*sizes, **work).memory - estimate(*sizes, **cold).memory == pytest.approx(
        guards.STORED_BYTES_PER_PRODUCT_PERIOD * (24 - 8) * inst.horizon * inst.n_products
    )


def test_debug_shows_the_traceback_and_the_same_exit_code(capsys):
    argv = ["evaluate", "tiny", "--policy", "nope", "--episodes", "2"]
    assert main(argv) == ExitCode.USAGE
    assert "Traceback" not in capsys.readouterr().err
    assert main([*argv, "--debug"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" in err and "unknown policy 'nope'" in err.splitlines()[-1]
    assert main(["--debug", *argv]) == ExitCode.USAGE
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_with_its_own_code(monkeypatch, capsys):
    from coordopt.commands import evaluate

    def boom(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(evaluate, "load_instance", boom)
    assert main(["evaluate", "tiny"]) == ExitCode.INTERNAL
    (line,) = errors(capsys)
    assert "internal error" in line and "--debug" in line


def test_solver_failures_inside_commands_are_messages(tmp_path, capsys):
    crowded = save_instance(
        load_instance("tiny").replace(warehouse_capacity=1.0), tmp_path / "crowded.toml"
    )
    for argv in (
        ["evaluate", str(crowded), "--policy", "mpc", "--episodes", "2"],
        ["insights", str(crowded), "--out", str(tmp_path / "ins"), "--no-plots"],
    ):
        assert main(argv) == ExitCode.SOLVER
        (line,) = errors(capsys)
        assert "infeasible" in line and "warehouse_capacity" in line


def test_milp_unbounded_is_reported_by_the_cli(tmp_path, capsys):
    profitable = load_instance("tiny").replace(salvage_value=[7.0, 1.0], max_order=[np.inf, 6])
    path = save_instance(profitable, tmp_path / "profitable.toml")
    assert main(["solve", str(path), "--integer-orders", "--json"]) == ExitCode.SOLVER
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "unbounded" and "salvage_value" in res["message"]


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["evaluate", "tiny", "--device", "bogus"], ExitCode.USAGE, "--device"),
        (["evaluate", "tiny", "--option", "foo=1"], ExitCode.USAGE, "--option foo"),
        (["bench", "sim", "--batch", "0"], ExitCode.USAGE, "--batch: must be >= 1"),
        (["generate", "--out", "x.toml", "--mean-arrivals", "-1"], ExitCode.USAGE, "> 0"),
        (["generate", "--out", "x.toml", "--mean-arrivals", "nan"], ExitCode.USAGE, "finite"),
        (["generate", "--out", "x.toml", "--max-lead-time", "-1"], ExitCode.USAGE, ">= 0"),
        (["evaluate", "tiny", "--batch-size", "0"], ExitCode.USAGE, "--batch-size"),
        (["evaluate", "tiny", "--episodes", "0"], ExitCode.USAGE, "--episodes"),
        (["solve", "tiny", "--time-limit", "-1"], ExitCode.USAGE, "--time-limit"),
        (["solve", "tiny", "--time-limit", "nan"], ExitCode.USAGE, "--time-limit"),
        (["solve", "tiny", "--mip-gap", "-1"], ExitCode.USAGE, "--mip-gap"),
        (["train", "tiny", "--out", "r", "--gamma", "2"], ExitCode.USAGE, "--gamma"),
        (["train", "tiny", "--out", "r", "--threads", "-1"], ExitCode.USAGE, "--threads"),
        (["bench", "sim", "--threads", "-1"], ExitCode.USAGE, "--threads"),
    ],
)
def test_flags_are_validated_by_the_parser_naming_the_flag(capsys, argv, code, text):
    assert main(argv) == code
    (line,) = errors(capsys)
    assert text in line


def test_cuda_without_cuda_has_the_device_exit_code(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for argv in (
        ["evaluate", "tiny", "--device", "cuda"],
        ["bench", "sim", "--device", "cuda"],
        ["train", "tiny", "--out", "r", "--device", "cuda"],
    ):
        assert main(argv) == ExitCode.DEVICE
        assert "CUDA is not available" in errors(capsys)[0]


def test_every_numeric_training_field_declares_its_range():
    for f in dataclasses.fields(TrainConfig):
        if f.type in ("int", "float", int, float):
            assert isinstance(f.metadata.get("check"), Range), f.name
    with pytest.raises(ValueError, match="--gamma must be <= 1"):
        TrainConfig(gamma=2.0)
    with pytest.raises(ValueError, match="--num-envs must be >= 1"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "num_envs": 0})


def test_range_types_refuse_nan_inf_and_non_numbers():
    positive = guards.positive_int
    assert positive("3") == 3
    for text in ("0", "-2", "nan", "1.5", "x", "", "99999999999999999999"):
        with pytest.raises(Exception, match=r"must be|expected"):
            positive(text)
    assert guards.unit_interval("1") == 1.0
    for text in ("nan", "inf", "-0.1", "1.01"):
        with pytest.raises(Exception, match="must be"):
            guards.unit_interval(text)


def test_exit_codes_are_documented_in_help_and_readme(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    readme = guards.__file__.rsplit("/coordopt/", 1)[0] + "/README.md"
    text = open(readme).read() if os.path.exists(readme) else ""
    for code in ExitCode:
        assert f"{int(code)} {code.name.lower().replace('_', ' ')}" in out
        if text:
            assert f"| {int(code)} |" in text, code


@pytest.fixture
def no_solving(monkeypatch):
    """The work of ``demo`` and ``generate`` starts with a fluid solve or a generation."""
    from coordopt.commands import generate
    from coordopt.solvers import fluid

    def started(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(fluid, "solve_fluid", started)
    monkeypatch.setattr(generate, "generate_instance", started)


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["demo", "--out", "{f}", "--episodes", "2"], ExitCode.OUTPUT, "is a file, not a folder"),
        (["demo", "--out", "{f}/runs"], ExitCode.OUTPUT, "is a file, not a folder"),
        (["generate", "--out", "{tmp}/cat.txt"], ExitCode.USAGE, ".toml or .npz"),
        (["generate", "--out", "{tmp}/cat"], ExitCode.USAGE, ".toml or .npz"),
    ],
)
def test_out_is_checked_before_any_work(tmp_path, capsys, no_solving, argv, code, text):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = [a.replace("{f}", str(blocker)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == code
    (line,) = errors(capsys)
    assert "--out" in line and text in line
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_calibrate_checks_its_out_name_before_reading_the_data(tmp_path, monkeypatch, capsys):
    import coordopt.calibrate

    def started(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(coordopt.calibrate, "calibrate_tafeng", started)
    assert main(["calibrate", "tafeng", "--out", str(tmp_path / "tf.npz")]) == ExitCode.USAGE
    assert ".toml" in errors(capsys)[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--out", "/proc/x.toml"],
        ["solve", "tiny", "--out", "/proc/x.npz"],
        ["insights", "tiny", "--out", "/proc/x", "--no-plots"],
        ["train", "tiny", "--out", "/proc/x/run"],
    ],
)
def test_out_where_no_file_can_be_made_is_a_clear_output_error(capsys, argv):
    code = main(argv)
    (line,) = errors(capsys)
    assert code == ExitCode.OUTPUT, line
    assert "/proc" in line and "--out" in line and "Errno" not in line


def test_a_failed_write_names_its_file_not_a_temporary_one(tmp_path):
    from coordopt.cli import exit_code
    from coordopt.io import WriteError, atomic_write_text

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WriteError) as info:
        atomic_write_text(blocker / "x.txt", "x")
    assert str(info.value).startswith(f"cannot write {blocker / 'x.txt'}: ")
    assert "Errno" not in str(info.value) and ".tmp" not in str(info.value)
    assert exit_code(info.value) == ExitCode.FILESYSTEM


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_bundled_name_says_what_it_hides(tmp_path, monkeypatch, capsys, kind):
    monkeypatch.chdir(tmp_path)
    if kind == "folder":
        (tmp_path / "tiny").mkdir()  # e.g. a run directory named like the instance
    else:
        (tmp_path / "tiny").write_text("not an instance")
    assert main(["solve", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instance"] == "tiny"
    assert main(["solve", "tiny", "--json"]) == 0
    err = capsys.readouterr().err
    (note,) = [line for line in err.splitlines() if "note:" in line]
    assert "'tiny'" in note and "bundled instance" in note and f"{kind} ./tiny" in note
    if kind == "file":
        assert "pass ./tiny" in note  # how to pick the file instead
        assert main(["solve", "./tiny"]) == ExitCode.USAGE  # ... which is not an instance


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["evaluate", "tiny", "--policy", "siloed", "--policy", "bogus"], "'bogus'"),
        (["evaluate", "tiny", "--policy", "siloed", "--policy", "mpc:foo=1"], "foo"),
        (["insights", "tiny", "--method", "bogus", "--out", "{tmp}/i"], "--method"),
        (["insights", "tiny", "--episodes", "1", "--out", "{tmp}/i"], "--episodes"),
        (
            ["insights", "tiny", "--network", "--agents", "{tmp}/none", "--out", "{tmp}/i"],
            "--agents",
        ),
    ],
)
def test_every_policy_is_checked_before_the_first_is_simulated(
    tmp_path, monkeypatch, capsys, argv, text
):
    from coordopt.commands import evaluate, insights
    from coordopt.insights import network

    def started(*args, **kwargs):
        raise AssertionError("the work started before the flags were checked")

    monkeypatch.setattr(evaluate, "evaluate", started)
    monkeypatch.setattr(insights, "simulate", started)
    monkeypatch.setattr(insights, "fluid_plan", started)
    monkeypatch.setattr(network, "optimiser_response", started)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == ExitCode.USAGE
    (line,) = errors(capsys)
    assert text in line and "internal" not in line
    assert list(tmp_path.iterdir()) == []
