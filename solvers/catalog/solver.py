"""The catalog solver's entry point, :func:`solve_catalog`: the dual minimised by projected
subgradient steps, with plans recovered on an iteration schedule.

**Minimising the bound.** The dual ``D(mu, rho)`` is convex and piecewise linear; its
subgradient in ``mu`` is ``s* - sum_k x*`` (the inventory program's sales minus the choice
programs' demand; ties are broken toward the demand, which gives short subgradients) and in
``rho`` ``C - sum_i A*``. :func:`solve_catalog` runs projected subgradient steps with
Polyak's step size toward the best plan value, a per-product diagonal scaling (stock values
move in price units), restarts from the best point when the bound stalls, and recovers a
primal plan from the weighted average of the iterates' slates (a convex combination of
feasible choice points is feasible), completed by the inventory program for the demand
it induces -- one bulk HiGHS call over all products (:func:`~.plan.plan_flows`), which
reuses the fluid program's compiled arrays (above :data:`~.plan.EXACT_FLOW_CELLS`
period-product cells the iterations use the vectorised :func:`~.plan.greedy_flows` and only
the last plan the LP). Everything above the plan step is torch tensor algebra, so it runs
on CPU threads or a GPU (``device``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from coordopt.instance import Instance
from coordopt.models.fluid import FluidStart
from coordopt.solution import GAP_TOLERANCE, Plan, Solution, SolveStatus, slates_from_frequency
from coordopt.solvers.catalog.data import INF, CatalogData, catalog_data
from coordopt.solvers.catalog.dual import dual_value, stock_value_box
from coordopt.solvers.catalog.inventory import inventory_values
from coordopt.solvers.catalog.plan import (
    EXACT_FLOW_CELLS,
    FluidPoint,
    SlateAverage,
    plan_residuals,
    point_demand,
    recover_plan,
)

PLAN_EVERY = 10
"""Dual iterations between plan recoveries in :func:`solve_catalog` (and one at iteration 0)."""


@dataclass(frozen=True, eq=False)
class CatalogSolution:
    """Result of :func:`solve_catalog`.

    ``bound``: the smallest Lagrangian value seen (a valid upper bound on the fluid optimum);
    ``plan``: the best exactly feasible point found, ``plan_value`` its profit (a lower
    bound); ``gap = (bound - plan_value) / |bound|``; ``stop`` why the loop ended
    (``gap``, ``time_limit``, ``iterations``, ``stalled``); ``mu (H,N)``, ``rho (H,)`` the
    stock values and capacity prices at the best bound (the bid prices); ``history`` per
    iteration ``(seconds, bound, best plan value)``.
    """

    bound: float
    plan_value: float
    plan: FluidPoint
    demand: np.ndarray
    mu: np.ndarray
    rho: np.ndarray
    unit_values: np.ndarray
    rates: np.ndarray
    iterations: int
    seconds: float
    stop: str
    residual: float
    slate_size: int
    t0: int = 0
    history: list[tuple[float, float, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return (self.bound - self.plan_value) / max(abs(self.bound), 1e-12)

    def result(self) -> Solution:
        """The shared solution contract: ``objective`` and ``bound`` are the Lagrangian
        bound, ``plan_value`` the recovered plan's objective; OPTIMAL when the gap is within
        :data:`~coordopt.solution.GAP_TOLERANCE`, TIME_LIMIT when the time or iteration
        limit stopped the loop, else FEASIBLE. The plan's ``inventory_price`` is the value of
        a unit on hand at the start of each period under the best stock values
        (``unit_values``)."""
        if self.gap <= GAP_TOLERANCE:
            status = SolveStatus.OPTIMAL
        elif self.stop in ("time_limit", "iterations"):
            status = SolveStatus.TIME_LIMIT
        else:
            status = SolveStatus.FEASIBLE
        p = self.plan
        return Solution(
            method="decompose",
            status=status,
            objective=self.bound,
            seconds=self.seconds,
            message=f"stopped after {self.iterations} iterations: {STOP_REASONS[self.stop]}",
            first_orders=p.orders[0],
            first_slates=slates_from_frequency(p.rec_frequency[0], self.slate_size),
            bound=self.bound,
            plan_value=self.plan_value,
            plan=Plan(
                orders=p.orders,
                alpha=p.alpha,
                beta=p.beta,
                x=self.demand,
                y=p.y,
                rec_frequency=p.rec_frequency,
                sales=p.sales,
                lost=p.lost,
                inventory=p.inventory,
                inventory_price=self.unit_values,
            ),
            details={"iterations": self.iterations, "stop": self.stop, "residual": self.residual},
        )


STOP_REASONS = {
    "gap": "the gap between bound and plan reached the target",
    "time_limit": "the time limit was reached (best bound and plan so far)",
    "iterations": "the iteration limit was reached (best bound and plan so far)",
    "stalled": "the step size collapsed without improving the bound (best bound and plan)",
}
"""Why :func:`solve_catalog` stopped, in words, by :attr:`CatalogSolution.stop`."""


def initial_stock_values(cd: CatalogData) -> torch.Tensor:
    """A start for the stock values: the cheapest delivered cost where orders can arrive
    (clipped to the box), else half the discounted price (start stock only)."""
    lo, hi = stock_value_box(cd)
    start = torch.where(
        torch.isfinite(hi) & (hi < cd.g[:, None] * (cd.price + cd.penalty)[None]),
        hi,
        0.5 * cd.g[:, None] * cd.price[None],
    )
    return torch.minimum(torch.maximum(start, lo), hi)


def solve_catalog(
    inst: Instance,
    *,
    start: FluidStart | None = None,
    gap: float = 1e-3,
    time_limit: float | None = None,
    max_iterations: int = 5000,
    mu0: np.ndarray | None = None,
    rho0: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    plan_every: int = PLAN_EVERY,
    step_scale: float = 1.0,
    patience: int = 8,
    exact_flows: bool | None = None,
    final_exact: bool = True,
) -> CatalogSolution:
    """Fluid bound and exactly feasible plan of ``inst`` (from ``start``) at catalog scale.

    Projected subgradient steps on the stock values (module docstring) with Polyak's step
    ``step_scale (D - target) / |g|_P^2`` in the metric ``P = diag(p_i)`` (a product's
    stock value moves in proportion to its price), ``target`` the best plan value; the
    step scale halves, and the iterate returns to the best one, when the bound has not
    improved for ``patience`` steps. A plan is recovered from the weighted average of the
    iterates' slates at iteration 0 and every ``plan_every`` iterations after it (0: only
    then and after the last), so that the iterations, not the clock, decide every number.
    Stops at relative gap ``gap`` or after ``max_iterations``, when the step scale has
    collapsed (``stalled``), or early after ``time_limit`` seconds (``time_limit``); ``mu0``,
    ``rho0`` warm-start the multipliers (e.g. from an earlier solve). ``exact_flows``: the
    plans' flows from the exact inventory LP (default: up to :data:`EXACT_FLOW_CELLS`
    period-product cells) or the greedy ones; ``final_exact``: the last plan's flows from
    the LP in any case.
    """
    if plan_every < 0:
        raise ValueError(f"plan_every must be >= 0 (0: first and last plan only), got {plan_every}")
    began = time.perf_counter()
    with torch.no_grad():
        cd = catalog_data(inst, start, device=device)
        h, _, n = cd.shape
        if exact_flows is None:
            exact_flows = h * n <= EXACT_FLOW_CELLS
        lo, hi = stock_value_box(cd)
        if mu0 is not None:
            mu = torch.as_tensor(np.asarray(mu0, dtype=float)[-h:], device=device)
        else:
            mu = initial_stock_values(cd)
        mu = torch.minimum(torch.maximum(mu, lo), hi)
        rho = torch.zeros(h, dtype=mu.dtype, device=mu.device)
        if rho0 is not None and cd.capacity is not None:
            rho = torch.as_tensor(np.asarray(rho0, dtype=float)[-h:], device=device).clamp(min=0)
        metric = (cd.price[None] * cd.g[:, None]).expand(h, n).clamp(min=1e-9)
        metric_rho = metric.sum(dim=1) if cd.capacity is not None else None
        average = SlateAverage(cd)
        best_bound, best_mu, best_rho = INF, mu, rho
        best_plan: FluidPoint | None = None
        best_value = -INF
        since_best, scale = 0, step_scale
        warm: torch.Tensor | None = None
        history: list[tuple[float, float, float]] = []
        timings = {"dual": 0.0, "plan": 0.0}
        stop = "iterations"
        bar = iteration_bar(progress, max_iterations, "catalog")
        it, planned_at = 0, -1
        for it in range(max_iterations):
            ts = time.perf_counter()
            dv = dual_value(cd, mu, rho, warm)
            warm = dv.rate
            timings["dual"] += time.perf_counter() - ts
            if dv.bound < best_bound - 1e-12 * abs(best_bound if math.isfinite(best_bound) else 1):
                best_bound, best_mu, best_rho, since_best = dv.bound, mu, rho, 0
            else:
                since_best += 1
            average.add(dv, float(it + 1))
            if it == 0 or (plan_every > 0 and it % plan_every == 0):
                ts = time.perf_counter()
                plan = recover_plan(cd, *average.frequencies(), exact=exact_flows)
                timings["plan"] += time.perf_counter() - ts
                planned_at = it
                if plan.objective > best_value:
                    best_plan, best_value = plan, plan.objective
            rel = (best_bound - best_value) / max(abs(best_bound), 1e-12)
            elapsed = time.perf_counter() - began
            history.append((elapsed, best_bound, best_value))
            bar.set_postfix(bound=f"{best_bound:,.1f}", gap=f"{rel:.3%}", refresh=False)
            bar.update(1)
            if rel <= gap:
                stop = "gap"
                break
            if time_limit is not None and elapsed >= time_limit:
                stop = "time_limit"
                break
            if since_best >= patience:
                scale *= 0.5
                since_best = 0
                mu, rho = best_mu, best_rho
                lo, hi = stock_value_box(cd, rho)
                warm = None
                if scale < 1e-4:
                    stop = "stalled"
                    break
                continue
            # components the box blocks do not move: leave them out of the step's norm
            g_mu = torch.where(
                ((mu <= lo) & (dv.g_mu > 0)) | ((mu >= hi) & (dv.g_mu < 0)), 0.0, dv.g_mu
            )
            g_rho = torch.where((rho <= 0) & (dv.g_rho > 0), 0.0, dv.g_rho)
            norm2 = float((g_mu**2 * metric).sum())
            if metric_rho is not None:
                norm2 += float((g_rho**2 * metric_rho).sum())
            if norm2 <= 1e-18:
                stop = "gap"  # the relaxed solution is feasible: the bound is attained
                break
            step = scale * (dv.bound - best_value) / norm2
            mu = torch.minimum(torch.maximum(mu - step * metric * g_mu, lo), hi)
            if metric_rho is not None:
                rho = (rho - step * metric_rho * g_rho).clamp(min=0.0)
                lo, hi = stock_value_box(cd, rho)
        bar.close()
        # the plan of the last average (unless the loop has just recovered it), with the LP's
        # flows where the loop used greedy ones
        fresh = planned_at == it and (exact_flows or not final_exact)
        if best_plan is None or (not fresh and (stop != "gap" or not exact_flows)):
            ts = time.perf_counter()
            plan = recover_plan(cd, *average.frequencies(), exact=final_exact)
            timings["plan"] += time.perf_counter() - ts
            if best_plan is None or plan.objective > best_value:
                best_plan, best_value = plan, plan.objective
        assert best_plan is not None
        unit_values, _ = inventory_values(cd, best_mu, best_rho)
        rate = cd.rate.cpu().numpy()
        return CatalogSolution(
            bound=best_bound,
            plan_value=best_value,
            plan=best_plan,
            demand=point_demand(cd.fluid, best_plan),
            mu=best_mu.cpu().numpy(),
            rho=best_rho.cpu().numpy(),
            unit_values=unit_values.cpu().numpy(),
            residual=max(plan_residuals(cd.fluid, best_plan, rate).values()),
            slate_size=cd.slate_size,
            rates=warm.cpu().numpy() if warm is not None else np.zeros((h, cd.shape[1])),
            iterations=it + 1,
            seconds=time.perf_counter() - began,
            stop=stop,
            t0=cd.fluid.t0,
            history=history,
            timings=timings,
        )


def iteration_bar(enabled: bool, total: int, desc: str) -> Any:
    """The progress bar of an iterative solver (``desc`` names it), shown after half a second."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="it", delay=0.5)
