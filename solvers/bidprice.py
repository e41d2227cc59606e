"""Bid-price control (docs/model.md, "Reference policies"): the stock values of the catalog solver
drive every decision, so it stays affordable at 10,000 products.

Every period, for every environment and segment at once (one tensor pass of
:func:`~coordopt.choice.best_slates` over ``B x M x N``), the slate is the
best-revenue slate at margins ``g_t p_i - mu_ti``: the price less the stock value. A product
that the environment has no stock of is valued at its lost sale, ``-g_t b_i`` (lost mode: its
demand only costs the penalty; hidden mode: it cannot be chosen anyway).

Orders go up to a target inventory position for the period, corrected for the actual
position: the larger of the plan's own position (on hand at the end of the previous period
plus everything due to arrive, its orders included) and, optionally, the newsvendor level of
the plan's demand over the lead time (its Poisson quantile at the critical fractile; for the
last order that arrives before the end, whose leftovers are salvaged rather than carried, at
the fractile with overage ``c - v + h``). The larger, not the sum: a plan re-optimised from a
state that holds safety stock already carries it in its position. No order is placed that
would arrive after the last period. Every ``reoptimize_every`` periods the stock values and
the plan are re-optimised from the current state (the batch mean: one solve serves every
environment), warm-started from the last stock values, for ``iterations`` iterations with the
fast (greedy-flow) plan recovery (``benchmarks/bench_catalog.py bidprice`` times the decisions).
Iteration counts, not the clock, end every solve, so a seed fixes every decision; a time
limit, where one is given, only stops a solve early, and the policy records each one it
stopped (:attr:`BidPricePolicy.time_limited`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from coordopt.choice import best_slates
from coordopt.models.fluid import FluidStart, fluid_data
from coordopt.periods import arrives_too_late
from coordopt.policies import critical_fractile
from coordopt.simulator import Action, SimParams, SimState
from coordopt.solvers.catalog import CatalogSolution, catalog_data, solve_catalog

#: a re-optimisation recovers its plan twice (first iteration and after the last) by greedy flows
_FAST_PLAN = {"exact_flows": False, "final_exact": False, "plan_every": 0}


def order_up_to(
    target: torch.Tensor, position: torch.Tensor, max_order: torch.Tensor
) -> torch.Tensor:
    """Whole units that raise the inventory ``position`` to ``target`` (none above it), capped."""
    return torch.minimum((target - position).clamp(min=0.0), max_order).round()


def stock_margins(
    params: SimParams,
    state: SimState,
    orders: torch.Tensor,
    margin: torch.Tensor,
    lost: torch.Tensor,
) -> torch.Tensor:
    """The slates' margins: ``margin`` where a product can be sold this period (on hand, due
    now, or ordered now with lead time 0), else ``lost`` (the lost sale's)."""
    available = state.on_hand + state.pipeline[..., 0] + orders * params.zero_lead
    return torch.where(available > 0, margin, lost)


@dataclass(frozen=True, eq=False)
class BidPricePlan:
    """What bid-price control decides from, per period ``u`` counted from its solve's start
    period ``t0`` (``(H, N)`` each, ``H`` the periods left): the target inventory positions,
    the stock-adjusted margins ``g_t p_i - mu_ti`` of the slates where a product can be sold,
    and ``lost``, ``-g_t b_i``, where it cannot; ``wr, wn (M, N)``, ``w0 (M,)`` the
    attractions the slates are scored with (float64). The agents' plan features read it."""

    t0: int
    target: torch.Tensor
    margin: torch.Tensor
    lost: torch.Tensor
    wr: torch.Tensor
    wn: torch.Tensor
    w0: torch.Tensor


class BidPricePolicy:
    """Best-revenue slates at stock-adjusted margins; order-up-to the plan or the newsvendor.

    Options: ``reoptimize_every`` periods between re-optimisations (0: never, the plan of
    the first solve is followed open loop), ``warm_start`` (re-optimise from the last stock
    values, else from scratch), ``gap`` of the first solve, ``iterations`` of each
    re-optimisation, ``time_limit`` and ``reopt_time_limit`` (seconds; default none) an early
    stop of the first solve and of each re-optimisation, ``safety_stock`` (order up to at least
    the newsvendor level), ``end_fractile`` (the last order's newsvendor level prices leftovers
    at cost less salvage). ``decision_seconds`` and ``solve_seconds`` record the time of every
    decision and solve; ``time_limited`` the period of every solve that a time limit stopped
    (the decisions then depend on the machine's speed: :meth:`report` says so). ``plan``: the
    :class:`BidPricePlan` of the last solve installed.
    """

    name = "bidprice"

    def __init__(
        self,
        params: SimParams,
        *,
        reoptimize_every: int = 4,
        warm_start: bool = True,
        gap: float = 0.005,
        time_limit: float | None = None,
        iterations: int = 10,
        reopt_time_limit: float | None = None,
        safety_stock: bool = True,
        end_fractile: bool = True,
        seed: int = 0,
    ) -> None:
        del seed  # decisions are deterministic given the state
        self.params = params
        self.inst = params.instance
        self.reoptimize_every = int(reoptimize_every)
        self.warm_start = warm_start
        self.iterations = iterations
        self.reopt_time_limit = reopt_time_limit
        self.safety_stock = safety_stock
        self.end_fractile = end_fractile
        self.decision_seconds: list[float] = []
        self.solve_seconds: list[float] = []
        self.time_limited: list[int] = []
        inst = self.inst
        dev = params.device
        self.rate = torch.tensor(
            np.broadcast_to(inst.arrival_rate, (inst.horizon, inst.n_segments)).copy(),
            dtype=torch.float64,
            device=dev,
        )
        self.catalog = catalog_data(inst, device=dev)
        g = torch.tensor(inst.discount ** np.arange(inst.horizon), device=dev)[:, None]
        self.sale_value = g * self.catalog.price[None]  # (T, N) a sale's discounted price
        self.lost_value = -g * self.catalog.penalty[None]  # (T, N) a lost sale's discounted value
        self.fractile = critical_fractile(inst)
        self.last_fractile = critical_fractile(inst, last_order=True)
        self.initial = self._solve(None, gap=gap, time_limit=time_limit)
        self._install(self.initial, None)

    # ------------------------------------------------------------------ planning

    def _solve(self, start: FluidStart | None, **options: float | int | None) -> CatalogSolution:
        began = time.perf_counter()
        mu0 = self.solution.mu if self.warm_start and hasattr(self, "solution") else None
        sol = solve_catalog(self.inst, start=start, mu0=mu0, **options)
        self.solve_seconds.append(time.perf_counter() - began)
        if sol.stop == "time_limit":
            self.time_limited.append(sol.t0)
        return sol

    def report(self) -> dict[str, int]:
        """What ``coordopt evaluate --json`` reports of the policy's solves: how many, and how
        many a time limit stopped (0 unless ``time_limit`` or ``reopt_time_limit`` is set)."""
        return {"solves": len(self.solve_seconds), "time_limited_solves": len(self.time_limited)}

    def _install(self, sol: CatalogSolution, start: FluidStart | None) -> None:
        """The :class:`BidPricePlan` of a solution from ``start``: its stock values' margins
        and its target positions."""
        self.solution = sol
        dev = self.params.device
        d = fluid_data(self.inst, start=start)
        plan = sol.plan
        h, n = plan.orders.shape
        lead = self.inst.lead_time
        prev_end = np.vstack([d.on_hand[None], plan.inventory[:-1]])
        due_fixed = np.cumsum(d.arrivals[::-1], axis=0)[::-1]  # fixed arrivals from u on
        csum = np.vstack([np.zeros((1, n)), np.cumsum(plan.orders, axis=0)])
        u = np.arange(h)[:, None]
        first = np.clip(u - lead[None], 0, None)
        outstanding = csum[u + 1, np.arange(n)] - csum[first, np.arange(n)]
        target = prev_end + due_fixed + outstanding
        late = arrives_too_late(lead, self.inst.horizon, d.t0)
        if self.safety_stock:
            last = ~late & arrives_too_late(lead + 1, self.inst.horizon, d.t0)  # the last order
            fractile = np.where(
                last & self.end_fractile, self.last_fractile[None], self.fractile[None]
            )
            demand = plan.sales + plan.lost
            csd = np.vstack([np.zeros((1, n)), np.cumsum(demand, axis=0)])
            window_end = np.clip(u + lead[None] + 1, 0, h)
            lead_demand = csd[window_end, np.arange(n)] - csd[u, np.arange(n)]
            newsvendor = np.nan_to_num(stats.poisson.ppf(fractile, lead_demand), nan=0.0)
            target = np.maximum(target, newsvendor)
        target = np.where(late, 0.0, target)
        cd = self.catalog
        self.plan = BidPricePlan(
            t0=sol.t0,
            target=torch.tensor(target, dtype=self.params.dtype, device=dev),
            margin=self.sale_value[sol.t0 :] - torch.tensor(sol.mu, device=dev),
            lost=self.lost_value[sol.t0 :],
            wr=cd.wr,
            wn=cd.wn,
            w0=cd.w0,
        )

    def reset(self, batch_size: int) -> None:
        """Start over from the solution for the initial state."""
        if self.solution is not self.initial:
            self._install(self.initial, None)

    # ------------------------------------------------------------------ decisions

    def act(self, state: SimState) -> Action:
        began = time.perf_counter()
        t, t0 = state.t, self.plan.t0
        if self.reoptimize_every > 0 and t > t0 and (t - t0) % self.reoptimize_every == 0:
            start = FluidStart(
                t,
                state.on_hand.double().mean(0).cpu().numpy(),
                state.pipeline.double().mean(0).cpu().numpy(),
            )
            options = {"max_iterations": self.iterations, "time_limit": self.reopt_time_limit}
            self._install(self._solve(start, gap=1e-4, **options, **_FAST_PLAN), start)
        plan, p = self.plan, self.params
        u = t - plan.t0
        orders = order_up_to(plan.target[u], state.inventory_position(), p.max_order)
        margin = stock_margins(p, state, orders, plan.margin[u], plan.lost[u])
        rate = self.rate[t].expand(state.batch_size, -1)
        choice = best_slates(margin, rate, plan.wr, plan.wn, plan.w0, p.slate_size, p.hidden)
        self.decision_seconds.append(time.perf_counter() - began)
        return Action(orders=orders.to(p.dtype), slates=choice.slates)
