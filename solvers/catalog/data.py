"""The catalog solver's data: the fluid program's arrays as torch tensors over the periods
from the start period (:class:`CatalogData`), shared by the dual, the plan recovery and the
solver loop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coordopt.economics import Flow, coefficients_on
from coordopt.instance import Instance
from coordopt.models.fluid import FluidData, FluidStart, fluid_data

INF = math.inf


class CatalogError(ValueError):
    """The catalog solver cannot handle this instance; the message says why and what to do."""


@dataclass(frozen=True, eq=False)
class CatalogData:
    """Tensors of the priced subproblems over the ``H`` periods from the start period.

    Shapes: ``g (H,)`` discount; ``rate (H,M)``; ``wr, wn (M,N)``; ``w0 (M,)``; product
    arrays ``(N,)``: ``price, penalty, holding, salvage`` the money of a unit sold, lost, held
    and left over (:func:`coordopt.economics.unit_values`, costs positive); ``unit_cost, qmax
    (H,N)`` (fixed costs relaxed, caps); ``supply (H,N)``
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
    money = d.unit_value
    unit_cost, salvage, per_order = -money[Flow.ORDERED], money[Flow.LEFT_OVER], -money[Flow.PLACED]
    if (salvage > unit_cost + 1e-12).any():
        i = int(np.argmax(salvage - unit_cost))
        left, ordered = (" + ".join(coefficients_on(f)) for f in (Flow.LEFT_OVER, Flow.ORDERED))
        raise CatalogError(
            f"instance '{inst.name}': product '{inst.product_names[i]}' has {left} "
            f"{salvage[i]} above {ordered} {unit_cost[i]}; ordering is then "
            f"unboundedly profitable. Lower {left} to at most {ordered}."
        )
    h, n = d.horizon, d.n_products
    rate = np.broadcast_to(inst.arrival_rate, (inst.horizon, inst.n_segments))[d.t0 :]
    qmax = np.where(np.isfinite(d.max_order)[None], np.broadcast_to(d.max_order, (h, n)), d.big_m)
    qmax = np.minimum(qmax, d.big_m) if d.order_indicators else qmax
    fixed = np.divide(
        per_order[None],
        d.big_m,
        out=np.zeros((h, n)),
        where=(d.big_m > 0) & (per_order[None] > 0),
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
        price=t(money[Flow.SOLD]),
        penalty=t(-money[Flow.LOST]),
        holding=t(-money[Flow.HELD]),
        salvage=t(salvage),
        unit_cost=t(unit_cost[None] + fixed),
        qmax=t(qmax),
        # torch.tensor copies: as_tensor on the instance's read-only array warns every solve
        lead_time=torch.tensor(d.lead_time, dtype=torch.long, device=device),
        supply=t(supply),
        capacity=d.warehouse_capacity,
        slate_size=d.slate_size,
        hidden=d.hidden,
        fluid=d,
    )
