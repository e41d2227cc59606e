"""The catalog solver's bound: a Lagrangian dual on stock values, and its validity proof.

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
  :func:`~coordopt.choice.best_slates` finds exactly by Dinkelbach's iteration, for all
  pairs at once;
- an **inventory program per product**: ``max sum_t mu_t s_t - g_t c q_t - g_t h I_t
  - rho_t A_t + g_{H-1} v I_{H-1}`` over the flows ``I_t = I_{t-1} + q_{t-L} - s_t`` (all
  >= 0, ``q <= qmax``), the lost sales at value ``-(g b + pi) l`` and the constant
  ``sum rho_t C``. Sales are no longer tied to demand, so every unit on hand goes to its
  best use: sold now, or held one more period. The value of a unit on hand at t is
  ``W_t = max(mu_t, W_{t+1} - g_t h) - rho_t`` (``W_H = g_{H-1} v``), every unit of start
  stock and pipeline earns its W, and an order placed at tau earns
  ``qmax (W_{tau+L} - g_tau c)^+`` (:func:`~.inventory.inventory_values`).

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from coordopt.choice import SlateChoice, best_slates
from coordopt.solvers.catalog.data import INF, CatalogData
from coordopt.solvers.catalog.inventory import inventory_bound, inventory_flows


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
