"""Period arithmetic every model shares: discounting and lead-time shifts.

One definition each, used by the fluid program (Pyomo and bulk), the plan checks, the
insights and the simulator's discounting, so "period t" means the same thing everywhere:
0-based, an order placed in period ``t`` with lead time ``L`` arrives at the start of
period ``t + L`` and is lost to the horizon when ``t + L >= T``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["arrives_too_late", "discount_factors", "order_arrivals", "shift_by_lead_time"]


def discount_factors(discount: float, horizon: int) -> np.ndarray:
    """``gamma^t`` for ``t = 0..horizon-1``, ``(horizon,)``."""
    return float(discount) ** np.arange(horizon, dtype=float)


def order_arrivals(lead_time: np.ndarray, horizon: int) -> tuple[np.ndarray, ...]:
    """``(t, i, t - L_i)`` for every order of product i that arrives in a period ``t <
    horizon``: arrival periods, products and the periods the orders were placed."""
    lead = np.asarray(lead_time, dtype=np.int64)
    tt, ii = np.meshgrid(np.arange(horizon), np.arange(len(lead)), indexing="ij")
    lag = tt - lead[None, :]
    ok = lag >= 0
    return tt[ok], ii[ok], lag[ok]


def arrives_too_late(lead_time: np.ndarray, horizon: int, start: int = 0) -> np.ndarray:
    """``(horizon - start, N)``: whether an order of product i placed in period ``start + u``
    would arrive after the last period (``start + u + L_i >= horizon``)."""
    placed = np.arange(start, horizon)[:, None]
    return placed + np.asarray(lead_time)[None, :] >= horizon


def shift_by_lead_time(orders: np.ndarray, lead_time: np.ndarray) -> np.ndarray:
    """Arrivals ``(T,N)`` of ``orders (T,N)``: ``out[t, i] = orders[t - L_i, i]`` where
    ``t >= L_i``, else 0 (orders arriving after the horizon drop out)."""
    orders = np.asarray(orders, dtype=float)
    out = np.zeros_like(orders)
    t, i, placed = order_arrivals(lead_time, orders.shape[0])
    out[t, i] = orders[placed, i]
    return out
