"""A tiny scalar reference simulator written from docs/model.md, loop by loop.

It shares no code with ``coordopt.simulator``; the differential tests feed both the same
demand draws and compare every flow and every profit term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from coordopt.instance import Instance, Stockout


@dataclass
class RefState:
    t: int
    on_hand: list[float]
    pipeline: list[list[float]]  # pipeline[i][j]: units of product i arriving in j periods
    history: list[dict] = field(default_factory=list)


def ref_reset(inst: Instance) -> RefState:
    width = max(1, inst.max_lead_time)
    return RefState(
        0,
        [float(x) for x in inst.initial_inventory],
        [[0.0] * width for _ in range(inst.n_products)],
    )


def ref_available(
    inst: Instance, s: RefState, orders: list[float]
) -> tuple[list[float], list[float], list[float]]:
    """(available, applied orders, overflow) after arrivals and lead-time-0 orders."""
    n = inst.n_products
    q = [math.floor(min(max(o, 0.0), inst.max_order[i])) for i, o in enumerate(orders)]
    incoming = [s.pipeline[i][0] + (q[i] if inst.lead_time[i] == 0 else 0.0) for i in range(n)]
    overflow = [0.0] * n
    if inst.warehouse_capacity is not None:
        free = max(inst.warehouse_capacity - sum(s.on_hand), 0.0)
        total = sum(incoming)
        if total > free:
            accepted = [math.floor(x * free / max(total, 1.0)) for x in incoming]
            overflow = [x - a for x, a in zip(incoming, accepted, strict=True)]
            incoming = accepted
    return [s.on_hand[i] + incoming[i] for i in range(n)], q, overflow


def ref_rates(
    inst: Instance, t: int, available: list[float], slates: list[list[int]]
) -> list[float]:
    """sum_k lambda_kt * w_ki / (w_k0 + sum_j w_kj) in period t, one weight at a time."""
    n = inst.n_products
    rates = [0.0] * n
    for k in range(inst.n_segments):
        weights = []
        for i in range(n):
            w = inst.rec_attraction[k, i] if i in slates[k] else inst.base_attraction[k, i]
            if inst.stockout is Stockout.HIDDEN and available[i] <= 0:
                w = 0.0
            weights.append(w)
        denom = inst.no_purchase[k] + sum(weights)
        for i in range(n):
            rates[i] += inst.arrival_rate[t][k] * weights[i] / denom
    return rates


def ref_step(
    inst: Instance, s: RefState, orders: list[float], slates: list[list[int]], demand: list[float]
) -> tuple[RefState, dict[str, float]]:
    n = inst.n_products
    available, q, overflow = ref_available(inst, s, orders)
    sales = [min(available[i], demand[i]) for i in range(n)]
    lost = [demand[i] - sales[i] for i in range(n)]
    end = [available[i] - sales[i] for i in range(n)]
    width = len(s.pipeline[0])
    pipe = [[*row[1:], 0.0] for row in s.pipeline]
    for i in range(n):
        if inst.lead_time[i] >= 1:
            pipe[i][inst.lead_time[i] - 1] += q[i]
    assert all(len(r) == width for r in pipe)
    terms = {
        "revenue": sum(inst.price[i] * sales[i] for i in range(n)),
        "ordering_cost": sum(
            inst.unit_cost[i] * q[i] + (inst.fixed_order_cost[i] if q[i] > 0 else 0.0)
            for i in range(n)
        ),
        "holding_cost": sum(inst.holding_cost[i] * end[i] for i in range(n)),
        "lost_sale_cost": sum(inst.lost_sale_penalty[i] * lost[i] for i in range(n)),
        "salvage": sum(inst.salvage_value[i] * end[i] for i in range(n))
        if s.t == inst.horizon - 1
        else 0.0,
    }
    terms["reward"] = (
        terms["revenue"]
        - terms["ordering_cost"]
        - terms["holding_cost"]
        - terms["lost_sale_cost"]
        + terms["salvage"]
    )
    flows = {"available": available, "sales": sales, "lost": lost, "end": end, "overflow": overflow}
    return RefState(s.t + 1, end, pipe), {**terms, **{f"flow_{k}": v for k, v in flows.items()}}
