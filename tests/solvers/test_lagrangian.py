"""The stochastic bound (solvers/lagrangian.py): valid against the exact DP, below the fluid
bound, exact for one product with fixed slates, refusals, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coordopt.instance import Instance, instance_from_dict, load_instance
from coordopt.solvers.dp import solve_dp
from coordopt.solvers.fluid import solve_fluid
from coordopt.solvers.lagrangian import (
    LagrangianError,
    build_model,
    evaluate,
    max_rates,
    solve_lagrangian,
)

FAST = {"iterations": 12, "catalog_gap": 1e-3, "catalog_iterations": 400}


def tiny_variant(**changes) -> Instance:
    """``tiny`` with fields replaced (``uplift`` scales rec - base, as exact_benchmark does)."""
    inst = load_instance("tiny")
    if "uplift" in changes:
        base = inst.base_attraction
        changes["rec_attraction"] = base + changes.pop("uplift") * (inst.rec_attraction - base)
    return inst.replace(
        **{k: np.asarray(v) if isinstance(v, list) else v for k, v in changes.items()}
    )


def check_valid(inst: Instance, **options) -> tuple[float, float, float]:
    sol = solve_lagrangian(inst, **{**FAST, **options})
    optimum = solve_dp(inst).value
    fluid = solve_fluid(inst).objective
    assert sol.bound >= optimum - 1e-9 * max(1.0, abs(optimum)), (inst.name, sol.bound, optimum)
    assert sol.bound <= fluid + 1e-9 * max(1.0, abs(fluid)), (inst.name, sol.bound, fluid)
    assert sol.bound <= sol.first_bound
    return sol.bound, optimum, fluid


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": "tiny-lead2", "lead_time": [2, 1]},
        {"name": "tiny-uplift3", "uplift": 3.0},
        {"name": "tiny-discount", "discount": 0.9},
    ],
    ids=lambda c: c.get("name", "tiny"),
)
def test_bound_between_exact_optimum_and_fluid_bound(changes):
    bound, _optimum, fluid = check_valid(tiny_variant(**changes))
    assert bound < fluid - 1e-3 * abs(fluid)  # the noise is priced: strictly below the fluid


def random_instance(rng: np.random.Generator, k: int) -> Instance:
    n = int(rng.integers(1, 3))
    m = int(rng.integers(1, 3))
    horizon = int(rng.integers(2, 5))
    products = []
    for i in range(n):
        price = float(rng.uniform(4, 10))
        cost = float(rng.uniform(0.2, 0.8) * price)
        products.append(
            {
                "name": f"p{i}",
                "price": price,
                "unit_cost": cost,
                "holding_cost": float(rng.uniform(0, 0.1) * price),
                "lost_sale_penalty": float(rng.uniform(0, 0.2) * price),
                "lead_time": int(rng.integers(0, 3)),
                "initial_inventory": int(rng.integers(0, 3)),
                "salvage_value": float(rng.uniform(0, 1) * cost),
                "fixed_order_cost": float(rng.choice([0.0, rng.uniform(0.5, 3)])),
                "max_order": int(rng.integers(1, 4)),
            }
        )
    segments = []
    for k_ in range(m):
        base = rng.uniform(0.1, 1.0, n)
        seasonal = rng.random() < 0.5
        rate = rng.uniform(0.3, 2.5, horizon).tolist() if seasonal else float(rng.uniform(0.3, 2.5))
        segments.append(
            {
                "name": f"s{k_}",
                "arrival_rate": rate,
                "base_attraction": base.tolist(),
                "rec_attraction": (base + rng.uniform(0, 1.5, n)).tolist(),
                "no_purchase": float(rng.uniform(0.5, 1.5)),
            }
        )
    return instance_from_dict(
        {
            "name": f"random-{k}",
            "horizon": horizon,
            "discount": float(rng.choice([1.0, rng.uniform(0.8, 1.0)])),
            "slate_size": int(rng.integers(1, 3)),
            "product": products,
            "segment": segments,
        }
    )


def test_bound_valid_on_random_tiny_instances():
    rng = np.random.default_rng(23)
    below = 0
    for k in range(50):
        inst = random_instance(rng, k)
        bound, _optimum, fluid = check_valid(inst, iterations=6, grid=8)
        below += bound < fluid - 1e-6
    assert below >= 40


def single_product(**changes) -> Instance:
    data = {
        "name": "one",
        "horizon": 5,
        "discount": 0.95,
        "product": [
            {
                "name": "A",
                "price": 9.0,
                "unit_cost": 5.0,
                "holding_cost": 0.4,
                "lost_sale_penalty": 1.0,
                "lead_time": 1,
                "initial_inventory": 1,
                "salvage_value": 2.0,
                "fixed_order_cost": 1.5,
                "max_order": 3,
            }
        ],
        "segment": [
            {
                "name": "s",
                "arrival_rate": [1.2, 2.0, 0.7, 1.5, 1.0],
                "base_attraction": [0.9],
                "rec_attraction": [0.9],
            }
        ],
    }
    data["product"][0].update(changes)
    return instance_from_dict(data)


@pytest.mark.parametrize("lead", [0, 1, 2])
def test_one_product_with_fixed_slates_reproduces_the_dp(lead):
    """Slates change nothing (rec = base), so the rate is fixed at umax; a large negative
    multiplier makes the product take all of it, and the bound is the DP value exactly."""
    inst = single_product(lead_time=lead)
    model = build_model(inst, grid=4)
    alpha = torch.full((inst.horizon, 1), -1000.0, dtype=torch.float64)
    val = evaluate(model, alpha)
    optimum = solve_dp(inst).value
    assert val.bound == pytest.approx(optimum, rel=1e-10, abs=1e-9)
    assert torch.allclose(val.rates, max_rates(model.cd), rtol=1e-12)


def test_max_rates_are_the_largest_rate_over_all_slates():
    from coordopt.solvers.dp import enumerate_slates, slate_rates

    inst = tiny_variant(uplift=2.0)
    slates = enumerate_slates(inst.n_products, inst.n_segments, inst.slate_size)
    best = slate_rates(inst, slates).max(axis=0)
    model = build_model(inst)
    assert np.allclose(max_rates(model.cd)[0].numpy(), best, rtol=1e-12)


def test_uncapped_orders_use_truncation_terms_and_stay_valid():
    """No max_order: caps come from Poisson tails with the proven terms added."""
    inst = tiny_variant(max_order=np.array([np.inf, np.inf]), horizon=4)
    sol = solve_lagrangian(inst, **FAST)
    optimum = solve_dp(inst, order_cap=12).value  # a restricted optimum: a lower bound
    assert sol.bound >= optimum
    assert sol.bound <= sol.fluid_bound


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"stockout": "hidden"}, "hidden"),
        ({"warehouse_capacity": 5.0}, "warehouse_capacity"),
    ],
)
def test_refuses_what_is_not_derived(changes, words):
    from coordopt.instance import Stockout

    if "stockout" in changes:
        changes = {"stockout": Stockout(changes["stockout"])}
    with pytest.raises(LagrangianError, match=words):
        build_model(tiny_variant(**changes))


def test_cli_json(capsys):
    from coordopt.cli import main

    rc = main(["solve", "tiny", "--method", "lagrangian", "--json", "--iterations", "5"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("objective", "fluid_bound", "iterations", "seconds", "status", "first_orders"):
        assert key in out
    assert out["method"] == "lagrangian" and out["iterations"] == 5
    assert out["objective"] <= out["fluid_bound"]


@pytest.mark.parametrize("lead", [[1, 0], [2, 1]])
def test_policy_follows_the_protocol_and_earns_below_the_bound(lead):
    from coordopt.evaluation import rollout
    from coordopt.policies import Policy, make_policy
    from coordopt.simulator import SimParams, reset, step

    inst = tiny_variant(lead_time=lead)
    params = SimParams.from_instance(inst)
    pol = make_policy("lagrangian", params, iterations=8)
    assert isinstance(pol, Policy) and pol.name == "lagrangian"
    pol.reset(6)
    state = reset(params, 6)
    gen = torch.Generator().manual_seed(0)
    for _ in range(inst.horizon):
        action = pol.act(state)
        assert action.orders.shape == (6, 2) and action.slates.shape == (6, 1, 1)
        assert (action.orders >= 0).all() and (action.orders <= 6).all()
        assert torch.equal(action.orders, action.orders.round())
        state, _ = step(state, action, params, gen)
    stats = rollout(params, pol, 200, seed=1)
    mean = float(stats.profit.mean())
    assert mean <= pol.solution.bound
    assert mean >= 0.8 * pol.solution.bound  # close to the optimum on tiny


def test_cli_refuses_what_the_bound_does_not_cover_as_bad_input(tmp_path, capsys):
    """Hidden stock-outs are not derived: a clear refusal (exit 2) naming why, not a solver
    failure; the state budget is a checked flag that only --method lagrangian takes."""
    from coordopt.cli import main
    from coordopt.instance import Stockout, save_instance

    path = tmp_path / "hidden.toml"
    save_instance(tiny_variant(stockout=Stockout.HIDDEN), path)
    assert main(["solve", str(path), "--method", "lagrangian", "--iterations", "2"]) == 2
    assert "hidden" in capsys.readouterr().err
    assert main(["solve", "tiny", "--method", "lagrangian", "--max-states", "0"]) == 2
    assert main(["solve", "tiny", "--method", "decompose", "--max-states", "64"]) == 2
    argv = ["solve", "tiny", "--method", "lagrangian", "--json", "--iterations", "2"]
    assert main([*argv, "--max-states", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] > 0
