"""The policy protocol and the reference policies that need no solver.

Every policy in coordopt -- siloed, MPC, DP, the RL agents -- takes a batched
:class:`~coordopt.simulator.SimState` and returns an :class:`~coordopt.simulator.Action`.
Policies with memory clear it in :meth:`Policy.reset`. A policy's own randomness (slate
sampling, say) must come from its own generator, never the simulator's, so that common
random numbers keep the customers the same across policies.

Policies are made from a spec, ``NAME[:KEY=VALUE;...]`` or a trained run's directory
(:class:`PolicySpec`), by :func:`make_policy`. Each name is a declared entry
(:class:`PolicyEntry`, the table :data:`POLICY_ENTRIES`): its factory by module path,
imported on first use, so solver- and RL-backed policies (higher layers) cost nothing until
used and this module never imports them; its options with their rules, checked before the
factory is called; its workload, which the size guard prices; whether it can teach the
agents (:func:`teachers`). Every factory takes the keyword ``seed`` (a policy's own
generator; deterministic policies ignore it), so callers never branch on names.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from scipy import stats

from coordopt.choice import best_revenue_slates, expected_demand
from coordopt.economics import Flow, unit_values
from coordopt.guards import (
    LAGRANGIAN_STATE_SECONDS,
    PolicyWork,
    Range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    threads_int,
)
from coordopt.instance import Instance
from coordopt.periods import arrives_too_late
from coordopt.simulator import Action, SimParams, SimState


@runtime_checkable
class Policy(Protocol):
    """Batched decision rule: observation (the state) in, orders and slates out."""

    name: str

    def reset(self, batch_size: int) -> None:
        """Start ``batch_size`` new episodes (clear any memory)."""

    def act(self, state: SimState) -> Action:
        """Orders ``(B, N)`` and slates ``(B, M, K)`` for the current period."""
        ...


class StaticSlatePolicy:
    """Base for policies whose slates do not depend on the state."""

    name = "static"

    def __init__(self, params: SimParams, slates: np.ndarray) -> None:
        self.params = params
        k = max(params.slate_size, 1)
        padded = np.full((params.n_segments, k), -1, dtype=np.int64)
        padded[:, : slates.shape[1]] = slates[:, :k]
        self.slates = torch.tensor(padded, device=params.device)

    def reset(self, batch_size: int) -> None:
        self._batch_slates = self.slates.expand(batch_size, *self.slates.shape)

    def batch_slates(self, batch_size: int) -> torch.Tensor:
        if (
            getattr(self, "_batch_slates", None) is None
            or self._batch_slates.shape[0] != batch_size
        ):
            self.reset(batch_size)
        return self._batch_slates


@dataclass(frozen=True)
class OrNone:
    """An option's rule that also allows ``None``: the option left unset (no time limit)."""

    rule: Rule


Rule = type | Range | tuple[str, ...] | OrNone
"""The rule of a policy option: ``bool`` (true or false), ``str`` (any text), a
:class:`~coordopt.guards.Range`, a tuple of allowed words, or :class:`OrNone` of one."""


def option_problem(rule: Rule, value: Any) -> str | None:
    """Why ``value`` breaks ``rule``, naming what is allowed (None when it keeps it)."""
    if isinstance(rule, OrNone):
        return None if value is None else option_problem(rule.rule, value)
    if isinstance(rule, Range):
        return rule.problem(value)
    if isinstance(rule, tuple):
        return None if value in rule else f"must be one of {', '.join(rule)}, got {value!r}"
    if isinstance(value, rule):
        return None
    return ("must be true or false" if rule is bool else "must be text") + f", got {value!r}"


def check_options(policy: str, rules: Mapping[str, Rule], values: Mapping[str, Any]) -> None:
    """Refuse (:class:`PolicyOptionError`) an option of ``policy`` that is not in ``rules`` or
    breaks its rule (``--option NAME=VALUE``, ``NAME:KEY=VALUE``)."""
    for name, value in values.items():
        if name not in rules:
            raise PolicyOptionError(
                policy,
                name,
                f"is not one it takes, got {value!r} (its options: {', '.join(sorted(rules))})",
            )
        problem = option_problem(rules[name], value)
        if problem:
            raise PolicyOptionError(policy, name, problem)


class PolicyOptionError(ValueError):
    """A policy option that its entry does not declare or whose rule it breaks: bad input."""

    def __init__(self, policy: str, option: str, problem: str) -> None:
        super().__init__(f"policy '{policy}': option {option} {problem}")
        self.option = option


def critical_fractile(inst: Instance, *, last_order: bool = False) -> np.ndarray:
    """Newsvendor ratio ``(p - c + b) / (p - c + b + h)`` per product (0 where underage <= 0),
    with the money per unit of each flow (:func:`coordopt.economics.unit_values`): ``p`` a
    sale, ``-c`` a unit ordered, ``-b`` a lost unit, ``-h`` a unit held, ``v`` one left over.

    ``last_order``: the ratio of the last order that arrives before the horizon ends, whose
    unsold units are salvaged instead of carried to a later order: overage ``c - v + h``.
    """
    money = unit_values(inst)
    under = money[Flow.SOLD] + money[Flow.ORDERED] - money[Flow.LOST]
    over = -money[Flow.HELD] + (-money[Flow.ORDERED] - money[Flow.LEFT_OVER] if last_order else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(under > 0, under / (under + over), 0.0)
    return np.clip(np.nan_to_num(ratio, nan=1.0), 0.0, 1.0 - 1e-9)


def lead_time_demand(inst: Instance, demand_rate: np.ndarray) -> np.ndarray:
    """Mean demand over the ``L_i + 1`` periods from each period t, ``(T, N)``.

    ``demand_rate`` is ``(T, N)`` per period (or ``(N,)``, the same in every period); past
    the horizon the last period's rate continues, as a firm without an end date would
    plan. With constant demand this is ``rate * (L + 1)`` in every period.
    """
    rate = np.broadcast_to(demand_rate, (inst.horizon, inst.n_products))
    lead = inst.lead_time
    if (rate == rate[0]).all():
        return np.broadcast_to(rate[0] * (lead + 1), rate.shape)
    tail = np.repeat(rate[-1:], inst.max_lead_time, axis=0)
    padded = np.concatenate([rate, tail])
    t_n = inst.horizon
    return sum(
        (np.where(j <= lead, padded[j : j + t_n], 0.0) for j in range(inst.max_lead_time + 1)),
        np.zeros(rate.shape),
    )


def base_stock_levels(inst: Instance, demand_rate: np.ndarray) -> np.ndarray:
    """Order-up-to level per period and product, ``(T, N)``: the critical fractile of
    Poisson demand over the ``L + 1`` periods from t (:func:`lead_time_demand`)."""
    levels = stats.poisson.ppf(critical_fractile(inst), lead_time_demand(inst, demand_rate))
    return np.nan_to_num(levels, nan=0.0).astype(np.float64)


class SiloedPolicy(StaticSlatePolicy):
    """docs/model.md's siloed firm.

    Marketing shows each segment its revenue-maximising slate (exact MNL assortment,
    ignoring stock); operations orders up to the base-stock level of the demand that this
    slate induces (critical fractile on lead-time demand; with seasonal arrivals, each
    period's level from the demand of the periods its orders cover), ignoring that
    recommendations could move demand. The firm knows its horizon: it places no order that
    would arrive after the last period (what it lacks is coordination between its
    departments, not a calendar). ``season_end=False`` keeps ordering in the last ``L``
    periods as a firm without an end date would: the weaker baseline of earlier figures,
    named ``siloed:season_end=false`` wherever it appears. Deterministic: ``seed`` is ignored.
    """

    name = "siloed"

    def __init__(self, params: SimParams, *, season_end: bool = True, seed: int = 0) -> None:
        del seed  # decisions are deterministic given the state
        if not season_end:
            self.name = "siloed:season_end=false"
        inst = params.instance
        slates, self.revenue_per_customer = best_revenue_slates(inst)
        super().__init__(params, slates)
        self.demand_rate = expected_demand(inst, slates)  # (T, N)
        levels = base_stock_levels(inst, self.demand_rate)
        if season_end:  # no order that would arrive after the last period
            levels = np.where(arrives_too_late(inst.lead_time, inst.horizon), 0.0, levels)
        self.base_stock = torch.tensor(levels, dtype=params.dtype, device=params.device)

    def act(self, state: SimState) -> Action:
        gap = (self.base_stock[state.t] - state.inventory_position()).clamp(min=0)
        orders = torch.minimum(gap, self.params.max_order)
        return Action(orders=orders, slates=self.batch_slates(state.batch_size))


SILOED_INVENTORY = ("base-stock", "dp")
"""Values of the siloed firm's option ``inventory``: ``base-stock`` (the newsvendor rule of
:class:`SiloedPolicy`, the default) or ``dp`` (docs/model.md's best siloed firm: each
product's exact dynamic program for the demand of the same slates, :data:`BEST_SILOED_ENTRY`)."""


def siloed_policy(
    params: SimParams, *, inventory: str = "base-stock", seed: int = 0, **options: Any
) -> Policy:
    """The factory behind ``siloed``: :class:`SiloedPolicy` (``inventory="base-stock"``) or
    the best siloed firm (``inventory="dp"``, named ``siloed:inventory=dp``), a solver-backed
    policy reached through :data:`BEST_SILOED_ENTRY` on first use; ``options`` are checked
    against the declaration of the one chosen."""
    if inventory == "dp":
        BEST_SILOED_ENTRY.check("siloed:inventory=dp", options)
        return BEST_SILOED_ENTRY.factory(params, seed=seed, **options)
    check_options("siloed:inventory=base-stock", {"season_end": bool}, options)
    return SiloedPolicy(params, seed=seed, **options)


class NullPolicy(StaticSlatePolicy):
    """Orders nothing and recommends nothing: the floor every policy must beat (``seed`` is
    ignored)."""

    name = "null"

    def __init__(self, params: SimParams, *, seed: int = 0) -> None:
        del seed  # nothing is drawn
        super().__init__(params, np.full((params.n_segments, 1), -1, dtype=np.int64))

    def act(self, state: SimState) -> Action:
        return Action(
            orders=torch.zeros_like(state.on_hand), slates=self.batch_slates(state.batch_size)
        )


@dataclass(frozen=True)
class PolicyEntry:
    """A policy's declaration: how it is made, the options it takes, what it costs to
    simulate and whether the agents may learn from it."""

    target: str
    """``"module:factory"``, imported on first use: ``factory(params, *, seed, **options)``
    (a run directory's loader: ``factory(path, params, *, seed, **options)``)."""
    options: Mapping[str, Rule] = field(default_factory=dict)
    """Its options besides ``seed`` and their rules; any other option, or a value that breaks
    its rule, is refused before the factory is called."""
    work: PolicyWork | Callable[[Mapping[str, Any]], PolicyWork] = field(default_factory=PolicyWork)
    """What simulating it costs (the size guard prices it), or that as a function of its
    options, their defaults filled in."""
    teacher: bool = False
    """The agents may be warm-started from it (``train --warm-start NAME[:KEY=VALUE;...]``)."""
    marker: str = ""
    """A run directory's loader: the file whose presence makes a directory this entry's run
    (the one declaration of that name, which :mod:`coordopt.rl.rundir` reads too)."""

    @property
    def factory(self) -> Callable[..., Policy]:
        """The factory of :attr:`target` (its module imported now)."""
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)

    def check(self, label: str, options: Mapping[str, Any]) -> None:
        """Refuse (:class:`PolicyOptionError`, naming ``label``) an option this entry does
        not declare, or a value outside its rule."""
        check_options(label, {"seed": seed_int, **self.options}, options)

    def workload(self, options: Mapping[str, Any]) -> PolicyWork:
        """What simulating the policy with ``options`` (checked) costs."""
        if isinstance(self.work, PolicyWork):
            return self.work
        given = inspect.signature(self.factory).parameters.values()
        defaults = {p.name: p.default for p in given if p.default is not p.empty}
        return self.work({**defaults, **options})


FLUID_VARIANTS = ("coordinated", "siloed-slates", "unlimited-stock")
"""The fluid programs a fluid policy may plan with (:class:`~coordopt.models.fluid.FluidVariant`)."""


def _best_siloed_work(options: Mapping[str, Any]) -> PolicyWork:
    """The per-product programs of the best siloed firm (or the static-margin firm), solved
    once."""
    return PolicyWork(program_states=int(options["max_states"]))


def _siloed_work(options: Mapping[str, Any]) -> PolicyWork:
    """The siloed firm: nothing beyond simulating it, or the best siloed firm's programs."""
    if options["inventory"] == "dp":
        return BEST_SILOED_ENTRY.workload(options)
    return PolicyWork()


def _lagrangian_work(options: Mapping[str, Any]) -> PolicyWork:
    """The decomposition policy's per-product programs: swept at every iteration of the
    bound, and once more for the decisions."""
    return PolicyWork(
        program_states=int(options["max_states"]),
        program_sweeps=int(options["iterations"]) + 1,
        state_seconds=LAGRANGIAN_STATE_SECONDS,
    )


POLICY_ENTRIES: dict[str, PolicyEntry] = {
    "siloed": PolicyEntry(
        "coordopt.policies:siloed_policy",
        {"inventory": SILOED_INVENTORY, "season_end": bool, "max_states": positive_int},
        _siloed_work,
        teacher=True,
    ),
    "null": PolicyEntry("coordopt.policies:NullPolicy"),
    "mpc": PolicyEntry(
        "coordopt.solvers.mpc:MPCPolicy",
        {
            "variant": FLUID_VARIANTS,
            "time_limit": OrNone(positive_float),
            "threads": OrNone(threads_int),
        },
        PolicyWork(lp_solves_per_decision=1),
        teacher=True,
    ),
    "dp": PolicyEntry(
        "coordopt.solvers.dp:DPPolicy",
        {
            "inventory_cap": OrNone(nonneg_int),
            "order_cap": OrNone(nonneg_int),
            "tail_tol": positive_float,
            "max_states": positive_int,
        },
        teacher=True,
    ),
    "fluid": PolicyEntry(
        "coordopt.solvers.fluid_policy:FluidPlanPolicy",
        {
            "variant": FLUID_VARIANTS,
            "method": ("auto", "bulk", "pyomo"),
            "time_limit": OrNone(positive_float),
            "mip_gap": OrNone(nonneg_float),
            "integer_orders": bool,
            "integer_quantities": bool,
            "threads": OrNone(threads_int),
        },
        PolicyWork(setup_lp_solves=1),
        teacher=True,
    ),
    "bidprice": PolicyEntry(
        "coordopt.solvers.bidprice:BidPricePolicy",
        {
            "reoptimize_every": nonneg_int,
            "warm_start": bool,
            "gap": nonneg_float,
            "time_limit": OrNone(positive_float),
            "iterations": positive_int,
            "reopt_time_limit": OrNone(positive_float),
            "safety_stock": bool,
            "end_fractile": bool,
        },
        PolicyWork(catalog_solve=True),
        teacher=True,
    ),
    "static": PolicyEntry(
        "coordopt.solvers.lagrangian:StaticMarginPolicy",
        {"cost_weight": nonneg_float, "max_states": positive_int},
        _best_siloed_work,
        teacher=True,
    ),
    "lagrangian": PolicyEntry(
        "coordopt.solvers.lagrangian:LagrangianPolicy",
        {
            "iterations": positive_int,
            "grid": positive_int,
            "max_states": positive_int,
            "planned_rates": bool,
        },
        _lagrangian_work,
        teacher=True,
    ),
}
"""Policy name -> :class:`PolicyEntry`: the declared entry table through which this core
module reaches policies of higher layers (solvers, RL) without importing them. Extend it with
:func:`register_policy`; the README's layer rule names this table."""

BEST_SILOED_ENTRY = PolicyEntry(
    "coordopt.solvers.lagrangian:BestSiloedPolicy",
    {"season_end": bool, "max_states": positive_int},
    _best_siloed_work,
)
"""The best siloed firm (``siloed:inventory=dp``), made by :func:`siloed_policy`: its
per-product programs are a solver's."""

RUN_OPTIONS: dict[str, Rule] = {"deterministic": bool, "checkpoint": OrNone(str)}
"""The options of a trained run's policy: greedy or sampled actions, which checkpoint."""

AGENT_ENTRY = PolicyEntry("coordopt.rl.policy:load_policy", RUN_OPTIONS)
"""Trained agents (``coordopt train --out DIR``): ``loader(run_dir, params, **options)``."""

PEER_ENTRY = PolicyEntry("coordopt.rl.peers:load_peer_policy", RUN_OPTIONS, marker="peer.json")
"""A TorchRL peer's run (``coordopt train --algorithm mappo|ippo``; its directory holds its
marker, ``peer.json``), loaded like :data:`AGENT_ENTRY`."""


def policy_names() -> list[str]:
    """Names accepted by :func:`make_policy` (a trained-agent directory is accepted too)."""
    return sorted(POLICY_ENTRIES)


def teachers() -> list[str]:
    """The policies the agents may be warm-started from (``train --warm-start
    NAME[:KEY=VALUE;...]``), in the order of :data:`POLICY_ENTRIES`."""
    return [name for name, entry in POLICY_ENTRIES.items() if entry.teacher]


def register_policy(name: str, entry: PolicyEntry) -> None:
    """Register ``name`` -> ``entry`` (its factory called as ``factory(params, **options)``)."""
    POLICY_ENTRIES[name] = entry


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as JSON where possible."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            out[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = raw
    return out


@dataclass(frozen=True)
class PolicySpec:
    """A policy as a command line names it: ``NAME[:KEY=VALUE;...]`` (a registered name with
    options of its own, e.g. ``siloed:season_end=false``) or a trained run's directory."""

    name: str
    """A registered name (:data:`POLICY_ENTRIES`) or a run directory."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Its own options (over those a caller gives every policy)."""
    label: str = ""
    """The name its results carry: its text where it has options of its own (two option sets
    of one policy stay apart), else the policy's own name (empty)."""

    @classmethod
    def parse(cls, text: str, *, runs: bool = True) -> PolicySpec:
        """The spec of ``text``; a run directory is taken whole (its path may hold a colon).
        ``runs=False``: no run directory is looked for (the text is ``NAME[:KEY=VALUE;...]``
        whatever folders exist, as for a teacher, ``train --warm-start``)."""
        if text in POLICY_ENTRIES or (runs and Path(text).is_dir()):
            return cls(text)
        name, _, opts = text.partition(":")
        options = parse_options(opts.split(";") if opts else [])
        return cls(name, options, text if options else "")

    @property
    def entry(self) -> PolicyEntry:
        """The declared entry of this policy; an unknown name is refused (``ValueError``)."""
        if self.name in POLICY_ENTRIES:
            return POLICY_ENTRIES[self.name]
        if (Path(self.name) / PEER_ENTRY.marker).is_file():
            return PEER_ENTRY
        if Path(self.name).is_dir():
            return AGENT_ENTRY
        raise ValueError(
            f"unknown policy '{self.name}': expected one of {', '.join(policy_names())} "
            "or the directory of a trained agent (coordopt train --out DIR)"
        )

    def checked(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Its own options over ``options``, checked against its entry's declaration."""
        merged = {**options, **self.options}
        self.entry.check(self.label or self.name, merged)
        return merged

    def arguments(self, params: SimParams) -> tuple[Any, ...]:
        """The positional arguments of its factory: a run directory's loader takes the path."""
        return (params,) if self.name in POLICY_ENTRIES else (Path(self.name), params)

    def workload(self, options: Mapping[str, Any]) -> PolicyWork:
        """What simulating it costs, with ``options`` beneath its own (a run directory: nothing
        known here; the commands read its saved configuration)."""
        return self.entry.workload(self.checked(options))


def make_policy(spec: str | PolicySpec, params: SimParams, **options: Any) -> Policy:
    """The policy of ``spec`` (text is parsed, :meth:`PolicySpec.parse`), its own options over
    ``options``, all checked against its entry's declaration first (an option it does not
    take, or a value outside its rule, is a :class:`PolicyOptionError`). A spec with options
    of its own names the policy by its text."""
    spec = PolicySpec.parse(spec) if isinstance(spec, str) else spec
    policy = spec.entry.factory(*spec.arguments(params), **spec.checked(options))
    if spec.label:
        policy.name = spec.label
    return policy
