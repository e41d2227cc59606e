"""Fuzz the command line's flags: every command x flag x bad or edge value ends in a valid
result or a clear one-line error with a documented exit code, never a traceback or a hang.

Runs ``coordopt.cli.main`` in-process on the bundled ``tiny`` instance with tiny budgets.
Huge values are only given to flags the size guard estimates (they must be refused).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordopt.cli import main
from coordopt.guards import ExitCode

BAD = ["-1", "0", "nan", "inf", "-inf", "abc", "", "1e309", "-0.5", "2.5", "99999999999999999999"]
"""Values every numeric flag must survive (a clear refusal, or a valid run where allowed)."""
HUGE = ["1000000000"]
"""A value the size guard must refuse (only for flags its estimate covers)."""
PRODUCTS = ["10000000"]
"""10^7 products: refused by the size guard."""
EDGE = ["1", "0.5", "2"]

_counter = itertools.count()

# command -> (base argv, {flag: values}); {out} is replaced by a fresh path per example
COMMANDS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "evaluate": (
        ["evaluate", "tiny", "--episodes", "2", "--json"],
        {
            "--episodes": [*BAD, *HUGE, *EDGE],
            "--batch-size": [*BAD, *EDGE],
            "--seed": [*BAD, *EDGE],
            "--device": ["cpu", "cuda", "cuda:7", "bogus", "", "mps"],
            "--option": ["foo=1", "novalue", "=1", "seed=-1", "seed=abc"],
            "--policy": ["siloed", "null", "fluid", "nope", ""],
        },
    ),
    "solve": (
        ["solve", "tiny", "--json"],
        {
            "--time-limit": [*BAD, *EDGE],
            "--mip-gap": [*BAD, *EDGE],
            "--method": ["fluid", "dp", "decompose", "bogus"],
            "--out": ["{out}.npz", "{out}.txt", "/proc/version/x.npz", "/"],
            "--integer-orders": [None],
        },
    ),
    "generate": (
        ["generate", "--out", "{out}.toml", "--n-products", "3", "--n-segments", "2", "--json"],
        {
            "--n-products": [*BAD, *HUGE, *PRODUCTS, *EDGE],
            "--n-segments": [*BAD, *EDGE],
            "--horizon": [*BAD, *EDGE],
            "--mean-arrivals": [*BAD, *EDGE],
            "--max-lead-time": [*BAD, *EDGE],
            "--discount": [*BAD, *EDGE],
            "--purchase-share": [*BAD, *EDGE],
            "--salvage-rate": [*BAD, *EDGE],
            "--slate-size": [*BAD, *EDGE],
            "--stockout": ["lost", "hidden", "x"],
            "--seed": [*BAD, *EDGE],
            "--out": ["{out}.npz", "/proc/version/x.toml", "/"],
        },
    ),
    "insights": (
        [
            "insights",
            "tiny",
            "--episodes",
            "2",
            "--bootstrap",
            "5",
            "--no-plots",
            "--out",
            "{out}",
            "--json",
        ],
        {
            "--episodes": [*BAD, *HUGE, *EDGE],
            "--bootstrap": [*BAD, *EDGE],
            "--seed": [*BAD, *EDGE],
            "--method": ["fluid", "siloed", "null", "nope"],
            "--out": ["{out}", "/proc/version/x"],
        },
    ),
    "train": (
        [
            "train",
            "tiny",
            "--out",
            "{out}",
            "--warm-start",
            "none",
            "--iterations",
            "1",
            "--num-envs",
            "2",
            "--minibatch-envs",
            "2",
            "--eval-every",
            "0",
            "--no-progress",
            "--json",
        ],
        {
            "--iterations": [*BAD, *HUGE],
            "--num-envs": [*BAD, *HUGE],
            "--hidden-size": [*BAD, *HUGE],
            "--gamma": [*BAD, "2", "1.5"],
            "--threads": BAD,
            "--clip": [*BAD, "1", "0"],
            "--gae-lambda": [*BAD, "1.5"],
            "--lr-fast": BAD,
            "--order-bins": [*BAD, "1"],
            "--bc-beta": [*BAD, "1.5"],
            "--exponent-critic": [*BAD, "1.5"],
            "--device": ["cuda", "bogus"],
            "--timescales": ["bogus"],
        },
    ),
    "bench": (
        ["bench", "sim", "--products", "5", "--segments", "2", "--batch", "2", "--steps", "2"],
        {
            "--batch": [*BAD, *HUGE, *EDGE],
            "--products": [*BAD, *HUGE, *PRODUCTS, *EDGE],
            "--segments": [*BAD, *EDGE],
            "--steps": [*BAD, *HUGE, *EDGE],
            "--slate-size": [*BAD, *EDGE],
            "--threads": [*BAD, "1"],
            "--device": ["cpu", "cuda", "bogus"],
        },
    ),
    "reproduce": (
        ["reproduce", "timescales", "--quick", "--out", "/proc/version/x"],
        {"--workers": BAD, "--backend": ["bogus"]},
    ),
}

DOCUMENTED = {int(c) for c in ExitCode} - {int(ExitCode.INTERNAL), int(ExitCode.INTERRUPTED)}


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    base, flags = COMMANDS[name]
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), min_size=1, max_size=2, unique=True))
    argv = list(base)
    for flag in chosen:
        value = draw(st.sampled_from(flags[flag]))
        argv += [flag] if value is None else [flag, value]
    return argv


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=command_lines())
def test_every_flag_value_ends_in_a_result_or_a_clear_error(tmp_path, argv):
    path = str(tmp_path / f"out{next(_counter)}")
    argv = [a.replace("{out}", path) for a in argv]
    rc, out, err = run_cli(argv)
    assert "Traceback" not in err, (argv, err)
    assert rc in DOCUMENTED, (argv, rc, err)
    values = dict(itertools.pairwise(argv))
    huge = any(values.get(f) in HUGE + PRODUCTS for f in values if f.startswith("--"))
    if huge and rc not in (ExitCode.USAGE, ExitCode.DEVICE, ExitCode.OUTPUT):
        assert rc == ExitCode.TOO_LARGE, (argv, rc, err)  # refused at once, never run
    if rc == 0:
        if "--json" in argv:
            lines = out.strip().splitlines()
            assert len(lines) == 1, (argv, out)  # exactly one JSON object
            json.loads(lines[0])
        return
    if rc == ExitCode.SOLVER and argv[0] == "solve":  # the solver's status is the result
        assert json.loads(out)["status"] != "optimal", (argv, out)
        return
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, (argv, err)  # one line says what went wrong
    assert errors[0].startswith("coordopt"), (argv, err)
    if rc == ExitCode.USAGE and "argument " in errors[0]:  # argparse names the flag
        assert any(f in errors[0] for f in values if f.startswith("--")), (argv, err)
    if rc == ExitCode.TOO_LARGE:  # the size, the limit and the way out
        assert "limit" in errors[0] and "--force" in errors[0], (argv, err)


# --------------------------------------------------------------------------- hostile run directories

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
    st.integers(1, 40).map(lambda d: json.loads("[" * d + "]" * d)),
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run of coordopt's agents (best.pt, final.pt, checkpoint.pt, JSON)."""
    from rl_budget import FAST

    from coordopt.instance import load_instance
    from coordopt.rl.config import TrainConfig
    from coordopt.rl.ppo import train

    out = tmp_path_factory.mktemp("fuzzrun") / "run"
    config = TrainConfig(iterations=1, **{**FAST, "eval_every": 1, "eval_episodes": 2})
    train(load_instance("tiny"), config, out, progress=False)
    return out


def _mutate_json(data: Any, draw: st.DrawFn) -> Any:
    """``data`` with one value somewhere (or a key) replaced by an arbitrary JSON value."""
    if not isinstance(data, (dict, list)) or not data or draw(st.integers(0, 3)) == 0:
        return draw(JSON_VALUES)
    keys = sorted(data) if isinstance(data, dict) else list(range(len(data)))
    key = draw(st.sampled_from(keys))
    data[key] = _mutate_json(data[key], draw)
    return data


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_run_directories_load_or_fail_clearly(trained_run, tmp_path, data):
    """A run directory changed anywhere -- checkpoint bytes, its JSON metadata, the summary,
    the config -- loads as a policy (or resumes) or is refused in one line with a documented
    exit code naming the file; never a traceback or an internal error."""
    import torch

    run = tmp_path / f"run{next(_counter)}"
    shutil.copytree(trained_run, run)
    target = data.draw(st.sampled_from(["best.pt", "checkpoint.pt", "meta", "summary.json"]))
    if target.endswith(".pt"):
        raw = bytearray((run / target).read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["flip", "truncate", "junk"]))
        if how == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif how == "truncate":
            del raw[at:]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        (run / target).write_bytes(bytes(raw))
    elif target == "meta":
        name = data.draw(st.sampled_from(["best.pt", "checkpoint.pt"]))
        blob = torch.load(run / name, weights_only=True)
        blob["meta"] = json.dumps(_mutate_json(json.loads(blob["meta"]), data.draw))
        torch.save(blob, run / name)
    else:
        summary = json.loads((run / target).read_text())
        (run / target).write_text(json.dumps(_mutate_json(summary, data.draw)))
    if data.draw(st.booleans()):
        argv = ["evaluate", "tiny", "--policy", str(run), "--episodes", "2", "--json"]
    else:
        argv = ["train", "tiny", "--out", str(run), "--resume", "--no-progress", "--json"]
    rc, out, err = run_cli(argv)
    assert "Traceback" not in err, (argv, err)
    assert rc in DOCUMENTED, (argv, rc, err)
    if rc == 0:
        json.loads(out.strip().splitlines()[-1])
        return
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("coordopt"), (argv, err)
    assert str(run) in errors[0], (argv, err)  # names the file (or the run directory)
