"""Golden: one period with ample stock, the fluid optimum is the best slate's revenue.

With stock ample and nothing to order, one period of the fluid program is, per segment,
``max lambda_k sum_i p_i x_ki`` over the sales-based polytope. Dividing by y (Charnes-Cooper)
turns it into a linear-fractional program over u = alpha / y (and o = (alpha + beta) / y in
hidden mode) with ``0 <= u <= 1, sum u <= K`` (lost) or ``0 <= u <= o <= 1, sum u <= K``
(hidden). Both constraint matrices are totally unimodular, so the optimum sits at an
integral vertex: a deterministic slate (and, in hidden mode, a deterministic offer set).
Hence the fluid value EQUALS the best slate found by enumeration for every K, not only K=N;
in hidden mode it equals the best (offer set, slate) pair, which is >= the best slate with
everything offered.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from coordopt.choice import best_revenue_slates, revenue_rate
from coordopt.instance import Instance, Stockout, make_instance
from coordopt.solvers.fluid import solve_fluid


def one_period(slate_size: int, stockout: str, seed: int = 3) -> Instance:
    rng = np.random.default_rng(seed)
    n, m = 5, 2
    base = rng.uniform(0.2, 1.5, (m, n))
    return make_instance(
        name="golden",
        horizon=1,
        discount=1.0,
        slate_size=slate_size,
        stockout=stockout,
        warehouse_capacity=None,
        product_names=tuple(f"P{i}" for i in range(n)),
        price=rng.uniform(2.0, 20.0, n),
        unit_cost=np.full(n, 1.0),
        holding_cost=np.zeros(n),
        lost_sale_penalty=np.zeros(n),
        lead_time=np.zeros(n, dtype=int),
        initial_inventory=np.full(n, 10_000),
        salvage_value=np.zeros(n),
        fixed_order_cost=np.zeros(n),
        max_order=np.full(n, np.inf),
        segment_names=("a", "b"),
        arrival_rate=np.array([30.0, 12.0]),
        base_attraction=base,
        rec_attraction=base * rng.uniform(1.0, 4.0, (m, n)),
        no_purchase=np.array([1.0, 2.5]),
    )


def segment_revenue(
    inst: Instance, k: int, offered: tuple[int, ...], slate: tuple[int, ...]
) -> float:
    w = np.zeros(inst.n_products)
    w[list(offered)] = inst.base_attraction[k, list(offered)]
    w[list(slate)] = inst.rec_attraction[k, list(slate)]
    return float(inst.arrival_rate[0, k] * (inst.price @ w) / (inst.no_purchase[k] + w.sum()))


def best_by_enumeration(inst: Instance, hide: bool) -> float:
    n, kmax = inst.n_products, inst.slate_size
    products = tuple(range(n))
    total = 0.0
    for k in range(inst.n_segments):
        best = 0.0
        offer_sets = (
            itertools.chain.from_iterable(itertools.combinations(products, r) for r in range(n + 1))
            if hide
            else [products]
        )
        for offered in offer_sets:
            for r in range(min(kmax, len(offered)) + 1):
                for slate in itertools.combinations(offered, r):
                    best = max(best, segment_revenue(inst, k, offered, slate))
        total += best
    return total


@pytest.mark.parametrize("slate_size", [1, 2, 5])
def test_lost_mode_fluid_equals_best_enumerated_slate(slate_size: int) -> None:
    inst = one_period(slate_size, "lost")
    sol = solve_fluid(inst)
    best = best_by_enumeration(inst, hide=False)
    assert sol.objective == pytest.approx(best, rel=1e-8)
    assert sol.orders.sum() == pytest.approx(0.0, abs=1e-9)
    # the exact MNL assortment routine finds the same slates
    slates, _ = best_revenue_slates(inst)
    assert float(inst.arrival_rate[0] @ revenue_rate(inst, slates)) == pytest.approx(best, rel=1e-9)
    # an integral vertex: every product shown always or never
    f = sol.rec_frequency[0]
    assert np.all((f < 1e-7) | (f > 1 - 1e-7))


@pytest.mark.parametrize("slate_size", [1, 3])
def test_hidden_mode_fluid_equals_best_offer_set_and_slate(slate_size: int) -> None:
    inst = one_period(slate_size, "hidden")
    assert inst.stockout is Stockout.HIDDEN
    sol = solve_fluid(inst)
    assert sol.objective >= best_by_enumeration(inst, hide=False) - 1e-8
    assert sol.objective == pytest.approx(best_by_enumeration(inst, hide=True), rel=1e-8)
