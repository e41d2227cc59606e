"""End-to-end smoke runs of the CLI commands (tiny budgets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from coordopt import load_instance
from coordopt.cli import main
from coordopt.guards import ExitCode


def run_json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object on stdout
    return json.loads(out[0])


def test_generate_then_evaluate(tmp_path, capsys):
    path = tmp_path / "gen.toml"
    res = run_json(
        capsys,
        [
            "generate",
            "--out",
            str(path),
            "--n-products",
            "6",
            "--n-segments",
            "2",
            "--horizon",
            "5",
            "--seed",
            "4",
            "--json",
        ],
    )
    assert res["n_products"] == 6 and path.exists()
    assert load_instance(path).n_segments == 2
    ev = run_json(
        capsys,
        ["evaluate", str(path), "--policy", "siloed", "--episodes", "8", "--seed", "1", "--json"],
    )
    assert {"policy", "episodes", "mean", "ci95"} <= set(ev) and ev["episodes"] == 8


def test_evaluate_several_policies_prints_a_paired_table(capsys):
    assert (
        main(["evaluate", "tiny", "--policy", "siloed", "--policy", "null", "--episodes", "10"])
        == 0
    )
    out = capsys.readouterr().out
    assert "siloed" in out and "null" in out and "vs siloed (paired)" in out


def test_evaluate_takes_each_policys_own_options_and_names_it_by_them(capsys):
    """``NAME:KEY=VALUE;...`` (the studies' policy specs): one policy under two option sets
    is two rows; an option a policy does not take is a clear error naming the spec."""
    spec = "bidprice:reoptimize_every=0;safety_stock=false"
    argv = ["evaluate", "tiny", "--episodes", "6", "--json", "--policy", "bidprice"]
    res = run_json(capsys, [*argv, "--policy", spec])
    assert [r["policy"] for r in res["results"]] == ["bidprice", spec]
    first, second = res["results"]
    assert second["mean"] != first["mean"] and second["vs"]["bidprice"] == second["vs_first"]
    assert first["vs"][spec]["mean"] == pytest.approx(-second["vs_first"]["mean"])
    assert main(["evaluate", "tiny", "--policy", "siloed:colour=1"]) == 2
    err = capsys.readouterr().err
    assert "'siloed:colour=1'" in err and "colour" in err and "Traceback" not in err


def test_the_siloed_firm_knows_the_season_and_the_old_one_is_named(capsys):
    """``siloed`` is the season-aware firm; the firm that orders past the horizon is only the
    named option ``siloed:season_end=false`` (and earns less on ``small``, lead times 0-2)."""
    argv = ["evaluate", "small", "--episodes", "8", "--seed", "1", "--json"]
    specs = ["siloed", "siloed:season_end=true", "siloed:season_end=false"]
    res = run_json(capsys, [*argv, *(f"--policy={s}" for s in specs)])
    by = {r["policy"]: r for r in res["results"]}
    assert by["siloed"]["mean"] == by["siloed:season_end=true"]["mean"]
    old = by["siloed:season_end=false"]
    assert old["vs"]["siloed"]["mean"] + old["vs"]["siloed"]["ci95"] < 0


def test_bench_sim_json(capsys):
    res = run_json(
        capsys,
        [
            "bench",
            "sim",
            "--products",
            "50",
            "--segments",
            "5",
            "--batch",
            "4",
            "--steps",
            "5",
            "--json",
        ],
    )
    assert res["product_steps_per_s"] > 0 and res["products"] == 50


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "horizon = 2\n[[product]]\nprice = 1.0\nunit_cost = 0.5\ncolour = 'red'\n"
        "[[segment]]\narrival_rate = 1.0\nbase_attraction = [1.0]\n"
    )
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'colour'" in err and "bad.toml" in err and "Traceback" not in err
    assert main(["evaluate", "tiny", "--policy", "nope"]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("coordopt") is None
    and not (sys.prefix and shutil.which("coordopt", path=f"{sys.prefix}/bin")),
    reason="console script not installed",
)
def test_console_script_is_installed():
    exe = shutil.which("coordopt") or shutil.which("coordopt", path=f"{sys.prefix}/bin")
    proc = subprocess.run(
        [exe, "evaluate", "tiny", "--episodes", "4", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(proc.stdout)["policy"] == "siloed"


def test_json_stdout_is_exactly_one_object_even_with_solver_banners():
    # HiGHS prints a banner from C++ on the first solver of a process; it must not reach stdout.
    proc = subprocess.run(
        [sys.executable, "-m", "coordopt.cli", "solve", "tiny", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["status"] == "optimal"


def test_solve_refuses_a_full_lp_at_catalog_scale_and_decomposes_instead(tmp_path, capsys):
    assert main(["solve", "large"]) == ExitCode.TOO_LARGE
    assert "use --method decompose" in capsys.readouterr().err
    path = tmp_path / "cat.toml"
    assert (
        main(
            [
                "generate",
                "--out",
                str(path),
                "--n-products",
                "30",
                "--n-segments",
                "4",
                "--horizon",
                "4",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()
    res = run_json(capsys, ["solve", str(path), "--method", "decompose", "--json"])
    assert res["method"] == "decompose" and len(res["first_orders"]) == 30
    assert res["objective"] >= res["plan_value"] - 1e-6  # a valid bound over a feasible plan
