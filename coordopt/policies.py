"""The policy protocol and the reference policies that need no solver.

Every policy in coordopt -- siloed, MPC, DP, the RL agents -- takes a batched
:class:`~coordopt.simulator.SimState` and returns an :class:`~coordopt.simulator.Action`.
Policies with memory clear it in :meth:`Policy.reset`. A policy's own randomness (slate
sampling, say) must come from its own generator, never the simulator's, so that common
random numbers keep the customers the same across policies.

Policies are made by name with :func:`make_policy`; the declared entry table
:data:`POLICY_ENTRY_POINTS` maps names to factories ``factory(params, **options) -> Policy``
by module path, imported on first use, so solver- and RL-backed policies (higher layers)
cost nothing until used and this module never imports them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from scipy import stats

from coordopt.choice import best_revenue_slates, expected_demand
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


def check_options(policy: str, rules: dict[str, Any], values: dict[str, Any]) -> None:
    """Reject a policy option (``--option NAME=VALUE``) outside its rule: ``bool`` (true or
    false) or a :class:`~coordopt.guards.Range` (``None`` allowed where the option takes it)."""
    for name, rule in rules.items():
        value = values[name]
        if rule is bool:
            problem = None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        else:
            problem = None if value is None else rule.problem(value)
        if problem:
            raise ValueError(f"policy '{policy}': option {name} {problem}")


def critical_fractile(inst: Instance, *, last_order: bool = False) -> np.ndarray:
    """Newsvendor ratio ``(p - c + b) / (p - c + b + h)`` per product (0 where underage <= 0).

    ``last_order``: the ratio of the last order that arrives before the horizon ends, whose
    unsold units are salvaged instead of carried to a later order: overage ``c - v + h``.
    """
    under = inst.price - inst.unit_cost + inst.lost_sale_penalty
    over = inst.holding_cost + (inst.unit_cost - inst.salvage_value if last_order else 0.0)
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
    named ``siloed:season_end=false`` wherever it appears.
    """

    name = "siloed"

    def __init__(self, params: SimParams, *, season_end: bool = True) -> None:
        check_options(self.name, {"season_end": bool}, {"season_end": season_end})
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
product's exact dynamic program for the demand of the same slates, :data:`BEST_SILOED_ENTRY_POINT`)."""


def siloed_policy(params: SimParams, *, inventory: str = "base-stock", **options: Any) -> Policy:
    """The factory behind ``siloed``: :class:`SiloedPolicy` (``inventory="base-stock"``) or
    the best siloed firm (``inventory="dp"``, named ``siloed:inventory=dp``), a solver-backed
    policy reached through :data:`BEST_SILOED_ENTRY_POINT` on first use."""
    if inventory not in SILOED_INVENTORY:
        raise ValueError(
            f"policy 'siloed': option inventory must be one of "
            f"{', '.join(SILOED_INVENTORY)}, got {inventory!r}"
        )
    if inventory == "dp":
        return _resolve(BEST_SILOED_ENTRY_POINT)(params, **options)
    return SiloedPolicy(params, **options)


class NullPolicy(StaticSlatePolicy):
    """Orders nothing and recommends nothing: the floor every policy must beat."""

    name = "null"

    def __init__(self, params: SimParams) -> None:
        super().__init__(params, np.full((params.n_segments, 1), -1, dtype=np.int64))

    def act(self, state: SimState) -> Action:
        return Action(
            orders=torch.zeros_like(state.on_hand), slates=self.batch_slates(state.batch_size)
        )


POLICY_ENTRY_POINTS: dict[str, str] = {
    "siloed": "coordopt.policies:siloed_policy",
    "null": "coordopt.policies:NullPolicy",
    "mpc": "coordopt.solvers.mpc:MPCPolicy",
    "dp": "coordopt.solvers.dp:DPPolicy",
    "fluid": "coordopt.solvers.fluid_policy:FluidPlanPolicy",
    "bidprice": "coordopt.solvers.bidprice:BidPricePolicy",
    "lagrangian": "coordopt.solvers.lagrangian:LagrangianPolicy",
}
"""Policy name -> ``"module:factory"``, ``factory(params, **options) -> Policy``.

The declared entry table through which this core module reaches policies of higher layers
(solvers, RL) without importing them: a factory's module is imported on first use only.
Extend it with :func:`register_policy`; the README's layer rule names this table."""

AGENT_ENTRY_POINT = "coordopt.rl.agents:load_policy"
"""``"module:loader"`` of trained agents, ``loader(run_dir, params, **options) -> Policy``."""

PEER_ENTRY_POINT = "coordopt.rl.peers:load_peer_policy"
"""``"module:loader"`` of a TorchRL peer's run (``coordopt train --algorithm mappo|ippo``; its
directory holds ``peer.json``), called like :data:`AGENT_ENTRY_POINT`."""


BEST_SILOED_ENTRY_POINT = "coordopt.solvers.lagrangian:BestSiloedPolicy"
"""``"module:factory"`` of the best siloed firm (``siloed:inventory=dp``), called like the
factories of :data:`POLICY_ENTRY_POINTS`: its per-product programs are a solver's."""


def _resolve(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def policy_names() -> list[str]:
    """Names accepted by :func:`make_policy` (a trained-agent directory is accepted too)."""
    return sorted(POLICY_ENTRY_POINTS)


def register_policy(name: str, target: str) -> None:
    """Register ``name`` -> ``"module:factory"`` (factory called as ``factory(params, **options)``)."""
    POLICY_ENTRY_POINTS[name] = target


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


def policy_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME[:KEY=VALUE;...]"`` -> ``(NAME, options)``, e.g. ``"siloed:season_end=true"``."""
    name, _, opts = text.partition(":")
    return name, parse_options(opts.split(";") if opts else [])


def make_policy(spec: str, params: SimParams, **options: Any) -> Policy:
    """A policy by registered name, or a trained RL agent from its run directory."""
    if spec in POLICY_ENTRY_POINTS:
        return _resolve(POLICY_ENTRY_POINTS[spec])(params, **options)
    if (Path(spec) / "peer.json").is_file():
        return _resolve(PEER_ENTRY_POINT)(Path(spec), params, **options)
    if Path(spec).is_dir():
        return _resolve(AGENT_ENTRY_POINT)(Path(spec), params, **options)
    raise ValueError(
        f"unknown policy '{spec}': expected one of {', '.join(policy_names())} "
        "or the directory of a trained agent (coordopt train --out DIR)"
    )
