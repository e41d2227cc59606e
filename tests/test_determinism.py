"""The same command with the same seed gives the same numbers (house style: nothing a seed
fixes may depend on the clock).

Each seed-taking command runs twice in this process with the same arguments and its
``--json`` output is compared field by field, wall-clock fields aside. The first run also
warms up HiGHS and torch, so a schedule that reads the clock sees a different machine the
second time (the wall-clock plan-recovery rule of the catalog solver stopped two solves of
``medium`` at different iterations).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordopt.cli import main

CLOCK_KEYS = {"seconds", "wall", "timings", "history"}
"""Keys whose values are wall-clock measurements (as are keys ending in ``_seconds``)."""


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main(argv) == 0, argv
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def without_clock(value: Any) -> Any:
    """``value`` with every wall-clock field dropped, at any depth."""
    if isinstance(value, dict):
        return {
            k: without_clock(v)
            for k, v in value.items()
            if k not in CLOCK_KEYS and not k.endswith("_seconds")
        }
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Every path at which ``a`` and ``b`` differ (exactly: floats included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one run" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for j, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}[{j}]")
        ]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def assert_same_twice(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    first, second = (without_clock(run_json(capsys, argv)) for _ in range(2))
    assert not differences(first, second), (argv, differences(first, second))
    return first


@pytest.fixture(scope="module")
def hidden_instance(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A generated 30-product catalog in the hidden stock-out mode."""
    path = tmp_path_factory.mktemp("hidden") / "hidden.toml"
    argv = ["generate", "--out", str(path), "--seed", "5", "--n-products", "30"]
    argv += ["--n-segments", "4", "--horizon", "10", "--stockout", "hidden", "--json"]
    assert main(argv) == 0
    return str(path)


@pytest.mark.parametrize("instance", ["small", "medium", "hidden"])
def test_decompose_solve_is_the_same_twice(capsys, instance, hidden_instance):
    spec = hidden_instance if instance == "hidden" else instance
    capsys.readouterr()
    res = assert_same_twice(capsys, ["solve", spec, "--method", "decompose", "--json"])
    assert res["iterations"] >= 1 and res["bound"] >= res["plan_value"]


@pytest.mark.parametrize("instance", ["small", "hidden"])
def test_bidprice_evaluation_is_the_same_twice(capsys, instance, hidden_instance):
    spec = hidden_instance if instance == "hidden" else instance
    capsys.readouterr()
    argv = ["evaluate", spec, "--policy", "bidprice", "--episodes", "4", "--seed", "3", "--json"]
    res = assert_same_twice(capsys, argv)
    assert res["time_limited_solves"] == 0 and res["solves"] > 1  # re-optimised, no clock


def test_a_time_limited_bidprice_solve_is_reported(capsys):
    """A user's time limit may stop a re-optimisation (then the numbers depend on the
    machine), and the evaluation says how many it stopped: here every one, after its first
    iteration."""
    argv = ["evaluate", "small", "--policy", "bidprice:reopt_time_limit=1e-9", "--episodes"]
    res = run_json(capsys, [*argv, "2", "--seed", "3", "--json"])
    assert res["time_limited_solves"] == res["solves"] - 1 > 0  # all but the first solve


def test_generate_and_insights_are_the_same_twice(capsys, tmp_path):
    base = ["generate", "--seed", "9", "--n-products", "12", "--n-segments", "3", "--json"]
    paths = [tmp_path / f"gen{j}.toml" for j in range(2)]
    for path in paths:
        run_json(capsys, [*base, "--out", str(path)])
    assert paths[0].read_text() == paths[1].read_text()
    runs = []
    for j in range(2):
        argv = ["insights", "small", "--method", "bidprice", "--episodes", "4", "--seed", "3"]
        argv += ["--bootstrap", "20", "--no-plots", "--out", str(tmp_path / f"ins{j}"), "--json"]
        res = without_clock(run_json(capsys, argv))
        res.pop("files")  # where this run wrote them
        runs.append(res)
    assert not differences(*runs), differences(*runs)
