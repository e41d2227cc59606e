"""Batched torch simulator of docs/model.md, "One period t".

Explicit state and a pure step: :class:`SimState` holds tensors with a leading batch
dimension ``B``; :func:`step` advances all ``B`` environments by one period. The step is
split in two so that tests can feed identical draws to a reference implementation:
:func:`demand_rates` (expected demand per product under the multinomial logit) and
:func:`advance` (arrivals, sales, lost sales, costs, given realised demand).

Speed: base attractions are fixed, so the demand rate of every product is one
``(B, M) @ (M, N)`` product plus a scatter of the ``K`` recommended uplifts per segment; the
``B x M x N`` attraction tensor is never built. Demands are Poisson with those rates (the
per-segment demands are independent Poisson by thinning, so their sum is Poisson too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from coordopt import economics
from coordopt.economics import Flow
from coordopt.instance import Instance, Stockout, instance_values
from coordopt.periods import discount_factors

Tensor = torch.Tensor


@dataclass(frozen=True, eq=False)
class SimParams:
    """The instance as tensors on one device (built once by :meth:`from_instance`)."""

    instance: Instance
    price: Tensor  # (N,)
    unit_cost: Tensor
    holding_cost: Tensor
    lost_sale_penalty: Tensor
    salvage_value: Tensor
    fixed_order_cost: Tensor
    max_order: Tensor  # (N,), inf where uncapped
    lead_time: Tensor  # (N,) long
    lead_onehot: Tensor  # (N, W): 1 at column L-1 for L >= 1
    zero_lead: Tensor  # (N,) 1.0 where L = 0
    arrival_rate: Tensor  # (T, M): customers of segment k in period t
    base_attraction: Tensor  # (M, N)
    uplift_flat: Tensor  # (M*N,) rec - base, flattened for gathers
    no_purchase: Tensor  # (M,)
    base_total: Tensor  # (M,) sum_i base_attraction
    segment_offset: Tensor  # (M, 1) long: k * N
    horizon: int
    discount: float
    slate_size: int
    hidden: bool
    warehouse_capacity: float | None
    money: dict[str, Tensor]  # (N,) per charged field not zero everywhere: economics.coefficients

    @property
    def device(self) -> torch.device:
        return self.price.device

    @property
    def dtype(self) -> torch.dtype:
        return self.price.dtype

    @property
    def n_products(self) -> int:
        return int(self.price.shape[0])

    @property
    def n_segments(self) -> int:
        return int(self.no_purchase.shape[0])

    @property
    def pipeline_width(self) -> int:
        return int(self.lead_onehot.shape[1])

    @classmethod
    def from_instance(
        cls, inst: Instance, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> SimParams:
        """Every field this class shares with :class:`Instance` (integer arrays as long
        tensors, the rest in ``dtype``), plus the derived tensors below."""

        def t(x: np.ndarray) -> Tensor:
            return torch.tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)

        shared = instance_values(inst, cls)
        for key, value in shared.items():
            if isinstance(value, np.ndarray):
                is_int = value.dtype.kind == "i"
                shared[key] = torch.tensor(value, device=device) if is_int else t(value)

        n, m = inst.n_products, inst.n_segments
        width = max(1, inst.max_lead_time)
        onehot = np.zeros((n, width))
        pos = inst.lead_time >= 1
        onehot[np.flatnonzero(pos), inst.lead_time[pos] - 1] = 1.0
        return cls(
            instance=inst,
            **{**shared, "slate_size": inst.effective_slate_size},
            lead_onehot=t(onehot),
            zero_lead=t((inst.lead_time == 0).astype(float)),
            uplift_flat=t(inst.rec_attraction - inst.base_attraction).reshape(-1),
            base_total=t(inst.base_attraction.sum(axis=1)),
            segment_offset=(torch.arange(m, device=device) * n).reshape(m, 1),
            hidden=inst.stockout is Stockout.HIDDEN,
            money={k: t(v) for k, v in economics.coefficients(inst).items()},
        )


@dataclass(frozen=True, eq=False)
class SimState:
    """Start-of-period state of ``B`` environments in lock-step.

    ``on_hand[b, i]`` is the end inventory of the previous period; ``pipeline[b, i, j]`` the
    units arriving at the start of period ``t + j``; ``last_*`` are the previous period's
    flows (zeros at ``t = 0``), kept as observations for policies.
    """

    t: int
    on_hand: Tensor  # (B, N)
    pipeline: Tensor  # (B, N, W)
    last_sales: Tensor  # (B, N)
    last_demand: Tensor  # (B, N)
    last_orders: Tensor  # (B, N)

    @property
    def batch_size(self) -> int:
        return int(self.on_hand.shape[0])

    def inventory_position(self) -> Tensor:
        """On-hand plus everything in the pipeline, ``(B, N)``."""
        return self.on_hand + self.pipeline.sum(-1)


@dataclass(frozen=True, eq=False)
class Action:
    """Joint decision: ``orders (B, N)`` non-negative integers; ``slates (B, M, K)`` product
    indices per segment, ``-1`` marking an empty slot (a slate may hold fewer than K)."""

    orders: Tensor
    slates: Tensor


@dataclass(frozen=True, eq=False)
class StepResult:
    """What one period produced; money is ``(B,)``, undiscounted, of that period.

    ``terms``: every term of :data:`coordopt.economics.TERMS` by name, unsigned (salvage is
    non-zero only in the last period); ``reward``: their signed sum, the profit.
    """

    reward: Tensor
    terms: dict[str, Tensor]
    available: Tensor  # (B, N) on-hand after arrivals, before demand
    orders: Tensor  # (B, N) orders as applied (clamped to [0, max_order])
    arrivals: Tensor  # (B, N) units arriving this period (incl. lead-time-0 orders)
    overflow: Tensor  # (B, N) arrivals refused by the warehouse capacity
    demand: Tensor  # (B, N)
    sales: Tensor  # (B, N)
    lost: Tensor  # (B, N)


def reset(params: SimParams, batch_size: int) -> SimState:
    """Initial state: ``initial_inventory`` on hand, nothing in the pipeline, ``t = 0``."""
    n, w = params.n_products, params.pipeline_width
    init = torch.tensor(params.instance.initial_inventory, dtype=params.dtype, device=params.device)
    on_hand = init.expand(batch_size, n).clone()
    zeros = torch.zeros(batch_size, n, dtype=params.dtype, device=params.device)
    return SimState(
        t=0,
        on_hand=on_hand,
        pipeline=torch.zeros(batch_size, n, w, dtype=params.dtype, device=params.device),
        last_sales=zeros,
        last_demand=zeros,
        last_orders=zeros,
    )


def available_stock(
    state: SimState, orders: Tensor, params: SimParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Arrivals and on-hand stock after them (step 1 of a period).

    Returns ``(available, applied_orders, arrivals, overflow)``. Orders are clamped to
    ``[0, max_order]`` and rounded down; lead-time-0 orders arrive at once. With a warehouse
    capacity, incoming units are accepted pro rata (rounded down) up to the free space and
    the rest is refused (``overflow``; its purchase cost is still paid).
    """
    q = torch.minimum(orders.to(params.dtype).clamp(min=0), params.max_order).floor()
    arrivals = state.pipeline[..., 0] + q * params.zero_lead
    overflow = torch.zeros_like(arrivals)
    if params.warehouse_capacity is not None:
        free = (params.warehouse_capacity - state.on_hand.sum(1, keepdim=True)).clamp(min=0)
        incoming = arrivals.sum(1, keepdim=True)
        scaled = (arrivals * free / incoming.clamp(min=1)).floor()  # multiply first: exact
        accepted = torch.where(incoming > free, scaled, arrivals)
        overflow = arrivals - accepted
        arrivals = accepted
    return state.on_hand + arrivals, q, arrivals + overflow, overflow


class ChoiceTerms(NamedTuple):
    """The multinomial logit of one period, per environment and segment (:func:`choice_terms`)."""

    coef: Tensor  # (B, M): lambda_kt / (w_k0 + sum_j w_kj)
    uplift: Tensor  # (B, M, K): rec - base of each slate slot; 0 on empty (and hidden: stockless)
    in_stock: Tensor | None  # (B, N): 1.0 where available > 0 (hidden mode), else None


def choice_terms(available: Tensor, slates: Tensor, params: SimParams, t: int) -> ChoiceTerms:
    """The choice model's coefficients in period ``t``, the one place its denominator is
    computed: segment ``k`` buys product ``i`` at rate ``coef_k * w_ki`` with
    ``w_ki = base_ki`` plus ``uplift`` where ``i`` is on the slate (times ``in_stock_i`` in
    hidden mode, where products with ``available == 0`` weigh 0).
    :func:`demand_rates` sums these rates over segments without building them,
    :func:`coordopt.rl.credit.segment_rates` builds them ``(B, M, N)``."""
    b, m, _ = slates.shape
    valid = slates >= 0
    flat = (slates.clamp(min=0) + params.segment_offset).reshape(b, -1)  # (B, M*K)
    uplift = params.uplift_flat[flat] * valid.reshape(b, -1).to(params.dtype)  # (B, M*K)
    in_stock = None
    if params.hidden:
        in_stock = (available > 0).to(params.dtype)  # (B, N)
        uplift = uplift * torch.gather(in_stock, 1, slates.clamp(min=0).reshape(b, -1))
        denom = params.no_purchase + in_stock @ params.base_attraction.T
    else:
        denom = params.no_purchase + params.base_total
    uplift = uplift.reshape(b, m, -1)  # (B, M, K)
    denom = denom + uplift.sum(-1)  # (B, M)
    return ChoiceTerms(coef=params.arrival_rate[t] / denom, uplift=uplift, in_stock=in_stock)


def demand_rates(available: Tensor, slates: Tensor, params: SimParams, t: int) -> Tensor:
    """Expected demand per product in period ``t``, ``sum_k lambda_kt P_ki``, shape ``(B, N)``.

    ``P_ki = w_ki / (w_k0 + sum_j w_kj)`` with ``w = rec_attraction`` on the slate and
    ``base_attraction`` elsewhere; in hidden mode products with ``available == 0`` weigh 0
    (the coefficients: :func:`choice_terms`).
    """
    b = slates.shape[0]
    coef, uplift, in_stock = choice_terms(available, slates, params, t)
    rates = coef @ params.base_attraction  # (B, N)
    if in_stock is not None:
        rates = rates * in_stock
    weights = (coef.unsqueeze(-1) * uplift).reshape(b, -1)
    return rates.scatter_add_(1, slates.clamp(min=0).reshape(b, -1), weights)


def period_flows(
    orders: Tensor, sales: Tensor, lost: Tensor, end: Tensor, t: int, params: SimParams
) -> dict[Flow, Tensor | None]:
    """The flows money is paid on in period ``t``, ``(B, N)`` each (:class:`economics.Flow`);
    None where absent: left-over stock before the last period, order indicators when no
    charge on them is non-zero (not worth computing)."""
    placed = None
    if any(c in params.money for c in economics.coefficients_on(Flow.PLACED)):
        placed = (orders > 0).to(params.dtype)
    return {
        Flow.SOLD: sales,
        Flow.ORDERED: orders,
        Flow.HELD: end,
        Flow.LOST: lost,
        Flow.PLACED: placed,
        Flow.LEFT_OVER: end if t == params.horizon - 1 else None,
    }


def advance(
    state: SimState,
    available: Tensor,
    orders: Tensor,
    arrivals: Tensor,
    overflow: Tensor,
    demand: Tensor,
    params: SimParams,
) -> tuple[SimState, StepResult]:
    """Sales, lost sales, costs and the next state, given realised ``demand (B, N)``."""
    sales = torch.minimum(available, demand)
    lost = demand - sales
    end = available - sales
    pipeline = state.pipeline.roll(-1, dims=2)
    pipeline[..., -1] = 0
    if params.pipeline_width and params.instance.max_lead_time > 0:
        pipeline = pipeline + orders.unsqueeze(-1) * params.lead_onehot
    terms = economics.term_values(
        period_flows(orders, sales, lost, end, state.t, params),
        params.money,
        zero=sales.new_zeros(sales.shape[0]),
    )
    result = StepResult(
        reward=economics.profit(terms),
        terms=terms,
        available=available,
        orders=orders,
        arrivals=arrivals,
        overflow=overflow,
        demand=demand,
        sales=sales,
        lost=lost,
    )
    nxt = SimState(
        t=state.t + 1,
        on_hand=end,
        pipeline=pipeline,
        last_sales=sales,
        last_demand=demand,
        last_orders=orders,
    )
    return nxt, result


def step(
    state: SimState, action: Action, params: SimParams, generator: torch.Generator | None = None
) -> tuple[SimState, StepResult]:
    """Advance ``B`` environments by one period (docs/model.md steps 1-5)."""
    if state.t >= params.horizon:
        raise ValueError(f"the episode is over: t={state.t} and the horizon is {params.horizon}")
    available, orders, arrivals, overflow = available_stock(state, action.orders, params)
    rates = demand_rates(available, action.slates, params, state.t)
    demand = torch.poisson(rates, generator=generator)
    return advance(state, available, orders, arrivals, overflow, demand, params)


def discount_weights(params: SimParams) -> Tensor:
    """``gamma^t`` for ``t = 0..T-1`` (float64)."""
    return torch.as_tensor(discount_factors(params.discount, params.horizon), dtype=torch.float64)


def empty_slates(params: SimParams, batch_size: int) -> Tensor:
    """A ``(B, M, K)`` slate tensor with every slot empty (-1)."""
    return torch.full(
        (batch_size, params.n_segments, max(params.slate_size, 1)),
        -1,
        dtype=torch.long,
        device=params.device,
    )


def step_seed(seed: int, t: int) -> int:
    """The generator seed of period ``t`` of an evaluation stream (common random numbers)."""
    return (seed * 1_000_003 + t * 7919 + 12345) % (2**63 - 1)
