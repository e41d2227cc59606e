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


def run(argv: list[str]) -> tuple[int, str, str]:
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
    rc, out, err = run(argv)
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
