"""Catalog-scale fluid solver: a Lagrangian dual on stock values, minimised in torch.

The fluid program of docs/model.md couples its segments only through each product's stock.
Write the demand split with lost sales eliminated: ``l = sum_k x - s >= 0``, so the profit
of period t is ``g_t (p s - b l - ...) = g_t (p + b) s - g_t b sum_k x - ...``. Dualise the
split ``sum_k x_kit = s_it + l_it`` with a free multiplier ``pi_it`` and write it as a
stock value ``mu_it = g_t p_i - pi_it`` (``g_t = gamma^t``). With a warehouse capacity,
dualise its row ``sum_i A_it <= C`` (``A``: on hand after arrivals) with ``rho_t >= 0``.
The Lagrangian separates into

- a **choice program per (period, segment)**: ``max sum_i (g_t p_i - mu_it) x_kit`` over
  the choice polytope (choice balance, offer rows, slate capacity). Dividing by ``y``
  (Charnes-Cooper) turns it into a linear-fractional program over ``{a, b >= 0, a + b <= 1,
  sum a <= K}`` (``= 1`` in "lost" mode), whose vertices are integral: every product is
  recommended, offered-not-recommended or (hidden mode only) not offered, and at most K are
  recommended. Its value is ``lambda_tk R*_tk`` where ``R*`` is the best revenue per
  customer at margins ``m = g p - mu`` -- the top-K MNL assortment that
  :func:`best_slates` finds exactly by Dinkelbach's iteration, for all pairs at once;
- an **inventory program per product**: ``max sum_t mu_t s_t - g_t c q_t - g_t h I_t
  - rho_t A_t + g_{H-1} v I_{H-1}`` over the flows ``I_t = I_{t-1} + q_{t-L} - s_t`` (all
  >= 0, ``q <= qmax``), the lost sales at value ``-(g b + pi) l`` and the constant
  ``sum rho_t C``. Sales are no longer tied to demand, so every unit on hand goes to its
  best use: sold now, or held one more period. The value of a unit on hand at t is
  ``W_t = max(mu_t, W_{t+1} - g_t h) - rho_t`` (``W_H = g_{H-1} v``), every unit of start
  stock and pipeline earns its W, and an order placed at tau earns
  ``qmax (W_{tau+L} - g_tau c)^+`` (:func:`inventory_values`).

**Validity (the bound).** Let P be any feasible point of the fluid program and mu, rho
with ``rho >= 0`` and ``mu <= g (p + b)``. At P the dualised split holds with equality and
the capacity slack is >= 0, so the Lagrangian at P is at least profit(P). P's choice part
is feasible for every choice program and its flows for every inventory program (the split
is the only constraint dropped; ``l >= 0`` stays, and its coefficient ``-(g b + pi) =
mu - g (p + b) <= 0`` keeps its maximum at ``l = 0`` -- this is why the "lost" mode's
penalty caps the stock value at ``g (p + b)``). So the sum of the separate maxima, which
is the Lagrangian's maximum, is at least profit(P); hence at least the fluid optimum. A
negative stock value only lowers the inventory program's sales to zero and raises the
choice margins, so ``mu >= 0`` loses nothing. Order caps enter as ``qmax``: ``max_order``
where finite, else the fluid program's big-M (the most the product can sell after the order
arrives, :func:`coordopt.models.fluid.fluid_data`), which no optimal plan exceeds when
salvage is below cost; fixed order costs enter as their LP relaxation ``z = q / M``, a unit
cost ``c + F / M``. Discounting, lead times, salvage and the start state (on hand and
pipeline) enter the inventory program exactly. The "hidden" mode only relaxes the offer
rows to ``<=``, which adds the "not offered" option to the choice program. Each step is
checked as a property in ``tests/solvers/test_catalog.py``.

**Minimising the bound.** The dual ``D(mu, rho)`` is convex and piecewise linear; its
subgradient in ``mu`` is ``s* - sum_k x*`` (the inventory program's sales minus the choice
programs' demand; ties are broken toward the demand, which gives short subgradients) and in
``rho`` ``C - sum_i A*``. :func:`solve_catalog` runs projected subgradient steps with
Polyak's step size toward the best plan value, a per-product diagonal scaling (stock values
move in price units), restarts from the best point when the bound stalls, and recovers a
primal plan from the weighted average of the iterates' slates (a convex combination of
feasible choice points is feasible), completed by the inventory program for the demand
it induces -- one bulk HiGHS call over all products (:func:`plan_flows`), which reuses the
fluid program's compiled arrays (above :data:`EXACT_FLOW_CELLS` period-product cells the
iterations use the vectorised :func:`greedy_flows` and only the last plan the LP). Everything above the plan step is torch tensor algebra,
so it runs on CPU threads or a GPU (``device``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from coordopt.instance import Instance
from coordopt.models.fluid import FluidData, FluidStart, fluid_data
from coordopt.periods import shift_by_lead_time
from coordopt.solution import GAP_TOLERANCE, Plan, Solution, SolveStatus, slates_from_frequency

INF = math.inf
_TIE = 1e-9


class CatalogError(ValueError):
    """The catalog solver cannot handle this instance; the message says why and what to do."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class CatalogData:
    """Tensors of the priced subproblems over the ``H`` periods from the start period.

    Shapes: ``g (H,)`` discount; ``rate (H,M)``; ``wr, wn (M,N)``; ``w0 (M,)``; product
    arrays ``(N,)``; ``unit_cost, qmax (H,N)`` (fixed costs relaxed, caps); ``supply (H,N)``
    fixed stock entering each period (on hand in period 0, pipeline arrivals);
    ``capacity`` the warehouse capacity or None.
    """

    g: torch.Tensor
    rate: torch.Tensor
    wr: torch.Tensor
    wn: torch.Tensor
    w0: torch.Tensor
    price: torch.Tensor
    penalty: torch.Tensor
    holding: torch.Tensor
    salvage: torch.Tensor
    unit_cost: torch.Tensor
    qmax: torch.Tensor
    lead_time: torch.Tensor
    supply: torch.Tensor
    capacity: float | None
    slate_size: int
    hidden: bool
    fluid: FluidData

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.rate.shape[0], self.rate.shape[1], self.price.shape[0]


def catalog_data(
    inst: Instance,
    start: FluidStart | None = None,
    *,
    device: str | torch.device = "cpu",
) -> CatalogData:
    """Collect :class:`CatalogData` for ``inst`` from ``start`` (default: period 0)."""
    d = fluid_data(inst, start=start)
    if (inst.salvage_value > inst.unit_cost + 1e-12).any():
        i = int(np.argmax(inst.salvage_value - inst.unit_cost))
        raise CatalogError(
            f"instance '{inst.name}': product '{inst.product_names[i]}' has salvage_value "
            f"{inst.salvage_value[i]} above unit_cost {inst.unit_cost[i]}; ordering is then "
            "unboundedly profitable. Lower salvage_value to at most unit_cost."
        )
    h, n = d.horizon, d.n_products
    rate = np.broadcast_to(inst.arrival_rate, (inst.horizon, inst.n_segments))[d.t0 :]
    qmax = np.where(np.isfinite(d.max_order)[None], np.broadcast_to(d.max_order, (h, n)), d.big_m)
    qmax = np.minimum(qmax, d.big_m) if d.order_indicators else qmax
    fixed = np.divide(
        d.fixed_order_cost[None],
        d.big_m,
        out=np.zeros((h, n)),
        where=(d.big_m > 0) & (d.fixed_order_cost[None] > 0),
    )
    supply = d.arrivals.copy()
    supply[0] += d.on_hand

    def t(x: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(x, dtype=float), device=device)

    return CatalogData(
        g=t(d.discount),
        rate=t(rate),
        wr=t(d.rec_attraction),
        wn=t(d.base_attraction),
        w0=t(d.no_purchase),
        price=t(d.price),
        penalty=t(d.lost_sale_penalty),
        holding=t(d.holding_cost),
        salvage=t(d.salvage_value),
        unit_cost=t(d.unit_cost[None] + fixed),
        qmax=t(qmax),
        # torch.tensor copies: as_tensor on the instance's read-only array warns every solve
        lead_time=torch.tensor(d.lead_time, dtype=torch.long, device=device),
        supply=t(supply),
        capacity=d.warehouse_capacity,
        slate_size=d.slate_size,
        hidden=d.hidden,
        fluid=d,
    )


def stock_value_box(
    cd: CatalogData, rho: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds ``(lo, hi)`` of the stock values, ``(H,N)``, at capacity prices ``rho``.

    ``lo = 0``; ``hi = g (p + b)`` (validity, module docstring), and where orders are
    uncapped also the cheapest delivered cost ``U_t = min_{tau + L <= t} g_tau c + sum_{tau+L
    <= u < t} g_u h + sum_{tau+L <= u <= t} rho_u``: above it the inventory program orders
    its big-M, which never lowers the dual, so the minimiser lies below it.
    """
    h, _, n = cd.shape
    hi = cd.g[:, None] * (cd.price + cd.penalty)[None]
    uncapped = torch.as_tensor(np.isinf(cd.fluid.max_order), device=hi.device)
    delivered = torch.full((h, n), INF, dtype=hi.dtype, device=hi.device)
    best = torch.full((n,), INF, dtype=hi.dtype, device=hi.device)
    for t in range(h):
        placed = t - cd.lead_time
        ok = placed >= 0
        pl = placed.clamp(min=0)
        arriving = torch.where(ok, cd.g[pl] * cd.unit_cost[pl, torch.arange(n)], INF)
        best = torch.minimum(best, arriving) + (0.0 if rho is None else rho[t])
        delivered[t] = best
        best = best + cd.g[t] * cd.holding
    hi = torch.where(uncapped[None], torch.minimum(hi, delivered), hi)
    return torch.zeros_like(hi), hi


# --------------------------------------------------------------------------- choice programs


@dataclass(frozen=True, eq=False)
class SlateChoice:
    """Best slates of all (period, segment) pairs at given margins.

    ``slates (H,M,K)`` product indices (-1 = empty slot); ``offered (H,M,N)`` bool (None
    in "lost" mode: every product is offered); ``rate (H,M)`` the attained revenue per customer; ``upper (H,M)`` a
    certified upper bound on the best rate (equal to ``rate`` once Dinkelbach has
    converged); ``y (H,M)`` the no-purchase mass ``lambda / (w0 + sum offered w)``.
    """

    slates: torch.Tensor
    offered: torch.Tensor | None
    rate: torch.Tensor
    upper: torch.Tensor
    y: torch.Tensor


def best_slates(
    margin: torch.Tensor,
    rate: torch.Tensor,
    wr: torch.Tensor,
    wn: torch.Tensor,
    w0: torch.Tensor,
    slate_size: int,
    hidden: bool,
    start: torch.Tensor | None = None,
    max_iter: int = 60,
) -> SlateChoice:
    """Exact best-revenue slate for every (period, segment) at margins ``margin (H,N)``.

    For a target rate R the parametric problem ``F(R) = max sum_i (m_i - R) w_i - R w0``
    picks, per product, the best of "not offered" (hidden mode only, 0), "offered"
    ``(m - R) w^N`` and "recommended" ``(m - R) w^R`` with at most K recommended: the K
    largest positive gains of recommending over the best other option. Dinkelbach's
    iteration ``R <- N(S_R) / D(S_R)`` increases R to the optimum in finitely many steps.
    At any R, ``F(R) >= N(S) - R D(S)`` for every choice S gives ``N/D <= R + F(R)^+ /
    D_min`` with ``D_min`` the smallest denominator (``w0``, plus ``sum w^N`` in "lost"
    mode): a certified upper bound even before convergence. ``start`` warm-starts R.
    """
    h, n = margin.shape
    k = min(slate_size, n)
    up = (wr - wn)[None].expand(h, -1, -1)  # (H,M,N) view
    m = margin[:, None, :].expand(-1, wr.shape[0], -1)  # (H,M,N) view
    d_min = w0 + (0.0 if hidden else wn.sum(dim=1))  # (M,)
    base_num = margin @ wn.T  # (H,M): every product offered, nothing recommended
    scale = margin.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    if start is not None:
        r = start.clone()
    elif hidden:
        r = torch.zeros(rate.shape, dtype=margin.dtype, device=margin.device)
    else:
        r = base_num / d_min[None]
    offered: torch.Tensor | None = None
    for _ in range(max_iter):
        diff = m - r[..., None]  # (H,M,N)
        if hidden:
            base = (diff * wn[None]).clamp(min=0.0)
            top, idx = torch.topk(diff * wr[None] - base, k, dim=2)
            f = base.sum(dim=2)
        else:
            top, idx = torch.topk(diff * up, k, dim=2)
            f = base_num - r * wn.sum(dim=1)[None]
        pick = top > 0
        f = f + (top * pick).sum(dim=2) - r * w0[None]
        slates = torch.where(pick, idx, -1)
        if hidden:
            rec = torch.zeros_like(diff)
            rec.scatter_(2, idx, pick.to(diff.dtype))
            offered = (diff > 0) | (rec > 0)
            w = torch.where(offered, wn[None] + rec * up, 0.0)
            num = (w * m).sum(dim=2)
            den = w0[None] + w.sum(dim=2)
        else:
            u_top = torch.gather(up, 2, idx) * pick
            num = base_num + (u_top * torch.gather(m, 2, idx)).sum(dim=2)
            den = d_min[None] + u_top.sum(dim=2)
        new = num / den
        upper = r + f.clamp(min=0.0) / d_min[None]
        done = bool(((upper - new) <= 1e-12 * scale).all())
        r = new
        if done:
            break
    return SlateChoice(slates, offered, new, torch.maximum(upper, new), rate / den)


# --------------------------------------------------------------------------- inventory programs


def inventory_values(
    cd: CatalogData, mu: torch.Tensor, rho: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit values and order profits of the inventory programs.

    Returns ``W (H,N)``: value of a unit on hand after arrivals in period t (sold then, or
    held, whichever is worth more, less the capacity price ``rho_t``), and ``profit (H,N)``:
    ``W_{tau+L} - g_tau c`` of an order placed at tau (``-inf`` when it arrives after the
    horizon).
    """
    h, _, _n = cd.shape
    w = torch.empty_like(mu)
    nxt = cd.g[h - 1] * cd.salvage
    for t in range(h - 1, -1, -1):
        w[t] = torch.maximum(mu[t], nxt - cd.g[t] * cd.holding) - rho[t]
        nxt = w[t]
    arrive = torch.arange(h, device=mu.device)[:, None] + cd.lead_time[None]
    ok = arrive < h
    at = torch.gather(w, 0, arrive.clamp(max=h - 1))
    profit = torch.where(ok, at - cd.g[:, None] * cd.unit_cost, -INF)
    return w, profit


def inventory_bound(cd: CatalogData, mu: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Optimal value of every product's inventory program, summed, plus ``sum rho C``."""
    w, profit = inventory_values(cd, mu, rho)
    total = (cd.supply * w).sum() + (cd.qmax * profit.clamp(min=0.0)).sum()
    if cd.capacity is not None:
        total = total + rho.sum() * cd.capacity
    return total


def inventory_flows(
    cd: CatalogData, mu: torch.Tensor, rho: torch.Tensor, demand: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An optimal solution of the inventory programs: sales ``s (H,N)`` and on-hand after
    arrivals ``A (H,N)``. Ties (zero-profit orders, selling now or later worth the same) are
    broken toward ``demand``, so that ``s - demand`` is a short subgradient."""
    h, _, n = cd.shape
    w, profit = inventory_values(cd, mu, rho)
    scale = cd.g[:, None] * cd.price[None]
    order_full = profit > _TIE * scale
    order_free = profit.abs() <= _TIE * scale
    placed = torch.arange(h, device=mu.device)[:, None] - cd.lead_time[None]
    nxt = torch.cat([w[1:], (cd.g[h - 1] * cd.salvage)[None]], dim=0)
    hold_value = nxt - cd.g[:, None] * cd.holding[None]
    sell_gain = mu - hold_value
    q = torch.where(order_full, cd.qmax, 0.0)
    sales = torch.zeros_like(mu)
    onhand = torch.zeros_like(mu)
    carried = torch.zeros(n, dtype=mu.dtype, device=mu.device)
    cols = torch.arange(n, device=mu.device)
    for t in range(h):
        pl = placed[t]
        valid = pl >= 0
        plc = pl.clamp(min=0)
        fixed_in = carried + cd.supply[t] + torch.where(valid, q[plc, cols], 0.0)
        free = valid & order_free[plc, cols] & (sell_gain[t] >= -_TIE * scale[t])
        extra = torch.where(free, (demand[t] - fixed_in).clamp(min=0.0), 0.0)
        extra = torch.minimum(extra, cd.qmax[plc, cols])
        q[plc, cols] = torch.where(free, extra, q[plc, cols])
        a = fixed_in + extra
        sell = torch.where(
            sell_gain[t] > _TIE * scale[t],
            a,
            torch.where(sell_gain[t] < -_TIE * scale[t], 0.0, torch.minimum(a, demand[t])),
        )
        sales[t], onhand[t] = sell, a
        carried = a - sell
    return sales, onhand


# --------------------------------------------------------------------------- the dual

CHUNK_CELLS = 4_000_000
"""Period-segment-product cells handled by one tensor pass of the choice programs."""


@dataclass(frozen=True, eq=False)
class DualValue:
    """One evaluation of the dual: ``bound`` and its ``choice_part``; the best slates
    ``slates (H,M,K)``, their revenue per customer ``rate (H,M)``, no-purchase mass
    ``y (H,M)``, offered set ``offered (H,M,N)`` (None in "lost" mode: everything);
    expected ``demand (H,N)`` and the subgradients ``g_mu (H,N)``, ``g_rho (H,)``."""

    bound: float
    choice_part: float
    slates: torch.Tensor
    rate: torch.Tensor
    y: torch.Tensor
    offered: torch.Tensor | None
    demand: torch.Tensor
    g_mu: torch.Tensor
    g_rho: torch.Tensor


def period_chunks(cd: CatalogData) -> list[slice]:
    """Period ranges whose ``(t, M, N)`` tensors stay below :data:`CHUNK_CELLS`."""
    h, m, n = cd.shape
    step = max(1, CHUNK_CELLS // max(m * n, 1))
    return [slice(a, min(a + step, h)) for a in range(0, h, step)]


def slate_demand(
    cd: CatalogData, slates: torch.Tensor, y: torch.Tensor, offered: torch.Tensor | None
) -> torch.Tensor:
    """Expected demand ``sum_k y_tk w_tki (h,N)`` of the choices ``slates (h,M,K)``: base
    weight of every offered product plus the uplift of the recommended ones."""
    h, m = y.shape
    valid = slates >= 0
    idx = slates.clamp(min=0)
    up = (cd.wr - cd.wn)[None].expand(h, -1, -1)
    if offered is None:
        demand = y @ cd.wn
    else:
        demand = torch.einsum("tk,tki->ti", y, torch.where(offered, cd.wn[None], 0.0))
    lift = torch.gather(up, 2, idx) * valid * y[..., None]
    return demand.scatter_add_(1, idx.reshape(h, -1), lift.reshape(h, m * idx.shape[2]))


def period_slates(
    cd: CatalogData, margin: torch.Tensor, warm: torch.Tensor | None = None
) -> tuple[SlateChoice, torch.Tensor]:
    """Best-revenue slates of every (period, segment) at ``margin (H,N)`` -- one
    :func:`best_slates` call per :func:`period_chunks` range, joined -- and the expected
    demand ``(H,N)`` they induce. ``warm (H,M)`` starts Dinkelbach's iteration from earlier
    rates."""
    parts: list[SlateChoice] = []
    demand = torch.empty_like(margin)
    for sl in period_chunks(cd):
        ch = best_slates(
            margin[sl],
            cd.rate[sl],
            cd.wr,
            cd.wn,
            cd.w0,
            cd.slate_size,
            cd.hidden,
            None if warm is None else warm[sl],
        )
        demand[sl] = slate_demand(cd, ch.slates, ch.y, ch.offered)
        parts.append(ch)
    offered = [c.offered for c in parts if c.offered is not None]
    joined = SlateChoice(
        slates=torch.cat([c.slates for c in parts]),
        offered=torch.cat(offered) if offered else None,
        rate=torch.cat([c.rate for c in parts]),
        upper=torch.cat([c.upper for c in parts]),
        y=torch.cat([c.y for c in parts]),
    )
    return joined, demand


def dual_value(
    cd: CatalogData, mu: torch.Tensor, rho: torch.Tensor, warm: torch.Tensor | None = None
) -> DualValue:
    """The Lagrangian bound at stock values ``mu (H,N)`` and capacity prices ``rho (H,)``
    (module docstring), with the choice programs' solution and a subgradient. ``warm (H,M)``
    starts Dinkelbach's iteration from earlier rates."""
    choice, demand = period_slates(cd, cd.g[:, None] * cd.price[None] - mu, warm)
    choice_part = (cd.rate * choice.upper).sum()
    bound = choice_part + inventory_bound(cd, mu, rho)
    sales, onhand = inventory_flows(cd, mu, rho, demand)
    g_rho = cd.capacity - onhand.sum(dim=1) if cd.capacity is not None else torch.zeros_like(rho)
    return DualValue(
        bound=float(bound),
        choice_part=float(choice_part),
        slates=choice.slates,
        rate=choice.rate,
        y=choice.y,
        offered=choice.offered,
        demand=demand,
        g_mu=sales - demand,
        g_rho=g_rho,
    )


# --------------------------------------------------------------------------- plans


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
    serve = g[:, None] * (d.price + d.lost_sale_penalty)[None]
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

PLAN_EVERY = 10
"""Dual iterations between plan recoveries in :func:`solve_catalog` (and one at iteration 0)."""


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
    """Discounted profit of ``p`` (docs/model.md objective, LP-relaxed indicators)."""
    g = d.discount[:, None]
    per = (
        d.price * p.sales
        - d.unit_cost * p.orders
        - d.holding_cost * p.inventory
        - d.lost_sale_penalty * p.lost
        - d.fixed_order_cost * p.indicators
    )
    return float((g * per).sum() + d.discount[-1] * (d.salvage_value * p.inventory[-1]).sum())


# --------------------------------------------------------------------------- the solver


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
