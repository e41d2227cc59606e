"""The best siloed firm (``siloed:inventory=dp``, docs/model.md "Reference policies"): the
siloed slates with each product's exact dynamic program (solvers/lagrangian.py,
``solve_fixed_rates``). Its programs' value equals the exact DP of the problem restricted to
those slates; its simulated profit is within the CI of that value; it earns at least the
base-stock siloed firm; its options are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordopt.choice import best_revenue_slates, slate_weights
from coordopt.evaluation import compare, evaluate
from coordopt.instance import Instance, load_instance
from coordopt.policies import BEST_SILOED_ENTRY, Policy, make_policy
from coordopt.simulator import SimParams
from coordopt.solvers.dp import solve_dp


def slates_fixed(inst: Instance) -> Instance:
    """``inst`` with the siloed slates built into the attractions (rec = base = the weights
    those slates give): every slate is then the same, so the exact DP of this instance is the
    exact value of ``inst`` restricted to the siloed slates."""
    weights = slate_weights(inst, best_revenue_slates(inst)[0])
    return inst.replace(
        name=f"{inst.name}-siloed-slates", base_attraction=weights, rec_attraction=weights
    )


@pytest.mark.parametrize("lead", [[1, 0], [2, 1]], ids=["tiny", "tiny-lead2"])
def test_programs_value_is_the_exact_dp_with_the_siloed_slates(lead):
    inst = load_instance("tiny").replace(lead_time=np.array(lead))
    params = SimParams.from_instance(inst, dtype=torch.float64)
    pol = make_policy("siloed", params, inventory="dp")
    assert isinstance(pol, Policy) and pol.name == "siloed:inventory=dp"
    assert pol.report()["postponed_products"] == 0
    exact = solve_dp(slates_fixed(inst)).value
    assert pol.value == pytest.approx(exact, rel=1e-9, abs=1e-7)
    # and the policy earns it: simulated mean within its 95% CI of the exact value
    ev = evaluate(params, pol, episodes=2000, seed=0)
    assert abs(ev.mean - exact) <= ev.ci95, (ev.mean, ev.ci95, exact)
    # never below the base-stock siloed firm on the same customers
    base = evaluate(params, "siloed", episodes=2000, seed=0)
    assert compare(ev, base)["mean"] >= -compare(ev, base)["ci95"]


def test_orders_are_whole_capped_and_slates_are_the_siloed_ones():
    inst = load_instance("tiny").replace(lead_time=np.array([2, 1]))
    params = SimParams.from_instance(inst, dtype=torch.float64)
    pol = make_policy("siloed", params, inventory="dp")
    siloed = make_policy("siloed", params)
    from coordopt.simulator import reset, step

    state = reset(params, 5)
    pol.reset(5)
    siloed.reset(5)
    gen = torch.Generator().manual_seed(0)
    for t in range(inst.horizon):
        action = pol.act(state)
        assert torch.equal(action.slates, siloed.act(state).slates)
        assert torch.equal(action.orders, action.orders.round())
        assert (action.orders >= 0).all() and (action.orders <= torch.tensor(inst.max_order)).all()
        if t + inst.lead_time.max() > inst.horizon - 1:  # nothing that arrives too late
            late = torch.tensor(t + inst.lead_time > inst.horizon - 1)
            assert (action.orders[:, late] == 0).all()
        state, _ = step(state, action, params, gen)


def test_earns_at_least_the_base_stock_siloed_firm_on_small():
    params = SimParams.from_instance(load_instance("small"), dtype=torch.float64)
    best = evaluate(params, make_policy("siloed", params, inventory="dp"), episodes=16, seed=3)
    base = evaluate(params, "siloed", episodes=16, seed=3)
    diff = compare(best, base)
    assert diff["mean"] - diff["ci95"] > 0, diff


def test_options_are_checked():
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(ValueError, match=r"inventory must be one of base-stock, dp, got 'lp'"):
        make_policy("siloed", params, inventory="lp")
    with pytest.raises(ValueError, match="season_end"):
        make_policy("siloed", params, inventory="dp", season_end=False)
    with pytest.raises(ValueError, match="max_states"):
        make_policy("siloed", params, inventory="dp", max_states=0)
    assert make_policy("siloed", params, inventory="base-stock").name == "siloed"
    assert callable(BEST_SILOED_ENTRY.factory)


def test_hidden_stockouts_are_refused_with_the_reason():
    inst = load_instance("tiny").replace(stockout="hidden")
    with pytest.raises(ValueError, match=r"siloed:inventory=dp.*hidden"):
        make_policy("siloed", SimParams.from_instance(inst), inventory="dp")


def test_cli_names_it_by_its_spec(capsys):
    import json

    from coordopt.cli import main

    spec = "siloed:inventory=dp"
    code = main(
        ["evaluate", "tiny", "--policy", "siloed", "--policy", spec, "--episodes", "16", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    by = {r["policy"]: r for r in out["results"]}
    assert set(by) == {"siloed", spec}
    assert by[spec]["postponed_products"] == 0 and by[spec]["setup_seconds"] >= 0
    assert main(["evaluate", "tiny", "--policy", "siloed:inventory=lp", "--episodes", "4"]) == 2
    assert "inventory" in capsys.readouterr().err


# The static-margin firm (``static``): the same programs under slates chosen at p - w c.


def test_static_slates_are_the_best_at_their_margin():
    """Every segment's static slate maximises the expected margin ``p - c`` per customer over
    all slates of at most K products (enumerated on ``small``), and the margin per customer
    it reports is that slate's; at ``cost_weight=0`` the slates are the revenue slates."""
    from itertools import combinations

    from coordopt.choice import revenue_rate

    inst = load_instance("small")
    margin = inst.price - inst.unit_cost
    slates, per_customer = best_revenue_slates(inst, cost_weight=1.0)
    assert np.allclose(per_customer, revenue_rate(inst, slates, margin))
    best = np.full(inst.n_segments, -np.inf)
    for size in range(inst.slate_size + 1):
        for chosen in combinations(range(inst.n_products), size):
            row = list(chosen) + [-1] * (inst.slate_size - size)
            every = np.tile(row, (inst.n_segments, 1))
            best = np.maximum(best, revenue_rate(inst, every, margin))
    assert np.allclose(per_customer, best, rtol=1e-9)
    assert not np.array_equal(slates, best_revenue_slates(inst)[0])  # the margin moves them
    revenue = best_revenue_slates(inst, cost_weight=0.0)
    assert np.array_equal(revenue[0], best_revenue_slates(inst)[0])


def test_static_policy_is_the_best_siloed_firm_at_zero_cost_weight():
    """``static:cost_weight=0`` decides exactly as the best siloed firm, state by state; the
    default ``static`` shows the margin slates, orders by its own programs and is a teacher."""
    from coordopt.policies import teachers
    from coordopt.simulator import reset, step

    inst = load_instance("tiny").replace(lead_time=np.array([2, 1]))
    params = SimParams.from_instance(inst, dtype=torch.float64)
    zero = make_policy("static:cost_weight=0", params)
    siloed = make_policy("siloed:inventory=dp", params)
    margin = make_policy("static", params)
    assert (zero.name, margin.name) == ("static:cost_weight=0", "static")
    assert "static" in teachers()
    expected = torch.as_tensor(best_revenue_slates(inst, 1.0)[0])
    state, gen = reset(params, 6), torch.Generator().manual_seed(1)
    for pol in (zero, siloed, margin):
        pol.reset(6)
    for _ in range(inst.horizon):
        a, b = zero.act(state), siloed.act(state)
        assert torch.equal(a.orders, b.orders) and torch.equal(a.slates, b.slates)
        assert torch.equal(margin.act(state).slates[0], expected)
        state, _ = step(state, a, params, gen)
    assert zero.value == pytest.approx(siloed.value, rel=1e-12)


def test_static_program_value_is_the_exact_dp_with_its_slates():
    inst = load_instance("tiny")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    pol = make_policy("static", params)
    weights = slate_weights(inst, best_revenue_slates(inst, 1.0)[0])
    fixed = inst.replace(base_attraction=weights, rec_attraction=weights)
    assert pol.report()["postponed_products"] == 0
    assert pol.value == pytest.approx(solve_dp(fixed).value, rel=1e-9, abs=1e-7)


def test_lookahead_on_the_static_rates_orders_as_the_static_firm():
    """``LagrangianPolicy.for_rates`` with the static firm's demand rates (the headroom
    benchmark's one-step slate improvement) plans its programs for those rates: at every state
    it orders as the static firm, up to near-ties (the two solve the same programs with
    subsidies of other sizes, so equal-valued order quantities may break apart: one unit);
    its slates are its own, chosen at the rate values."""
    from coordopt.simulator import reset, step
    from coordopt.solvers.lagrangian import LagrangianPolicy

    inst = load_instance("small")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    static = make_policy("static:max_states=4096", params)
    ahead = LagrangianPolicy.for_rates(params, static.demand_rate, max_states=4096)
    state, gen = reset(params, 8), torch.Generator().manual_seed(2)
    moved, apart = False, []
    for _ in range(inst.horizon):
        a, b = ahead.act(state), static.act(state)
        assert float((a.orders - b.orders).abs().max()) <= 1.0
        apart.append(float((a.orders != b.orders).double().mean()))
        moved |= not torch.equal(a.slates, b.slates)
        state, _ = step(state, a, params, gen)
    assert np.mean(apart) < 0.1  # measured 4% of the decisions on small
    assert moved  # the slates do react to the state


def test_static_options_are_checked():
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(ValueError, match="cost_weight"):
        make_policy("static:cost_weight=-1", params)
    with pytest.raises(ValueError, match="max_states"):
        make_policy("static:max_states=0", params)
    with pytest.raises(ValueError, match="season_end"):
        make_policy("static:season_end=true", params)
