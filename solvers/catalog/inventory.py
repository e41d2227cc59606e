"""The inventory programs of the catalog solver's dual, one per product, solved in closed
form for all products at once: a unit on hand is sold or held, whichever is worth more, and
an order is placed in full where it earns more than it costs (:mod:`.dual` derives them)."""

from __future__ import annotations

import torch

from coordopt.solvers.catalog.data import INF, CatalogData

_TIE = 1e-9


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
