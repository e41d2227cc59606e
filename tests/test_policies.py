"""Siloed policy: exact assortment (vs enumeration) and base-stock levels; the policy contract:
specs, declared options, the shared seed, declared workloads and the teachers."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from coordopt import generate_instance, load_instance
from coordopt.checks import check_action
from coordopt.choice import best_revenue_slates, revenue_rate
from coordopt.commands.common import policy_work
from coordopt.guards import (
    LAGRANGIAN_STATE_SECONDS,
    PROGRAM_STATE_SECONDS,
    SizeError,
    check_size,
    estimate,
)
from coordopt.policies import (
    BEST_SILOED_ENTRY,
    FLUID_VARIANTS,
    POLICY_ENTRIES,
    NullPolicy,
    Policy,
    PolicyOptionError,
    PolicySpec,
    SiloedPolicy,
    base_stock_levels,
    make_policy,
    teachers,
)
from coordopt.simulator import SimParams, reset


@pytest.mark.parametrize("seed", range(6))
def test_assortment_equals_enumeration(seed):
    inst = generate_instance(seed=seed, n_products=7, n_segments=4, slate_size=3, uplift=2.0)
    slates, rev = best_revenue_slates(inst)
    for k in range(inst.n_segments):
        best = 0.0
        for size in range(inst.slate_size + 1):
            for s in itertools.combinations(range(inst.n_products), size):
                row = np.full((inst.n_segments, inst.slate_size), -1)
                row[k, :size] = s
                best = max(best, revenue_rate(inst, row)[k])
        assert rev[k] == pytest.approx(best, rel=1e-12)
        assert (slates[k] >= 0).sum() <= inst.slate_size


def _newsvendor_cost(level: int, mean: float, under: float, over: float) -> float:
    """``over E[(S - D)+] + under E[(D - S)+]`` for Poisson demand D, from its pmf by recursion."""
    pmf, short = math.exp(-mean), 0.0
    for k in range(level + 1):
        short += (level - k) * pmf  # E[(S - D)+]
        pmf *= mean / (k + 1)
    return over * short + under * (mean - level + short)


def test_base_stock_minimises_the_newsvendor_cost():
    """The order-up-to level is the cost-minimising stock for demand over L + 1 periods --
    the newsvendor's defining property, checked by enumeration, not by the fractile formula."""
    inst = load_instance("tiny")
    rate = np.array([1.2, 2.5])
    levels = base_stock_levels(inst, rate)
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    for i, mean in enumerate(rate * (inst.lead_time + 1)):
        costs = [
            _newsvendor_cost(s, float(mean), float(under[i]), float(inst.holding_cost[i]))
            for s in range(60)
        ]
        assert (levels[:, i] == int(np.argmin(costs))).all(), (i, levels[:, i], costs[:10])


def test_siloed_orders_up_to_base_stock_and_respects_max_order():
    params = SimParams.from_instance(load_instance("tiny"))
    pol = SiloedPolicy(params)
    assert isinstance(pol, Policy)
    state = reset(params, 3)
    pol.reset(3)
    act = pol.act(state)
    check_action(act, params)
    expected = torch.minimum(
        (pol.base_stock[0] - state.inventory_position()).clamp(min=0), params.max_order
    )
    assert torch.equal(act.orders, expected)
    assert (act.orders <= 6).all()


def test_make_policy_errors_are_actionable():
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(ValueError, match=r"unknown policy 'nope'.*siloed"):
        make_policy("nope", params)
    assert isinstance(make_policy("null", params), NullPolicy)


def test_seasonal_base_stock_covers_the_demand_of_the_periods_its_orders_serve():
    """Per period t: the fractile of Poisson demand summed over t..t+L (the last period's
    rate continuing past the horizon), so stock builds before a peak."""
    inst = load_instance("tiny")  # lead times [1, 0], T = 8
    rate = np.array([1.0, 1.0, 2.0, 6.0, 6.0, 2.0, 1.0, 3.0])[:, None] * np.array([1.0, 0.5])
    levels = base_stock_levels(inst, rate)
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    ratio = under / (under + inst.holding_cost)
    for t in range(inst.horizon):
        window_a = rate[t, 0] + rate[min(t + 1, inst.horizon - 1), 0]  # L = 1
        assert levels[t, 0] == stats.poisson.ppf(ratio[0], window_a)
        assert levels[t, 1] == stats.poisson.ppf(ratio[1], rate[t, 1])  # L = 0
    assert levels[2, 0] > levels[1, 0] and levels[2, 1] < levels[3, 1]  # ahead of the peak


# --------------------------------------------------------------------------- the policy contract


def test_a_spec_parses_into_name_options_and_label(tmp_path):
    spec = PolicySpec.parse("bidprice:reoptimize_every=0;safety_stock=false;x=a")
    assert spec.name == "bidprice"
    assert spec.options == {"reoptimize_every": 0, "safety_stock": False, "x": "a"}
    assert spec.label == "bidprice:reoptimize_every=0;safety_stock=false;x=a"
    assert PolicySpec.parse("siloed") == PolicySpec("siloed", {}, "")
    run = tmp_path / "a:b"  # a run directory is taken whole, colon and all
    run.mkdir()
    assert PolicySpec.parse(str(run)) == PolicySpec(str(run))


def test_make_policy_takes_a_spec_as_text_or_parsed_and_names_it_by_its_options():
    params = SimParams.from_instance(load_instance("tiny"))
    text = "siloed:season_end=false"
    for spec in (text, PolicySpec.parse(text)):
        policy = make_policy(spec, params)
        assert isinstance(policy, SiloedPolicy) and policy.name == text
        assert not (policy.base_stock == SiloedPolicy(params).base_stock).all()
    assert make_policy("siloed", params, season_end=False).name == text  # the policy's own
    assert make_policy("siloed:season_end=true", params).name == "siloed:season_end=true"
    # the spec's own options are over the caller's
    assert make_policy("siloed:season_end=true", params, season_end=False).name.endswith("true")


def test_every_policy_takes_the_same_seed_keyword():
    """No caller branches on names: ``seed`` is a keyword of every factory (deterministic
    policies ignore it) and every declared option is one the factory takes."""
    for name, entry in {**POLICY_ENTRIES, "siloed:inventory=dp": BEST_SILOED_ENTRY}.items():
        parameters = inspect.signature(entry.factory).parameters
        assert parameters["seed"].kind is inspect.Parameter.KEYWORD_ONLY, name
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        assert takes_any or set(entry.options) <= set(parameters), name
    params = SimParams.from_instance(load_instance("tiny"))
    state = reset(params, 2)
    for name in ("null", "siloed"):
        a, b = make_policy(name, params, seed=1), make_policy(name, params, seed=2)
        a.reset(2)
        b.reset(2)
        assert torch.equal(a.act(state).orders, b.act(state).orders), name


@pytest.mark.parametrize(
    ("spec", "options", "words"),
    [
        ("siloed:colour=1", {}, ["'siloed:colour=1'", "colour", "got 1", "season_end"]),
        ("mpc", {"threads": -1}, ["'mpc'", "threads", ">= 0", "got -1"]),
        ("mpc", {"variant": "x"}, ["'mpc'", "variant", "coordinated, siloed-slates", "'x'"]),
        ("fluid:time_limit=0", {}, ["time_limit", "> 0", "got 0"]),
        ("lagrangian", {"planned_rates": 1}, ["'lagrangian'", "true or false", "got 1"]),
        ("null", {"seed": -1}, ["'null'", "seed", ">= 0", "got -1"]),
        ("siloed:max_states=5", {}, ["inventory=base-stock", "max_states", "season_end"]),
        ("siloed", {"inventory": "lp"}, ["inventory must be one of base-stock, dp, got 'lp'"]),
    ],
)
def test_options_are_refused_from_the_declaration(spec, options, words):
    """An option the entry does not declare, or outside its rule, is refused before any work
    (the solvers are never called), naming the policy, the option, the value and the rule."""
    params = SimParams.from_instance(load_instance("tiny"))
    with pytest.raises(PolicyOptionError) as info:
        make_policy(spec, params, **options)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_unset_time_limits_are_allowed_and_rules_match_their_enums():
    from coordopt.models.fluid import FluidVariant

    assert set(FLUID_VARIANTS) == {v.value for v in FluidVariant}
    PolicySpec("mpc", {"time_limit": None, "threads": None}).checked({})
    with pytest.raises(PolicyOptionError, match="reoptimize_every must be a number, got None"):
        PolicySpec("bidprice", {"reoptimize_every": None}).checked({})


def test_the_size_guard_reads_each_entrys_declared_workload():
    assert policy_work("mpc:threads=1", 3, 10) == {"lp_solves": 30}
    assert policy_work("fluid", 3, 10) == {"lp_solves": 1}
    assert policy_work("bidprice", 3, 10) == {"catalog_solve": 1}
    assert policy_work("siloed", 3, 10) == policy_work("null", 3, 10) == {}
    # per-product programs: seconds per product and period, from the state cap (the options
    # or their defaults), the sweeps and each program's own rate
    assert policy_work("siloed:inventory=dp", 3, 10) == {
        "program_seconds": 1_000_000 * PROGRAM_STATE_SECONDS
    }
    assert policy_work("siloed:inventory=dp;max_states=64", 3, 10) == {
        "program_seconds": 64 * PROGRAM_STATE_SECONDS
    }
    assert policy_work("lagrangian", 3, 10) == {
        "program_seconds": 2048 * 31 * LAGRANGIAN_STATE_SECONDS
    }
    assert policy_work("lagrangian:iterations=2", 3, 10, {"max_states": 8}) == {
        "program_seconds": 8 * 3 * LAGRANGIAN_STATE_SECONDS
    }
    with pytest.raises(PolicyOptionError, match="max_states"):
        policy_work("lagrangian:max_states=0", 3, 10)
    # priced: on `large` the best siloed firm's defaults and the decomposition policy's options
    # of the scale study run; the decomposition policy's defaults there (measured: 42% of the
    # cap filled, about 40 minutes) and the best siloed firm's defaults at 10,000 products
    # are refused
    large = load_instance("large")
    sizes = (large.horizon, large.n_segments)
    for spec in ("lagrangian:iterations=10;max_states=256", "siloed:inventory=dp"):
        work = policy_work(spec, 8, large.horizon)
        check_size(estimate(*sizes, large.n_products, episodes=8, **work), force=False, way_out="")
    for spec, n in (("lagrangian", large.n_products), ("siloed:inventory=dp", 10_000)):
        work = policy_work(spec, 8, large.horizon)
        with pytest.raises(SizeError, match="per-product programs"):
            check_size(estimate(*sizes, n, episodes=8, **work), force=False, way_out="")


def test_the_teachers_are_derived_from_the_entries():
    import typing

    from coordopt.rl.config import TrainConfig

    assert teachers() == ["siloed", "mpc", "dp", "fluid", "bidprice", "static", "lagrangian"]
    rule = TrainConfig.__dataclass_fields__["warm_start"].metadata["check"]
    assert typing.get_type_hints(TrainConfig)["warm_start"] is str
    assert all(rule.problem(v) is None for v in ("auto", "none", *teachers()))
    assert rule.problem("null") is not None  # a policy that is not a teacher
