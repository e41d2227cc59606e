"""Flags that do not apply are refused, not ignored, and before any work: each command
declares which flags apply to which method, backend or mode (``FLAG_RULES``), and a flag
given where it means nothing is a usage error naming it and where it applies."""

from __future__ import annotations

import argparse
import json

import pytest

from coordopt.cli import build_parser, main
from coordopt.guards import ExitCode


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line]


@pytest.fixture
def no_work(monkeypatch):
    """Loading an instance counts as starting the work: a refusal must come before it."""
    import coordopt.instance

    def started(*args, **kwargs):
        raise AssertionError("the work started before the flags were checked")

    build_parser()  # every command imported first, holding the real function
    for name in ("solve", "insights", "train", "demo"):
        module = __import__(f"coordopt.commands.{name}", fromlist=["load_instance"])
        monkeypatch.setattr(module, "load_instance", started)
    monkeypatch.setattr(coordopt.instance, "load_instance", started)


@pytest.mark.parametrize(
    ("argv", "flag", "where"),
    [
        # the relaxation's plan was reported as a feasible integer plan (66.4, optimum 57.6)
        (
            ["solve", "tiny", "--method", "decompose", "--integer-orders"],
            "--integer-orders",
            "decompose",
        ),
        # the coordinated optimum was returned for the siloed-slates variant
        (["solve", "tiny", "--method", "dp", "--variant", "siloed-slates"], "--variant", "dp"),
        (["solve", "tiny", "--method", "dp", "--integer-quantities"], "--integer-quantities", "dp"),
        (["solve", "tiny", "--method", "dp", "--time-limit", "5"], "--time-limit", "dp"),
        (["solve", "tiny", "--method", "decompose", "--path", "pyomo"], "--path", "decompose"),
        (["solve", "tiny", "--method", "decompose", "--mip-gap", "0.1"], "--mip-gap", "decompose"),
        (["solve", "tiny", "--mip-gap", "0.1"], "--mip-gap", "--integer-orders"),
        (["solve", "tiny", "--gap", "0.1"], "--gap", "fluid"),
        (["solve", "tiny", "--method", "dp", "--iterations", "5"], "--iterations", "dp"),
        (
            [
                "reproduce",
                "timescales",
                "--quick",
                "--out",
                "{tmp}/s",
                "--backend",
                "serial",
                "--workers",
                "4",
            ],
            "--workers",
            "serial",
        ),
        (
            ["reproduce", "timescales", "--quick", "--out", "{tmp}/s", "--address", "127.0.0.1:1"],
            "--address",
            "process",
        ),
        (
            ["insights", "tiny", "--out", "{tmp}/i", "--network", "--bootstrap", "50"],
            "--bootstrap",
            "--network",
        ),
        (
            ["insights", "tiny", "--out", "{tmp}/i", "--network", "--no-plots"],
            "--no-plots",
            "--network",
        ),
        (
            ["insights", "tiny", "--out", "{tmp}/i", "--network", "--episodes", "3"],
            "--episodes",
            "no --agents",
        ),
        (["generate", "--out", "{tmp}/g.toml", "--peak", "0.2"], "--peak", "--seasonality"),
        (
            ["generate", "--out", "{tmp}/g.toml", "--cluster-affinity", "2"],
            "--cluster-affinity",
            "--clusters",
        ),
        (
            ["train", "tiny", "--out", "{tmp}/run", "--warm-start", "none", "--bc-rounds", "2"],
            "--bc-rounds",
            "--warm-start none",
        ),
        (
            ["train", "tiny", "--out", "{tmp}/run", "--warm-start", "none", "--bc-coef", "1"],
            "--bc-coef",
            "--warm-start none",
        ),
    ],
)
def test_a_flag_that_does_not_apply_is_refused_before_any_work(
    tmp_path, capsys, no_work, argv, flag, where
):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == ExitCode.USAGE
    (line,) = errors(capsys)
    assert f"{flag}: applies only" in line and where in line and "leave it out" in line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_flags_that_apply_still_run(tmp_path, capsys):
    for argv in (
        ["solve", "tiny", "--integer-orders", "--mip-gap", "0.01", "--json"],
        ["solve", "tiny", "--method", "dp", "--variant", "coordinated", "--json"],  # the default
        ["solve", "tiny", "--method", "decompose", "--time-limit", "60", "--gap", "0.01", "--json"],
        ["generate", "--out", str(tmp_path / "s.toml"), "--seasonality", "0.3", "--peak", "0.2"],
    ):
        assert main(argv) == 0, argv
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    assert [o["method"] for o in out] == ["fluid", "dp", "decompose"]
    assert all(o["status"] == "optimal" for o in out[:2])


def test_every_declared_rule_names_a_flag_of_its_command():
    """The declarations cannot drift from the parsers: each names a real flag (a renamed flag
    would silently stop being checked)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    declared = 0
    for name, command in sub.choices.items():
        rules, _ = command.get_default("_flag_rules") or ((), {})
        dests = {a.dest for a in command._actions}
        for rule in rules:
            assert rule.dest in dests, (name, rule.dest)
            declared += 1
    assert declared >= 20
