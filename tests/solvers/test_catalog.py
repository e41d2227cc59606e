"""Catalog-scale solver: every step of the bound's proof as a property, bound >= exact
optimum >= plan on named and generated instances (both stockout modes, warehouse capacity,
seasonal arrival rates),
and the recovered plan passes the fluid program's feasibility check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from coordopt.choice import best_slates
from coordopt.generator import generate_instance
from coordopt.instance import load_instance
from coordopt.models.fluid import FluidStart
from coordopt.solvers import catalog as C
from coordopt.solvers.catalog import solver
from coordopt.solvers.fluid import solve_fluid

REL = 1e-6


def _capacitated(inst, share=0.6):
    """``inst`` with a warehouse capacity that binds: ``share`` of the exact plan's peak."""
    sol = solve_fluid(inst).require()
    peak = float((sol.inventory + sol.sales).sum(axis=1).max())
    cap = max(share * peak, float(inst.initial_inventory.sum()) + 1.0)
    return inst.replace(name=f"{inst.name}-cap", warehouse_capacity=cap)


def _instances():
    small = load_instance("small")
    gen = [
        generate_instance(n_products=12, n_segments=4, horizon=8, seed=s, discount=0.97)
        for s in range(3)
    ]
    return {
        "tiny": load_instance("tiny"),
        "small": small,
        "small-hidden": small.replace(stockout="hidden"),
        "gen0": gen[0],
        "gen1-hidden": gen[1].replace(stockout="hidden"),
        "gen2": gen[2],
        "gen2-fixed-capped": gen[2].replace(
            fixed_order_cost=np.full(12, 15.0), max_order=np.where(np.arange(12) % 2, 30.0, np.inf)
        ),
        "gen0-cap": _capacitated(gen[0]),
        "gen1-hidden-cap": _capacitated(gen[1].replace(stockout="hidden")),
        "gen3-seasonal": generate_instance(
            n_products=12, n_segments=4, horizon=8, seed=3, seasonality=0.6, peak=0.7
        ),
        "gen4-seasonal-hidden": generate_instance(
            n_products=12, n_segments=4, horizon=8, seed=4, seasonality=0.5, peak=0.2
        ).replace(stockout="hidden"),
    }


CASES = _instances()


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    inst = CASES[request.param]
    return inst, solve_fluid(inst).require().objective


def _random_multipliers(cd, rng):
    lo, hi = C.stock_value_box(cd)
    top = torch.where(torch.isfinite(hi), hi, cd.g[:, None] * cd.price[None])
    mu = lo + (top - lo) * torch.as_tensor(rng.random(tuple(lo.shape)))
    rho = torch.as_tensor(rng.random(cd.shape[0])) * float(cd.price.mean())
    return mu, rho


def test_bound_holds_at_random_stock_values(case):
    inst, exact = case
    cd = C.catalog_data(inst)
    rng = np.random.default_rng(0)
    for _ in range(5):
        mu, rho = _random_multipliers(cd, rng)
        if cd.capacity is None:
            rho = torch.zeros_like(rho)
        assert C.dual_value(cd, mu, rho).bound >= exact - REL * abs(exact)


def test_solver_brackets_the_exact_optimum_with_a_feasible_plan(case):
    inst, exact = case
    sol = C.solve_catalog(inst, gap=1e-4, max_iterations=150)
    assert sol.bound >= exact - REL * abs(exact)
    assert sol.plan_value <= exact + REL * abs(exact)
    cd = C.catalog_data(inst)
    res = C.plan_residuals(cd.fluid, sol.plan, cd.rate.numpy())
    assert max(res.values()) < 1e-7, res
    assert sol.plan_value == pytest.approx(C.plan_objective(cd.fluid, sol.plan), rel=1e-9)
    assert sol.gap < 0.02


def test_medium_bound_is_close_to_the_exact_optimum():
    inst = load_instance("medium")
    exact = solve_fluid(inst).require().objective
    sol = C.solve_catalog(inst, gap=5e-4, max_iterations=400)
    assert exact - REL * exact <= sol.bound <= exact * (1 + 1e-3)
    assert sol.plan_value <= exact + REL * exact


def _choice_lp(margin, lam, wr, wn, w0, k, hidden):
    """The sales-based choice program of one (period, segment), solved by HiGHS."""
    n = len(margin)
    c = -np.concatenate([margin * wr, margin * wn, [0.0]])  # alpha, beta, y
    a_eq = [np.concatenate([wr, wn, [w0]])]
    b_eq = [lam]
    once = np.hstack([np.eye(n), np.eye(n), -np.ones((n, 1))])
    slate = np.concatenate([np.ones(n), np.zeros(n), [-float(k)]])
    if hidden:
        a_ub, b_ub = np.vstack([once, slate]), np.zeros(n + 1)
    else:
        a_eq += list(once)
        b_eq += [0.0] * n
        a_ub, b_ub = slate[None], np.zeros(1)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=np.array(a_eq), b_eq=b_eq, method="highs")
    assert res.status == 0
    return -res.fun


@pytest.mark.parametrize("hidden", [False, True])
def test_slate_subproblem_equals_the_sales_based_lp(hidden):
    rng = np.random.default_rng(3)
    n, m, h, k = 9, 4, 3, 2
    wn = rng.uniform(0.1, 1.0, (m, n))
    wr = wn * rng.uniform(1.0, 3.0, (m, n))
    w0 = rng.uniform(0.5, 2.0, m)
    lam = rng.uniform(5, 20, (h, m))
    margin = rng.uniform(-3.0, 10.0, (h, n))
    t = torch.as_tensor
    ch = best_slates(t(margin), t(lam), t(wr), t(wn), t(w0), k, hidden)
    for tt in range(h):
        for kk in range(m):
            lp = _choice_lp(margin[tt], lam[tt, kk], wr[kk], wn[kk], w0[kk], k, hidden)
            got = lam[tt, kk] * float(ch.rate[tt, kk])
            assert got == pytest.approx(lp, rel=1e-9, abs=1e-9)
            assert lam[tt, kk] * float(ch.upper[tt, kk]) == pytest.approx(lp, rel=1e-9, abs=1e-9)
    # a warm start far above the optimum still ends at the optimum, with a valid upper bound
    again = best_slates(t(margin), t(lam), t(wr), t(wn), t(w0), k, hidden, start=ch.rate + 50)
    assert torch.allclose(again.rate, ch.rate, rtol=1e-9)
    early = best_slates(t(margin), t(lam), t(wr), t(wn), t(w0), k, hidden, max_iter=1)
    assert bool((early.upper >= ch.rate - 1e-12).all())


def _inventory_lp(cd, mu, rho, i):
    """One product's inventory program (module docstring) as an LP solved by HiGHS; the
    capacity term ``sum rho C`` is left out."""
    h = cd.shape[0]
    g, lead = cd.g.numpy(), int(cd.lead_time[i])
    # variables q (h), s (h), I (h)
    c = np.concatenate(
        [
            -g * cd.unit_cost[:, i].numpy() - _arrival_cost(rho, lead, h),
            mu[:, i].numpy(),
            -g * float(cd.holding[i]) - np.append(rho[1:], 0.0),
        ]
    )
    c[3 * h - 1] += g[-1] * float(cd.salvage[i])
    a = np.zeros((h, 3 * h))
    for t in range(h):
        a[t, 2 * h + t] = 1.0
        a[t, h + t] = 1.0
        if t > 0:
            a[t, 2 * h + t - 1] = -1.0
        if t - lead >= 0:
            a[t, t - lead] = -1.0
    b = cd.supply[:, i].numpy()
    bounds = [(0, float(cd.qmax[t, i])) for t in range(h)] + [(0, None)] * (2 * h)
    res = linprog(-c, A_eq=a, b_eq=b, bounds=bounds, method="highs")
    assert res.status == 0
    return -res.fun - float((rho * b).sum())


def _arrival_cost(rho, lead, h):
    """Capacity price paid by an order placed at tau when it arrives (0 after the horizon)."""
    out = np.zeros(h)
    out[: max(h - lead, 0)] = rho[lead:]
    return out


def test_inventory_subproblem_equals_its_lp():
    inst = generate_instance(n_products=6, n_segments=2, horizon=7, seed=4, discount=0.95)
    inst = inst.replace(max_order=np.array([3.0, np.inf, 5.0, np.inf, 2.0, np.inf]))
    cd = C.catalog_data(inst, FluidStart(2, inst.initial_inventory + 1.0, np.ones((6, 2))))
    rng = np.random.default_rng(5)
    mu, _ = _random_multipliers(cd, rng)
    rho = rng.random(cd.shape[0]) * 0.5
    rho_t = torch.as_tensor(rho)
    total = 0.0
    for i in range(cd.shape[2]):
        total += _inventory_lp(cd, mu, rho, i)
    closed = float(C.inventory_bound(cd, mu, rho_t)) - float(rho.sum()) * (cd.capacity or 0.0)
    assert closed == pytest.approx(total, rel=1e-9)
    # the flows returned for the subgradient are an optimal solution of the same programs:
    # feasible (balance, order caps, no order arriving before it could) and worth the LP's
    # optimum, product by product, whatever demand breaks the ties toward
    for scale in (0.0, 5.0, 50.0):
        demand = torch.as_tensor(rng.random(tuple(mu.shape)) * scale)
        sales, onhand = C.inventory_flows(cd, mu, rho_t, demand)
        for i in range(cd.shape[2]):
            got = _inventory_flows_value(cd, mu, rho, sales, onhand, i)
            assert got == pytest.approx(_inventory_lp(cd, mu, rho, i), rel=1e-9, abs=1e-9), i


def _inventory_flows_value(cd, mu, rho, sales, onhand, i):
    """Product ``i``'s inventory-program objective at flows ``sales, onhand (H,N)`` (the LP's
    of :func:`_inventory_lp`), after checking that they are feasible: the orders they imply
    (what arrives beyond the carried stock and the fixed supply) are within ``[0, qmax]`` and
    none arrives before ``L`` periods; sales and end stock are >= 0."""
    g, lead = cd.g.numpy(), int(cd.lead_time[i])
    s, a = sales[:, i].numpy(), onhand[:, i].numpy()
    end = a - s
    arrived = a - np.concatenate([[0.0], end[:-1]]) - cd.supply[:, i].numpy()
    assert (s >= -1e-12).all() and (end >= -1e-9).all() and (arrived >= -1e-9).all()
    value = float(mu[:, i].numpy() @ s - (g * float(cd.holding[i])) @ end - rho @ a)
    value += g[-1] * float(cd.salvage[i]) * end[-1]
    for t, q in enumerate(arrived):
        tau = t - lead  # the order arriving in t was placed in tau
        if tau < 0:
            assert abs(q) <= 1e-9, (t, q)
            continue
        assert q <= float(cd.qmax[tau, i]) + 1e-9
        value -= g[tau] * float(cd.unit_cost[tau, i]) * q
    return value


def _cheapest_delivered_cost(cd, rho):
    """``U_t`` of every (period, product) by enumerating the order period ``tau``: the
    discounted unit cost at ``tau``, holding from arrival ``tau + L`` up to ``t``, and the
    capacity price of every period the unit is on hand (``inf`` before the first arrival)."""
    h, _, n = cd.shape
    g, c, hold = cd.g.numpy(), cd.unit_cost.numpy(), cd.holding.numpy()
    out = np.full((h, n), np.inf)
    for t in range(h):
        for i in range(n):
            for tau in range(t - int(cd.lead_time[i]) + 1):
                arrive = tau + int(cd.lead_time[i])
                cost = g[tau] * c[tau, i] + sum(g[u] * hold[i] for u in range(arrive, t))
                out[t, i] = min(out[t, i], cost + sum(rho[u] for u in range(arrive, t + 1)))
    return out


def test_stock_value_box_is_the_penalty_cap_and_the_cheapest_delivered_cost(case):
    """``hi = g (p + b)`` (the validity cap), lowered to the cheapest delivered cost where
    orders are uncapped -- checked against an enumeration of every order period, at zero
    and at random capacity prices."""
    inst, _ = case
    cd = C.catalog_data(inst)
    cap = (cd.g[:, None] * (cd.price + cd.penalty)[None]).numpy()
    uncapped = np.isinf(cd.fluid.max_order)
    rng = np.random.default_rng(7)
    for rho in (np.zeros(cd.shape[0]), rng.random(cd.shape[0]) * float(cd.price.mean())):
        lo, hi = C.stock_value_box(cd, torch.as_tensor(rho))
        expect = np.where(uncapped[None], np.minimum(cap, _cheapest_delivered_cost(cd, rho)), cap)
        np.testing.assert_allclose(hi.numpy(), expect, rtol=1e-12, atol=1e-12)
        assert bool((lo == 0).all())
    if uncapped.any():
        assert (hi.numpy() < cap - 1e-9).any()  # the delivered cost binds somewhere


def test_solve_from_a_mid_horizon_state_bounds_the_fluid_program_from_there():
    inst = load_instance("small")
    start = FluidStart(5, inst.initial_inventory * 0.5, np.ones((inst.n_products, 2)))
    exact = solve_fluid(inst, start=start).require().objective
    sol = C.solve_catalog(inst, start=start, gap=1e-4, max_iterations=150)
    assert sol.bound >= exact - REL * abs(exact)
    assert sol.plan_value <= exact + REL * abs(exact)
    assert sol.plan.orders.shape == (inst.horizon - 5, inst.n_products)


def test_stops_and_says_why():
    inst = load_instance("small")
    assert C.solve_catalog(inst, max_iterations=3).stop == "iterations"
    assert C.solve_catalog(inst, gap=0.5).stop == "gap"
    assert C.solve_catalog(inst, gap=0.0, time_limit=0.0).stop == "time_limit"
    assert C.solve_catalog(inst, gap=0.0, time_limit=0.0).result().status.value == "time_limit"


@pytest.mark.parametrize(("plan_every", "plans"), [(10, [0, 10, 20, 24]), (0, [0, 24])])
def test_plans_are_recovered_on_an_iteration_schedule(monkeypatch, plan_every, plans):
    """A plan at iteration 0, every ``plan_every`` iterations, and from the last average:
    the iterations, not the clock, decide when (so a solve's numbers never depend on the
    machine's speed); ``timings`` still reports where the time went."""
    seen: list[int] = []
    dual, recover = C.dual_value, C.recover_plan
    calls = {"dual": 0}

    def counted_dual(*args, **kwargs):
        calls["dual"] += 1
        return dual(*args, **kwargs)

    def logged_recover(*args, **kwargs):
        seen.append(calls["dual"] - 1)
        return recover(*args, **kwargs)

    monkeypatch.setattr(solver, "dual_value", counted_dual)
    monkeypatch.setattr(solver, "recover_plan", logged_recover)
    sol = C.solve_catalog(load_instance("small"), gap=0.0, max_iterations=25, plan_every=plan_every)
    assert sol.stop == "iterations" and sol.iterations == 25
    assert seen == plans
    assert set(sol.timings) == {"dual", "plan"}
    with pytest.raises(ValueError, match="plan_every"):
        C.solve_catalog(load_instance("tiny"), plan_every=-1)


def test_refuses_salvage_above_cost():
    inst = load_instance("tiny")
    bad = inst.replace(salvage_value=inst.unit_cost + 1.0)
    with pytest.raises(C.CatalogError, match="salvage_value"):
        C.catalog_data(bad)


def _point_vector(arrays, point):
    lay = arrays.layout
    x = np.zeros(lay.n_cols)
    for name, val in (
        ("alpha", point.alpha),
        ("beta", point.beta),
        ("y", point.y),
        ("q", point.orders),
        ("s", point.sales),
        ("l", point.lost),
        ("inv", point.inventory),
    ):
        x[lay.col(name)] = val
    if "z" in lay.cols:
        x[lay.col("z")] = point.indicators
    return x


def test_plan_satisfies_the_compiled_fluid_program(case):
    """Differential check: the recovered plan against the bulk path's constraint matrix."""
    from coordopt.solvers.highs_bulk import assemble_fluid_lp

    inst, _ = case
    sol = C.solve_catalog(inst, max_iterations=20)
    arrays = assemble_fluid_lp(C.catalog_data(inst).fluid)
    x = _point_vector(arrays, sol.plan)
    ax = arrays.matrix @ x
    assert (ax >= arrays.row_lower - 1e-6).all() and (ax <= arrays.row_upper + 1e-6).all()
    assert (x >= arrays.col_lower - 1e-9).all() and (x <= arrays.col_upper + 1e-6).all()
    assert float(arrays.cost @ x) == pytest.approx(sol.plan_value, rel=REL)


def test_exact_optimum_passes_the_check_and_its_frequencies_recover_it(case):
    inst, exact = case
    full = solve_fluid(inst).require()
    cd = C.catalog_data(inst)
    big_m = cd.fluid.big_m
    indicators = np.divide(full.orders, big_m, out=np.zeros_like(big_m), where=big_m > 0)
    point = C.FluidPoint(
        full.alpha,
        full.beta,
        full.y,
        full.orders,
        full.sales,
        full.lost,
        full.inventory,
        indicators if cd.fluid.order_indicators else np.zeros_like(big_m),
        full.objective,
    )
    assert max(C.plan_residuals(cd.fluid, point, cd.rate.numpy()).values()) < 1e-6
    again = C.recover_plan(cd, full.rec_frequency, _offered(point) if cd.hidden else None)
    assert again.objective == pytest.approx(exact, rel=1e-6)
    broken = dataclasses.replace(point, alpha=full.alpha * 1.1)
    res = C.plan_residuals(cd.fluid, broken, cd.rate.numpy())
    assert res["choice_balance"] > 1e-6


def test_greedy_flows_are_feasible_and_below_the_exact_flows(case):
    inst, exact = case
    sol = C.solve_catalog(inst, max_iterations=10, exact_flows=False, final_exact=False)
    cd = C.catalog_data(inst)
    res = C.plan_residuals(cd.fluid, sol.plan, cd.rate.numpy())
    assert max(res.values()) < 1e-7, res
    assert sol.plan_value <= exact + REL * abs(exact)
    lp = C.recover_plan(cd, sol.plan.rec_frequency, _offered(sol.plan) if cd.hidden else None)
    assert sol.plan_value <= lp.objective + REL * abs(lp.objective)


def _offered(p):
    """How often each product is offered, ``(alpha + beta) / y`` (1 where y = 0)."""
    y = np.maximum(p.y[..., None], 1e-300)
    return np.where(p.y[..., None] > 1e-12, (p.alpha + p.beta) / y, 1.0)
