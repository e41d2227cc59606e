"""Exact DP: brute-force agreement, building blocks, restrictions and refusals, the policy."""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from coordopt.choice import expected_demand
from coordopt.instance import Instance, content_hash, instance_from_dict, load_instance
from coordopt.policies import Policy, make_policy
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.dp import (
    DPError,
    DPPolicy,
    SolutionCache,
    accepted_arrivals,
    enumerate_slates,
    poisson_transition,
    slate_rates,
    solve_dp,
)

# --------------------------------------------------------------------------- brute force
# A plain recursive expectimax written from docs/model.md, sharing no code with the DP: every joint
# order, every slate of every segment, every demand outcome (with "demand >= stock" as one
# outcome), memoised on the full simulator state (period, on-hand, pipeline).


def _pmf(mu: float, d: int) -> float:
    return math.exp(-mu) * mu**d / math.factorial(d) if mu > 0 else float(d == 0)


def brute_force_value(inst: Instance, position_cap: list[int] | None = None) -> float:
    n, m = inst.n_products, inst.n_segments
    lead = [int(x) for x in inst.lead_time]
    width = max(1, max(lead))
    k_max = min(inst.slate_size, n)
    subsets = [set(c) for size in range(k_max + 1) for c in itertools.combinations(range(n), size)]
    hidden = inst.stockout.value == "hidden"
    cap = inst.warehouse_capacity

    def arrive(on_hand, pipe, q):
        incoming = [pipe[i][0] + (q[i] if lead[i] == 0 else 0) for i in range(n)]
        if cap is not None:
            free = max(Fraction(cap) - sum(on_hand), 0)
            total = sum(incoming)
            if total > free:
                incoming = [math.floor(Fraction(x) * free / total) for x in incoming]
        return [on_hand[i] + incoming[i] for i in range(n)]

    def rates(t, avail, slate):
        mu = [0.0] * n
        for k in range(m):
            w = []
            for i in range(n):
                wi = inst.rec_attraction[k, i] if i in slate[k] else inst.base_attraction[k, i]
                if hidden and avail[i] == 0:
                    wi = 0.0
                w.append(wi)
            tot = inst.no_purchase[k] + sum(w)
            for i in range(n):
                mu[i] += inst.arrival_rate[t][k] * w[i] / tot
        return mu

    @functools.cache
    def value(t: int, on_hand: tuple, pipe: tuple) -> float:
        if t == inst.horizon:
            return 0.0
        last = t == inst.horizon - 1
        best = -math.inf
        for q in itertools.product(*(range(int(inst.max_order[i]) + 1) for i in range(n))):
            if position_cap is not None and any(
                on_hand[i] + sum(pipe[i]) + q[i] > position_cap[i] for i in range(n)
            ):
                continue
            cost = sum(
                inst.unit_cost[i] * q[i] + (inst.fixed_order_cost[i] if q[i] else 0)
                for i in range(n)
            )
            avail = arrive(on_hand, pipe, q)
            new_pipe = []
            for i in range(n):
                row = [*pipe[i][1:], 0]
                if lead[i] >= 1:
                    row[lead[i] - 1] += q[i]
                new_pipe.append(tuple(row))
            new_pipe_t = tuple(new_pipe)
            for slate in itertools.product(subsets, repeat=m):
                mu = rates(t, avail, slate)
                # per-product outcomes: (probability, sales)
                outcomes = []
                for i in range(n):
                    a = avail[i]
                    opts = [(_pmf(mu[i], d), d) for d in range(a)]
                    opts.append((1.0 - sum(p for p, _ in opts), a))
                    outcomes.append(opts)
                expect = 0.0
                for combo in itertools.product(*outcomes):
                    prob = math.prod(p for p, _ in combo)
                    if prob == 0.0:
                        continue
                    sales = [s for _, s in combo]
                    end = [avail[i] - sales[i] for i in range(n)]
                    r = 0.0
                    for i in range(n):
                        r += inst.price[i] * sales[i] - inst.holding_cost[i] * end[i]
                        r += inst.lost_sale_penalty[i] * sales[i]  # -b * (mu - sales), mu below
                        if last:
                            r += inst.salvage_value[i] * end[i]
                    expect += prob * (r + inst.discount * value(t + 1, tuple(end), new_pipe_t))
                expect -= sum(inst.lost_sale_penalty[i] * mu[i] for i in range(n))
                best = max(best, expect - cost)
        return best

    x0 = tuple(int(x) for x in inst.initial_inventory)
    return value(0, x0, tuple((0,) * width for _ in range(n)))


def two_segment_instance(**overrides) -> Instance:
    data = {
        "name": "bf",
        "horizon": 3,
        "discount": 1.0,
        "slate_size": 1,
        "stockout": "lost",
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
                "max_order": 2,
            },
            {
                "name": "B",
                "price": 6.0,
                "unit_cost": 2.5,
                "holding_cost": 0.2,
                "lost_sale_penalty": 0.3,
                "lead_time": 0,
                "initial_inventory": 0,
                "salvage_value": 0.5,
                "max_order": 2,
            },
        ],
        "segment": [
            {
                "name": "s1",
                "arrival_rate": 1.2,
                "base_attraction": [0.4, 0.9],
                "rec_attraction": [1.6, 1.2],
                "no_purchase": 1.0,
            },
            {
                "name": "s2",
                "arrival_rate": 0.8,
                "base_attraction": [0.7, 0.2],
                "rec_attraction": [1.0, 1.5],
                "no_purchase": 0.8,
            },
        ],
    }
    for table in ("product", "segment"):
        for i, changes in overrides.pop(table, {}).items():
            data[table][i].update(changes)
    data.update(overrides)
    return instance_from_dict(data)


BRUTE_CASES = {
    "lost": {},
    "hidden_k2": {"stockout": "hidden", "slate_size": 2, "horizon": 2},
    "discount_fixed_cost": {"discount": 0.85, "product": {0: {"fixed_order_cost": 1.5}}},
    "warehouse": {"warehouse_capacity": 2.0, "product": {0: {"initial_inventory": 0}}},
    "lead_two": {"product": {0: {"lead_time": 2, "initial_inventory": 0}}},
    "seasonal": {
        "segment": {0: {"arrival_rate": [0.3, 2.6, 1.1]}, 1: {"arrival_rate": [1.9, 0.2, 0.8]}}
    },
}


def three_by_three_instance() -> Instance:
    """3 products, 3 segments, hidden; product C's free orders (lead time 2) never arrive."""
    return instance_from_dict(
        {
            "name": "bf3",
            "horizon": 2,
            "stockout": "hidden",
            "slate_size": 1,
            "product": [
                {
                    "name": "A",
                    "price": 8.0,
                    "unit_cost": 4.0,
                    "holding_cost": 0.3,
                    "lead_time": 1,
                    "initial_inventory": 1,
                    "max_order": 1,
                    "lost_sale_penalty": 0.5,
                },
                {"name": "B", "price": 5.0, "unit_cost": 2.0, "salvage_value": 1.0, "max_order": 1},
                {
                    "name": "C",
                    "price": 3.0,
                    "unit_cost": 0.0,
                    "lead_time": 2,
                    "initial_inventory": 1,
                    "max_order": 1,
                },
            ],
            "segment": [
                {
                    "arrival_rate": 1.0,
                    "base_attraction": [0.5, 0.5, 0.5],
                    "rec_attraction": [1.5, 0.9, 0.6],
                },
                {
                    "arrival_rate": 0.6,
                    "base_attraction": [0.2, 1.0, 0.3],
                    "rec_attraction": [0.2, 2.0, 1.3],
                },
                {
                    "arrival_rate": 0.9,
                    "base_attraction": [1.0, 0.1, 0.4],
                    "rec_attraction": [1.1, 0.8, 2.0],
                    "no_purchase": 2.0,
                },
            ],
        }
    )


def test_dp_equals_brute_force_three_products_three_segments():
    inst = three_by_three_instance()
    sol = solve_dp(inst)
    assert sol.value == pytest.approx(brute_force_value(inst), rel=1e-10)
    assert (sol.policy.orders[:, :, 2] == 0).all()  # C's orders would arrive after the horizon


@pytest.mark.parametrize("case", sorted(BRUTE_CASES))
def test_dp_equals_brute_force_enumeration(case):
    inst = two_segment_instance(**BRUTE_CASES[case])
    sol = solve_dp(inst)
    assert sol.status == "optimal" and sol.truncation.exact
    assert sol.value == pytest.approx(brute_force_value(inst), rel=1e-10, abs=1e-10)
    assert sol.truncation.forward_value == pytest.approx(sol.value, rel=1e-10, abs=1e-10)


def test_brute_force_cases_exercise_their_feature():
    """Each variant changes the optimum, so agreement above is not agreement by accident."""
    lost = solve_dp(two_segment_instance()).value
    for case, undo in (
        ("warehouse", {"warehouse_capacity": None}),
        ("lead_two", {"lead_time": [1, 0]}),
        ("hidden_k2", {"stockout": "lost", "slate_size": 1}),
        ("seasonal", {"arrival_rate": [1.2, 0.8]}),
    ):
        inst = two_segment_instance(**BRUTE_CASES[case])
        assert abs(solve_dp(inst).value - solve_dp(inst.replace(**undo)).value) > 1e-3, case
    assert (
        abs(solve_dp(two_segment_instance(**BRUTE_CASES["discount_fixed_cost"])).value - lost)
        > 1e-3
    )


def test_restricted_inventory_cap_equals_brute_force_with_that_cap_and_is_reported():
    inst = two_segment_instance()
    exact = solve_dp(inst)
    sol = solve_dp(inst, inventory_cap=[2, 1])
    assert sol.status == "optimal_restricted" and not sol.truncation.exact
    assert "lower bound" in sol.truncation.message
    assert sol.value == pytest.approx(brute_force_value(inst, position_cap=[2, 1]), rel=1e-10)
    assert sol.value < exact.value - 1e-6
    assert sol.truncation.restricted_visits > 0
    np.testing.assert_array_equal(sol.truncation.reachable_position, [1 + 2 * 2, 0 + 2 * 3])


# --------------------------------------------------------------------------- building blocks


def test_enumerate_slates_counts_and_padding():
    table = enumerate_slates(3, 2, 2)
    assert table.shape == (7 * 7, 2, 2)
    assert (table[0] == -1).all()  # the empty joint slate comes first
    assert len({tuple(map(tuple, s)) for s in table}) == 49
    assert enumerate_slates(2, 1, 5).shape == (4, 1, 2)  # slate size beyond N: min(K, N)


def test_slate_rates_match_choice_module_and_hidden_zeroes():
    inst = two_segment_instance(slate_size=2)
    table = enumerate_slates(2, 2, 2)
    mu = slate_rates(inst, table)
    for j in (0, 5, len(table) - 1):
        np.testing.assert_allclose(mu[j], expected_demand(inst, table[j])[0], rtol=1e-12)
    hid = slate_rates(inst, table, np.array([False, True]))
    assert (hid[:, 0] == 0).all()
    np.testing.assert_allclose(
        hid[3], expected_demand(inst, table[3], available=[0, 5])[0], rtol=1e-12
    )


@pytest.mark.parametrize("mu", [0.0, 0.7, 3.5])
def test_poisson_transition_is_a_kernel_with_exact_expected_sales(mu):
    kernel, sales = poisson_transition(mu, 9)
    np.testing.assert_allclose(kernel.sum(1), 1.0, atol=1e-14)
    assert (np.triu(kernel, 1) == 0).all()  # stock never grows
    d = np.arange(100)
    pmf = np.array([_pmf(mu, int(x)) for x in d]) if mu > 0 else (d == 0).astype(float)
    for a in range(9):
        assert sales[a] == pytest.approx(float(np.minimum(d, a) @ pmf), abs=1e-12)
        ends = kernel[a] @ np.arange(9)
        assert ends == pytest.approx(a - sales[a], abs=1e-12)


def test_accepted_arrivals_pro_rata_rounds_down_exactly():
    on_hand = np.array([[3, 4], [0, 0], [1, 0]])
    arrivals = np.array([[22, 0], [2, 2], [1, 1]])
    got = accepted_arrivals(on_hand, arrivals, 22.0)
    # 22 units into 15 free slots: 15 exactly (a ratio-first float rule can give 14)
    np.testing.assert_array_equal(got, [[15, 0], [2, 2], [1, 1]])
    np.testing.assert_array_equal(
        accepted_arrivals(on_hand, arrivals, 2.0), [[0, 0], [1, 1], [0, 0]]
    )
    assert accepted_arrivals(on_hand, arrivals, None) is arrivals


# --------------------------------------------------------------------------- refusals


def test_refuses_unbounded_orders_and_names_the_fix():
    inst = load_instance("tiny").replace(max_order=[math.inf, 6])
    with pytest.raises(DPError, match="order_cap"):
        solve_dp(inst)
    sol = solve_dp(inst.replace(horizon=2), order_cap=3)
    assert not sol.truncation.exact and sol.status == "optimal_restricted"
    np.testing.assert_array_equal(sol.truncation.order_cap, [3, 3])


def test_refuses_too_many_states_and_cap_below_initial_inventory():
    inst = load_instance("tiny")
    with pytest.raises(DPError, match="inventory_cap"):
        solve_dp(inst, max_states=1000)
    with pytest.raises(DPError, match="initial inventory"):
        solve_dp(inst, inventory_cap=1)


# --------------------------------------------------------------------------- tables and policy


def test_lookup_round_trip_and_out_of_table_error():
    inst = load_instance("tiny").replace(horizon=4)
    sol = solve_dp(inst)
    on_hand, pipe = sol.space.decode()
    idx = np.array([0, 17, sol.n_states - 1])
    np.testing.assert_array_equal(sol.lookup(2, on_hand[idx], pipe[idx]), idx)
    assert sol.value_at(0, inst.initial_inventory, np.zeros((2, 1)))[0] == sol.value
    orders, slates = sol.action(0, inst.initial_inventory, np.zeros((2, 1)))
    np.testing.assert_array_equal(orders[0], sol.first_orders)
    np.testing.assert_array_equal(slates[0], sol.first_slates)
    with pytest.raises(DPError, match="outside the DP table"):
        sol.lookup(0, np.array([[999, 0]]), np.zeros((1, 2, 1)))
    with pytest.raises(DPError, match="horizon"):
        sol.lookup(4, on_hand[:1], pipe[:1])


def test_no_orders_that_cannot_arrive_and_values_are_monotone_in_stock():
    inst = load_instance("tiny").replace(horizon=5)
    sol = solve_dp(inst)
    # product A (lead time 1): an order in the last period would arrive after the horizon
    assert (sol.policy.orders[-1][:, 0] == 0).all()
    on_hand, pipe = sol.space.decode()
    # one more unit of B on hand costs at most its holding cost until the horizon (ignore it)
    base = (on_hand[:, 1] < 20) & (on_hand[:, 0] < 20)
    more = on_hand[base].copy()
    more[:, 1] += 1
    v0 = sol.policy.values[1, base]
    v1 = sol.value_at(1, more, pipe[base])
    assert (v1 >= v0 - inst.holding_cost[1] * (inst.horizon - 1) - 1e-9).all()
    assert (v1 > v0).any()


def test_dp_policy_follows_the_protocol_and_the_tables():
    inst = load_instance("tiny").replace(horizon=4)
    params = SimParams.from_instance(inst)
    pol = make_policy("dp", params)
    assert isinstance(pol, DPPolicy) and isinstance(pol, Policy) and pol.name == "dp"
    assert make_policy("dp", params).solution is pol.solution  # cached
    pol.reset(5)
    state = reset(params, 5)
    gen = torch.Generator().manual_seed(0)
    for t in range(inst.horizon):
        action = pol.act(state)
        assert action.orders.shape == (5, 2) and action.slates.shape == (5, 1, 1)
        orders, slates = pol.solution.action(t, state.on_hand.numpy(), state.pipeline.numpy())
        np.testing.assert_array_equal(action.orders.numpy(), orders)
        np.testing.assert_array_equal(action.slates.numpy(), slates)
        state, _ = step(state, action, params, gen)


def test_solution_cache_is_keyed_by_content_and_options():
    inst = load_instance("tiny").replace(horizon=3)
    twin = inst.replace()  # another object with the same content
    edited = inst.replace(price=inst.price * 1.5)
    assert content_hash(twin) == content_hash(inst) != content_hash(edited)
    cache = SolutionCache(size=2)
    first = cache.solve(inst, {})
    assert cache.solve(twin, {}) is first  # same content: no new solve
    other = cache.solve(edited, {})
    assert other is not first and other.value > first.value  # dearer goods, more profit
    assert cache.solve(inst, {"order_cap": 1}) is not first  # other options, other entry
    assert cache.solve(inst, {}) is not first  # size 2: the oldest entry was dropped
