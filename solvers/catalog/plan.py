"""Plan recovery: an exactly feasible point of the fluid program from the dual iterates'
slates (their weighted average is a feasible choice point), completed by the flows of the
inventory rows for the demand it induces (the exact LP or greedy flows), and its checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from coordopt.economics import PERIOD_FLOWS, Flow
from coordopt.models.fluid import FluidData
from coordopt.periods import shift_by_lead_time
from coordopt.solvers.catalog.data import CatalogData, CatalogError
from coordopt.solvers.catalog.dual import DualValue, period_chunks


@dataclass(frozen=True, eq=False)
class FluidPoint:
    """A point of the full fluid program: choice masses ``alpha, beta (T,M,N)``, ``y (T,M)``;
    ``orders, sales, lost, inventory (T,N)``; ``indicators (T,N)`` (LP-relaxed order
    indicators, zeros without fixed order costs); ``objective`` its discounted profit."""

    alpha: np.ndarray
    beta: np.ndarray
    y: np.ndarray
    orders: np.ndarray
    sales: np.ndarray
    lost: np.ndarray
    inventory: np.ndarray
    indicators: np.ndarray
    objective: float

    @property
    def rec_frequency(self) -> np.ndarray:
        """``alpha / y``: how often each product is on each segment's slate, ``(T,M,N)``."""
        y = self.y[..., None]
        return np.divide(self.alpha, y, out=np.zeros_like(self.alpha), where=y > 1e-12)


class SlateAverage:
    """Weighted running average of the iterates' choice points ``(alpha, alpha + beta, y)``.

    Each iterate is a feasible point of every choice program, and so is any convex
    combination; the average's frequencies ``alpha / y`` are the recovered plan's."""

    def __init__(self, cd: CatalogData) -> None:
        h, m, n = cd.shape
        self.cd = cd
        self.alpha = torch.zeros(h, m, n, dtype=cd.wr.dtype, device=cd.wr.device)
        self.offered = torch.zeros_like(self.alpha) if cd.hidden else None
        self.y = torch.zeros(h, m, dtype=cd.wr.dtype, device=cd.wr.device)
        self.weight = 0.0

    def add(self, dv: DualValue, weight: float) -> None:
        """Add ``weight`` times the iterate ``dv``."""
        for sl in period_chunks(self.cd):
            slates, y = dv.slates[sl], dv.y[sl, :, None]
            mass = weight * y * (slates >= 0)
            self.alpha[sl].scatter_add_(2, slates.clamp(min=0), mass)
            if self.offered is not None and dv.offered is not None:
                self.offered[sl] += weight * dv.offered[sl] * y
        self.y += weight * dv.y
        self.weight += weight

    def frequencies(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(rec, offered)`` frequencies ``(H,M,N)`` of the average (offered None: lost)."""
        y = self.y[..., None].clamp(min=1e-300)
        rec = (self.alpha / y).clamp(0.0, 1.0).cpu().numpy()
        off = None if self.offered is None else (self.offered / y).clamp(0.0, 1.0).cpu().numpy()
        return rec, off


def choice_point(
    cd: CatalogData, rec: np.ndarray, offered: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, beta, y)`` satisfying choice balance, offer rows and slate capacity exactly,
    from frequencies ``rec (H,M,N)`` and (hidden mode) ``offered``: clip to ``[0, offered]``,
    scale a segment's total down to K, then ``y = lambda / (w0 + sum(w^R rec + w^N (offered -
    rec)))``, ``alpha = rec y``, ``beta = (offered - rec) y``."""
    d = cd.fluid
    off = np.ones_like(rec) if offered is None else np.clip(offered, 0.0, 1.0)
    rec = np.minimum(np.clip(rec, 0.0, 1.0), off)
    total = rec.sum(axis=2, keepdims=True)
    rec = rec * np.minimum(1.0, d.slate_size / np.maximum(total, 1e-300))
    wr, wn = d.rec_attraction[None], d.base_attraction[None]
    weight = (wr * rec + wn * (off - rec)).sum(axis=2)
    y = cd.rate.cpu().numpy() / (d.no_purchase[None] + weight)
    return rec * y[..., None], (off - rec) * y[..., None], y


def plan_flows(cd: CatalogData, demand: np.ndarray) -> tuple[tuple[np.ndarray, ...], float]:
    """Best orders, sales, lost sales, end inventory and indicators ``(H,N)`` for a fixed
    expected demand, and their profit: the inventory rows of the fluid program (demand
    split, inventory flow, warehouse capacity, order indicators) with the choice columns
    fixed, in one bulk HiGHS call over all products.

    The rows and columns are the fluid program's own compiled arrays
    (:func:`coordopt.solvers.highs_bulk.assemble_fluid_lp` of a one-segment copy of the
    data, whose choice columns are dropped), so nothing of the program is re-encoded.
    """
    import highspy

    from coordopt.solvers.highs_bulk import (
        Layout,
        assemble_fluid_lp,
        new_highs,
        run_highs,
        to_highs,
    )

    d = cd.fluid
    n = d.n_products
    one = dataclasses.replace(
        d,
        n_segments=1,
        arrival_rate=np.ones(1),
        no_purchase=np.ones(1),
        rec_attraction=np.zeros((1, n)),
        base_attraction=np.zeros((1, n)),
        slate_mask=None,
    )
    full = assemble_fluid_lp(one)
    lay = full.layout
    inv_cols = [c for c in ("q", "s", "l", "inv", "z") if c in lay.cols]
    inv_rows = [
        r
        for r in ("demand_split", "inventory_flow", "warehouse_capacity", "order_indicator")
        if r in lay.rows
    ]
    cols = np.concatenate([lay.col(c).ravel() for c in inv_cols])
    rows = np.concatenate([lay.row(r).ravel() for r in inv_rows])
    row_lo, row_up = full.row_lower[rows].copy(), full.row_upper[rows].copy()
    split = lay.row("demand_split").size
    row_lo[:split] = row_up[:split] = np.asarray(demand, dtype=float).ravel()
    sub = dataclasses.replace(
        full,
        layout=Layout(lay.H, 0, n, n_cols=len(cols), n_rows=len(rows)),
        cost=full.cost[cols],
        matrix=full.matrix[rows][:, cols].tocsc(),
        row_lower=row_lo,
        row_upper=row_up,
        col_lower=full.col_lower[cols],
        col_upper=full.col_upper[cols],
        integer=np.zeros(len(cols), dtype=bool),
    )
    h = new_highs()
    to_highs(sub, h)
    run_highs(h)
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise CatalogError(
            f"the inventory program for the recovered plan was not solved: "
            f"{h.modelStatusToString(status)} (does stock already committed overfill the "
            "warehouse capacity?)"
        )
    x = np.asarray(h.getSolution().col_value)
    size = lay.H * n
    blocks = {c: x[j * size : (j + 1) * size].reshape(lay.H, n) for j, c in enumerate(inv_cols)}
    z = blocks.get("z", np.zeros((lay.H, n)))
    flows = (*tuple(np.maximum(blocks[c], 0.0) for c in ("q", "s", "l", "inv")), z)
    return flows, float(h.getInfo().objective_function_value)


def greedy_flows(cd: CatalogData, demand: np.ndarray) -> tuple[np.ndarray, ...]:
    """Feasible (not always optimal) orders, sales, lost sales, end inventory and indicators
    ``(H,N)`` for a fixed demand, for all products at once: each period, stock on hand is
    sold first, and the shortfall is ordered (its lead time earlier) where the order is
    worth its cost (``g_tau c <= g_t (p + b)``), within the order cap and the warehouse room
    (orders are cut pro rata where arrivals would overfill it). Exact when orders are
    uncapped and costs do not fall over time; otherwise a lower bound on the best flows
    (:func:`plan_flows`), at the cost of ``H`` vector steps instead of an LP."""
    h, _, n = cd.shape
    d = cd.fluid
    g = d.discount
    unit_cost = cd.unit_cost.cpu().numpy()
    qmax = cd.qmax.cpu().numpy()
    supply = cd.supply.cpu().numpy()
    serve = g[:, None] * (d.unit_value[Flow.SOLD] - d.unit_value[Flow.LOST])[None]
    q = np.zeros((h, n))
    sales, inv = np.zeros((h, n)), np.zeros((h, n))
    carried = np.zeros(n)
    cols = np.arange(n)
    for t in range(h):
        stock = carried + supply[t]
        placed = t - d.lead_time
        ok = placed >= 0
        pl = np.where(ok, placed, 0)
        worth = ok & (g[pl] * unit_cost[pl, cols] <= serve[t])
        need = np.where(worth, np.minimum(np.maximum(demand[t] - stock, 0.0), qmax[pl, cols]), 0)
        if d.warehouse_capacity is not None and need.sum() > 0:
            room = max(d.warehouse_capacity - stock.sum(), 0.0)
            need = need * min(1.0, room / need.sum())
        q[pl[ok], cols[ok]] = need[ok]
        available = stock + need
        sales[t] = np.minimum(available, demand[t])
        inv[t] = carried = available - sales[t]
    lost = np.maximum(demand - sales, 0.0)
    z = np.divide(q, d.big_m, out=np.zeros_like(q), where=d.big_m > 0)
    return q, sales, lost, inv, z if d.order_indicators else np.zeros_like(q)


EXACT_FLOW_CELLS = 100_000
"""Up to this many (period, product) cells the plan's flows come from the exact inventory LP
(:func:`plan_flows`); above, from :func:`greedy_flows` (and the LP once at the end)."""


def recover_plan(
    cd: CatalogData, rec: np.ndarray, offered: np.ndarray | None, exact: bool = True
) -> FluidPoint:
    """An exactly feasible point of the fluid program from slate frequencies
    (:func:`choice_point`, then the flows for the demand it induces: the exact inventory LP
    :func:`plan_flows`, or :func:`greedy_flows` with ``exact=False``)."""
    alpha, beta, y = choice_point(cd, rec, offered)
    d = cd.fluid
    demand = (d.rec_attraction[None] * alpha + d.base_attraction[None] * beta).sum(axis=1)
    if exact:
        (q, s, l, inv, z), value = plan_flows(cd, demand)
        return FluidPoint(alpha, beta, y, q, s, l, inv, z, value)
    q, s, l, inv, z = greedy_flows(cd, demand)
    point = FluidPoint(alpha, beta, y, q, s, l, inv, z, 0.0)
    return dataclasses.replace(point, objective=plan_objective(d, point))


def point_demand(d: FluidData, p: FluidPoint) -> np.ndarray:
    """Expected demand ``x = w^R alpha + w^N beta``, ``(T,M,N)``."""
    return d.rec_attraction[None] * p.alpha + d.base_attraction[None] * p.beta


def plan_residuals(d: FluidData, p: FluidPoint, rate: np.ndarray) -> dict[str, float]:
    """Largest violation of every constraint family of the fluid program of ``d`` by ``p``
    (``rate (H,M)`` the arrival rates); 0 means satisfied (compare with ~1e-6 relative)."""
    x = point_demand(d, p)
    bal = d.no_purchase[None] * p.y + x.sum(axis=2) - rate
    once = p.alpha + p.beta - p.y[..., None]
    once_v = np.maximum(once, 0) if d.hidden else np.abs(once)
    slate = p.alpha.sum(axis=2) - d.slate_size * p.y
    split = p.sales + p.lost - x.sum(axis=1)
    onhand = d.arrivals + shift_by_lead_time(p.orders, d.lead_time)
    onhand[0] += d.on_hand
    onhand[1:] += p.inventory[:-1]
    flow = p.inventory - (onhand - p.sales)
    neg = min(
        float(a.min())
        for a in (p.alpha, p.beta, p.y, p.orders, p.sales, p.lost, p.inventory, p.indicators)
    )
    caps = np.where(np.isfinite(d.max_order), p.orders - d.max_order, 0.0)
    out = {
        "choice_balance": float(np.abs(bal).max()),
        "offer_once": float(once_v.max()),
        "slate_capacity": float(max(slate.max(), 0.0)),
        "demand_split": float(np.abs(split).max()),
        "inventory_flow": float(np.abs(flow).max()),
        "nonnegativity": max(0.0, -neg),
        "max_order": float(max(caps.max(), 0.0)),
    }
    if d.warehouse_capacity is not None:
        out["warehouse_capacity"] = float(max((onhand.sum(axis=1) - d.warehouse_capacity).max(), 0))
    if d.order_indicators:
        out["order_indicator"] = float(max((p.orders - d.big_m * p.indicators).max(), 0.0))
    return out


def plan_objective(d: FluidData, p: FluidPoint) -> float:
    """Discounted profit of ``p`` (docs/model.md objective, LP-relaxed indicators): the money
    per unit of each flow (:func:`coordopt.economics.unit_values`) times the point's flows."""
    u, g = d.unit_value, d.discount[:, None]
    flows = {
        Flow.SOLD: p.sales,
        Flow.ORDERED: p.orders,
        Flow.HELD: p.inventory,
        Flow.LOST: p.lost,
        Flow.PLACED: p.indicators,
    }
    per = sum(u[f] * flows[f] for f in PERIOD_FLOWS)
    return float((g * per).sum() + d.discount[-1] * (u[Flow.LEFT_OVER] * p.inventory[-1]).sum())
