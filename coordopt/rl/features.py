"""Observations of the agents, normalised so that one set of weights fits any instance.

Quantities in units are divided by a per-product *demand scale* ``mu_i`` (the mean demand
for product i when it alone is recommended to every segment), money by the mean price, so
the features of a 2-product toy and a 1000-product catalog live on the same scale.

Information structure (``information``):

- ``coordinated``: operations also sees last period's recommendations (share of segments
  that showed each product, and the demand uplift they caused); marketing also sees stock
  (available units, inventory position, out-of-stock flag).
- ``siloed``: neither sees the other's levers.

The critic always sees the whole firm (the coordinated operations features plus
segment data): centralised training, decentralised execution.

The optimiser's plan (``plan``, optional): the replenishment agent and the critic see the
bid-price teacher's target inventory position of the period and the order that reaches it from
the current position, in order bins (the teacher's own order bin, up to rounding); the
recommendation agent each product's stock-adjusted margin (price less the teacher's stock
value, the margin its slates maximise) -- the "regularisation target" as an input, from the
teacher's initial solve (:func:`teacher_plan`). The recommendation agent also gets, per
environment, the two things the teacher's slates are made of (:func:`teacher_slate_inputs`):
every product's margin at the current stock (a product without stock is worth its lost sale)
and every segment's Dinkelbach threshold ``R*_k`` at those margins, from which
:func:`teacher_gain` rebuilds the gains whose top-``K`` positive entries are the teacher's slate.

The teacher's decisions (``guide``, optional): with any teacher that decides from the state
alone (a Markov policy), both agents see what it does this period -- its order bin per product
and its slates (:func:`decision_labels`) -- which the networks add to their logits with a
learned weight: the agents are a residual around the teacher.

Every feature is declared once, by name, in a :class:`Part` (a named list of features computed
together); each input of the networks concatenates parts (:func:`input_parts`), so its width is
counted from the names, never written by hand, and checkpoints store the names
(:func:`feature_names`) so that agents trained on other features are refused naming them.

Seasonal demand: both agents see each product's expected demand of the current period
relative to its horizon mean (operations also the next period's), from the per-period arrival
rates ``lambda_kt``; with constant rates these features are constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from coordopt.choice import best_slates
from coordopt.rl.distributions import order_bins
from coordopt.simulator import Action, SimParams, SimState

Tensor = torch.Tensor

INFORMATION = ("coordinated", "siloed")


@dataclass(frozen=True)
class Part:
    """A named list of features computed together; a network's input concatenates parts.

    A feature's full name is ``part.feature``, so the names of an input never repeat (the
    critic sees both departments' ``last_demand``). A part's width is the length of its list.
    """

    name: str
    features: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> tuple[str, ...]:
        """The full names, ``part.feature``, in order."""
        return tuple(f"{self.name}.{f}" for f in self.features)

    def ordered(self, values: Mapping[str, Any]) -> list[Any]:
        """``values`` (keyed by feature) in the declared order; every feature exactly once."""
        if set(values) != set(self.features):
            raise ValueError(
                f"the features of part '{self.name}' computed are {sorted(values)}, "
                f"declared {sorted(self.features)}"
            )
        return [values[f] for f in self.features]

    def stack(self, values: Mapping[str, Tensor]) -> Tensor:
        """The part's feature tensors ``(...)`` stacked in the declared order, ``(..., width)``."""
        return torch.stack(self.ordered(values), dim=-1)


PRODUCT = Part(
    "product",
    (
        "price",
        "unit_cost",
        "holding_cost",
        "lost_sale_penalty",
        "salvage_value",
        "fixed_order_cost",
        "lead_time",
        "log_demand_scale",
        "margin_rate",
    ),
)
"""Static per product: the economics (money / mean price), lead time, demand scale."""
OPS = Part(
    "ops",
    (
        "on_hand",
        "pipeline",
        "arriving",
        "position",
        "last_sales",
        "last_demand",
        "last_orders",
        "periods_to_go",
        "arrives_late",
        "season_now",
        "season_next",
    ),
)
"""What operations sees of each product every period (stock, orders, sales, time, season)."""
OPS_COORD = Part("ops_coord", ("shown_share", "shown_uplift"))
"""Last period's recommendations of each product (coordinated operations, the critic)."""
MKT = Part("mkt", ("last_demand", "periods_to_go", "season_now"))
"""What marketing sees of each product every period."""
MKT_COORD = Part("mkt_coord", ("incoming", "position", "stocked_out"))
"""Each product's stock (coordinated marketing)."""
OPS_PLAN = Part("ops_plan", ("target", "order_gap"))
"""The teacher's target position and the order (in bins) that reaches it (``plan``)."""
MKT_PLAN = Part("mkt_plan", ("margin",))
"""The teacher's stock-adjusted margin (``plan``)."""
SEGMENT = Part("segment", ("relative_arrivals", "no_purchase_share", "slate_size"))
"""Static per segment."""
PAIR = Part("pair", ("base_share", "rec_share", "log_uplift", "gain"))
"""Static per (segment, product): choice shares and the recommendation's gain."""
GLOBAL = Part("global", ("periods_to_go", "progress"))
"""The period, once per environment."""


def input_parts(information: str, plan: bool = False) -> dict[str, tuple[Part, ...]]:
    """The parts each input of the agents' networks concatenates, in order: per product
    ``ops`` (replenishment), ``mkt`` (recommendation) and ``critic`` (the centralised critic:
    the whole firm, whatever the information structure); ``segment``, ``pair``, ``global``."""
    coord = information == "coordinated"
    ops_plan = (OPS_PLAN,) if plan else ()
    return {
        "ops": (PRODUCT, OPS) + ((OPS_COORD,) if coord else ()) + ops_plan,
        "mkt": (PRODUCT, MKT) + ((MKT_COORD,) if coord else ()) + ((MKT_PLAN,) if plan else ()),
        "critic": (PRODUCT, OPS, OPS_COORD, MKT, *ops_plan),
        "segment": (SEGMENT,),
        "pair": (PAIR,),
        "global": (GLOBAL,),
    }


def feature_names(information: str, plan: bool = False) -> dict[str, list[str]]:
    """The full names of every input's features, in order (their count is the input's width;
    checkpoints store them, :mod:`coordopt.rl.checkpoint`)."""
    return {
        key: [name for part in parts for name in part.names]
        for key, parts in input_parts(information, plan).items()
    }


@dataclass(frozen=True, eq=False)
class Plan:
    """The teacher's plan per period, ``(T + 1, N)`` each (row ``T``, after the horizon, 0)."""

    target: Tensor  # target inventory position / ((L + 1) mu)
    margin: Tensor  # (g_t p_i - stock value_ti) / mean price
    lost: Tensor  # -g_t b_i / mean price: the margin of a product without stock
    wr: Tensor  # (M, N) float64 attraction of a recommended product
    wn: Tensor  # (M, N) float64 attraction of a product only offered
    w0: Tensor  # (M,) float64 no-purchase attraction
    hidden: bool  # stock-outs hidden (a product without stock is not offered)


def teacher_plan(params: SimParams, teacher: object = None) -> Plan:
    """The bid-price teacher's target positions and stock-adjusted margins from its initial
    catalog solve (the same targets and values its decisions use with ``reoptimize_every=0``).

    ``teacher``: a bid-price policy of ``params`` already built (its initial solve is reused);
    any other value builds one."""
    from coordopt.solvers.bidprice import BidPricePolicy  # the solver layer, only when asked

    reuse = isinstance(teacher, BidPricePolicy) and teacher.params is params
    bp: Any = teacher if reuse else BidPricePolicy(params, reoptimize_every=0)
    bp.reset(0)  # back to the initial solve
    plan = bp.plan  # a BidPricePlan
    if plan.t0 != 0:
        raise ValueError(f"the teacher's plan starts at period {plan.t0}, not 0")
    mu = demand_scale(params).double()
    cover = (params.lead_time.double() + 1) * mu
    pscale = float(params.price.mean().clamp(min=1e-6))
    rows = [plan.target.double() / cover, plan.margin / pscale, plan.lost / pscale]
    target, margin, lost = (torch.cat([x, torch.zeros_like(x[:1])]).to(params.dtype) for x in rows)
    return Plan(target, margin, lost, plan.wr, plan.wn, plan.w0, bool(params.hidden))


def teacher_slate_inputs(
    plan: Plan, params: SimParams, state: SimState, target: Tensor
) -> tuple[Tensor, Tensor]:
    """The teacher's margins ``(B, N)`` at the state's stock, its own orders up to ``target``
    (units) counted, and each segment's threshold ``R*_k``, ``(B, M)``, of its best-revenue
    slates at those margins (:func:`~coordopt.choice.best_slates`, in float64): the
    rules of :meth:`~coordopt.solvers.bidprice.BidPricePolicy.act`."""
    from coordopt.solvers.bidprice import order_up_to, stock_margins  # only with a plan

    orders = order_up_to(target, state.inventory_position(), params.max_order)
    margin = stock_margins(params, state, orders, plan.margin[state.t], plan.lost[state.t])
    m = margin.double()
    rate = m.new_zeros(m.shape[0], plan.w0.shape[0])  # unused: thresholds only
    choice = best_slates(m, rate, plan.wr, plan.wn, plan.w0, params.slate_size, plan.hidden)
    return margin, choice.rate.to(margin.dtype)


def teacher_gain(plan: Plan, margin: Tensor, threshold: Tensor) -> Tensor:
    """The teacher's gain of recommending each product to each segment, ``(..., M, N)``, from
    margins ``(..., N)`` and thresholds ``(..., M)``, scaled so that each segment's largest
    gain in absolute value is 1. Its top-``K`` positive entries are the teacher's slate:
    ``(m_i - R*_k)(w^R_ki - w^N_ki)`` (stock-outs shown), or in hidden mode
    ``(m_i - R*_k) w^R_ki - ((m_i - R*_k) w^N_ki)^+`` (the gain over offering it or not)."""
    diff = margin.unsqueeze(-2) - threshold.unsqueeze(-1)
    wr, wn = plan.wr.to(diff.dtype), plan.wn.to(diff.dtype)
    gain = diff * wr - (diff * wn).clamp_(min=0.0) if plan.hidden else diff * (wr - wn)
    return gain / gain.abs().amax(-1, keepdim=True).clamp(min=1e-12)


@dataclass(frozen=True, eq=False)
class Context:
    """Static, instance-derived tensors shared by the agents (rebuilt for any instance)."""

    params: SimParams
    demand_scale: Tensor  # (N,) mu_i, clamped below
    order_step: Tensor  # (N,) units per order bin
    order_valid: Tensor  # (N, G) bool: bin within max_order
    n_valid_bins: Tensor  # (N,) long
    static_product: Tensor  # (N, len(PRODUCT))
    segment: Tensor  # (M, len(SEGMENT))
    pair: Tensor  # (M, N, len(PAIR))
    uplift_demand: Tensor  # (M, N) lambda_k (rec share - base share) / mu_i
    season: Tensor  # (T + 1, N) expected demand of period t / its horizon mean; 0 after T
    reward_scale: float
    plan: Plan | None = None  # the teacher's plan, when the agents observe it
    guide: Any = None  # the teacher whose decisions the agents see (a Markov Policy), or None

    @property
    def bins(self) -> int:
        """Order bins per product (``G``)."""
        return int(self.order_valid.shape[1])


@dataclass(frozen=True, eq=False)
class Observation:
    """What each agent (and the critic) sees in one period, batched over ``B``."""

    # the inputs of the networks, their features named by feature_names
    ops: Tensor  # (B, N, ops width)
    mkt: Tensor  # (B, N, mkt width)
    critic: Tensor  # (B, N, critic width)
    glob: Tensor  # (B, len(GLOBAL))
    # with the teacher's plan (else None): what its slates are made of (teacher_gain)
    margin: Tensor | None = None  # (B, N) margins at the current stock / mean price
    threshold: Tensor | None = None  # (B, M) Dinkelbach thresholds R*_k at those margins
    # with the teacher's decisions (ctx.guide, else None): its order bins and slates
    guide_bins: Tensor | None = None  # (B, N) long
    guide_slates: Tensor | None = None  # (B, M, K) long, -1: empty slot

    def map(self, fn: Callable[[Tensor], Tensor]) -> Observation:
        """``fn`` applied to every field (indexing, slicing, adding a time dimension)."""
        return self.join([self], lambda xs, dim: fn(xs[0]), 0)

    @staticmethod
    def join(parts: Sequence[Observation], how: Callable[..., Tensor], dim: int) -> Observation:
        """The observations of ``parts`` joined field by field with ``how`` (``torch.stack``
        or ``torch.cat``) along ``dim``; a field that is ``None`` stays ``None``."""
        values: dict[str, Any] = {}
        for f in fields(Observation):
            column = [getattr(o, f.name) for o in parts]
            values[f.name] = None if column[0] is None else how(column, dim=dim)
        return Observation(**values)

    def index(self, idx: Tensor) -> Observation:
        """The observations of a subset of environments."""
        return self.map(lambda x: x[idx])

    def period(self, t: int | slice) -> Observation:
        """Period ``t`` (or periods, a slice) of time-major observations ``(T, B, ...)``."""
        return self.map(lambda x: x[t])

    def over_time(self, idx: Tensor) -> Observation:
        """The same, of time-major fields ``(T, B, ...)``: environments ``idx`` of every period."""
        return self.map(lambda x: x[:, idx])


def expected_arrivals(params: SimParams) -> Tensor:
    """``lambda_kt``, ``(T, M)``: expected customers of every segment in every period (a rate
    constant in time is broadcast over the horizon; seasonal instances give one per period)."""
    inst = params.instance
    lam = np.broadcast_to(
        np.asarray(inst.arrival_rate, dtype=np.float64), (inst.horizon, inst.n_segments)
    )
    return torch.tensor(lam, dtype=params.dtype, device=params.device)


def mean_arrivals(params: SimParams) -> Tensor:
    """Each segment's arrival rate averaged over the horizon, ``(M,)``."""
    return expected_arrivals(params).mean(0)


def demand_scale(params: SimParams) -> Tensor:
    """``mu_i = sum_k lambda_k w^R_ki / (w_k0 + sum_j w^N_kj + w^R_ki - w^N_ki)``, clamped >= 0.25.

    The demand product i draws when it alone is recommended everywhere: an upper-end
    typical demand that sets the unit of every quantity feature and the order bins.
    """
    uplift = params.uplift_flat.reshape(params.n_segments, params.n_products)
    rec = params.base_attraction + uplift
    denom = (params.no_purchase + params.base_total).unsqueeze(1) + uplift
    mu = (mean_arrivals(params).unsqueeze(1) * rec / denom).sum(0)
    return mu.clamp(min=0.25)


def reward_scale(params: SimParams) -> float:
    """Fixed reward unit: the margin ``sum_i (p_i - c_i)^+ mu_i`` of one period (>= 1e-6)."""
    margin = (params.price - params.unit_cost).clamp(min=0)
    value = float((margin * demand_scale(params)).sum())
    return max(value, 1e-3 * float((params.price * demand_scale(params)).sum()), 1e-6)


def season(arrivals: Tensor, share: Tensor) -> Tensor:
    """Each product's expected demand in period t relative to its horizon mean, ``(T + 1, N)``
    (row ``T``, after the horizon, is 0): ``sum_k lambda_kt share_ki / mean_t(...)``. All ones
    when arrivals are constant; peaks and troughs of seasonal demand otherwise."""
    demand = arrivals @ share  # (T, N)
    rel = demand / demand.mean(0).clamp(min=1e-12)
    return torch.cat([rel, torch.zeros_like(rel[:1])])


def build_context(
    params: SimParams, bins: int, plan: bool = False, teacher: object = None, guide: object = None
) -> Context:
    """Demand scale, order bins and the static features of an instance (``plan``: with the
    teacher's plan, :func:`teacher_plan`, from ``teacher`` if it is a bid-price policy;
    ``guide``: a policy whose decisions the agents see, :func:`decision_labels`)."""
    mu = demand_scale(params)
    lead = params.lead_time.to(params.dtype)
    cover = (lead + 1) * mu
    qmax = torch.ceil(cover + 4 * torch.sqrt(cover) + 2)
    qmax = torch.minimum(qmax, params.max_order.clamp(min=1))
    step = torch.clamp(torch.ceil(qmax / (bins - 1)), min=1)
    grid = torch.arange(bins, device=params.device, dtype=params.dtype)
    valid = grid.unsqueeze(0) * step.unsqueeze(1) <= params.max_order.unsqueeze(1)
    pscale = float(params.price.mean().clamp(min=1e-6))
    static = PRODUCT.stack(
        {
            "price": params.price / pscale,
            "unit_cost": params.unit_cost / pscale,
            "holding_cost": params.holding_cost / pscale,
            "lost_sale_penalty": params.lost_sale_penalty / pscale,
            "salvage_value": params.salvage_value / pscale,
            "fixed_order_cost": params.fixed_order_cost / (pscale * mu),
            "lead_time": lead / 4.0,
            "log_demand_scale": torch.log1p(mu) / 4.0,
            "margin_rate": (params.price - params.unit_cost) / params.price.clamp(min=1e-6),
        }
    )
    m, n = params.n_segments, params.n_products
    uplift = params.uplift_flat.reshape(m, n)
    base_den = (params.no_purchase + params.base_total).unsqueeze(1)
    base_share = params.base_attraction / base_den
    rec_share = (params.base_attraction + uplift) / (base_den + uplift)
    arrivals = expected_arrivals(params)  # (T, M)
    lam = arrivals.mean(0).unsqueeze(1)
    gain = lam * (rec_share - base_share) * (params.price - params.unit_cost) / pscale
    gain = gain / gain.abs().mean().clamp(min=1e-6)
    log_uplift = torch.log1p(uplift / params.base_attraction.clamp(min=1e-6)).clamp(max=5.0)
    pair = PAIR.stack(
        {
            "base_share": base_share,
            "rec_share": rec_share,
            "log_uplift": log_uplift,
            "gain": gain,
        }
    )
    segment = SEGMENT.stack(
        {
            "relative_arrivals": lam[:, 0] / lam.mean(),
            "no_purchase_share": params.no_purchase / (params.no_purchase + params.base_total),
            "slate_size": torch.full_like(lam[:, 0], math.log1p(params.slate_size) / 2),
        }
    )
    return Context(
        params=params,
        demand_scale=mu,
        order_step=step,
        order_valid=valid,
        n_valid_bins=valid.sum(1),
        static_product=static,
        segment=segment,
        pair=pair,
        uplift_demand=lam * (rec_share - base_share) / mu,
        season=season(arrivals, rec_share),
        reward_scale=reward_scale(params),
        plan=teacher_plan(params, teacher) if plan else None,
        guide=guide,
    )


def decision_labels(ctx: Context, action: Action) -> tuple[Tensor, Tensor]:
    """A policy's decision in the agents' terms: its order bins ``(B, N)`` (each order rounded
    to the nearest bin, :func:`~coordopt.rl.distributions.order_bins`) and its slates
    ``(B, M, K)`` with exactly ``K`` slots (``-1``: empty)."""
    p = ctx.params
    k = max(p.slate_size, 1)
    bins = order_bins(action.orders.to(p.dtype), ctx.order_step, ctx.n_valid_bins)
    slates = action.slates.long()
    if slates.shape[-1] >= k:
        return bins, slates[..., :k]
    pad = slates.new_full((*slates.shape[:-1], k - slates.shape[-1]), -1)
    return bins, torch.cat([slates, pad], -1)


def recommendation_signals(ctx: Context, slates: Tensor) -> Tensor:
    """Per product, ``(B, N, 2)``: the share of segments whose slate shows it and the demand
    uplift those slates cause (``sum_k r_ki * uplift_demand_ki``), from the ``B x M x K``
    slate entries (``-1``: empty slot) without building the ``B x M x N`` indicator."""
    b, m, k = slates.shape
    n = ctx.params.n_products
    shown = (slates >= 0).to(ctx.params.dtype).reshape(b, m * k)
    idx = slates.clamp(min=0)
    uplift = ctx.uplift_demand.gather(1, idx.permute(1, 0, 2).reshape(m, b * k))  # (M, B*K)
    uplift = uplift.reshape(m, b, k).permute(1, 0, 2).reshape(b, m * k) * shown
    flat = idx.reshape(b, m * k)
    zeros = torch.zeros(b, n, dtype=ctx.params.dtype, device=slates.device)
    share = zeros.scatter_add(1, flat, shown) / m
    return OPS_COORD.stack(
        {"shown_share": share, "shown_uplift": zeros.scatter_add(1, flat, uplift)}
    )


def observe(ctx: Context, state: SimState, last_slates: Tensor, information: str) -> Observation:
    """Features of every agent at the start of a period (``last_slates``: previous period's)."""
    p = ctx.params
    mu = ctx.demand_scale
    b, n = state.on_hand.shape
    lead = p.lead_time.to(p.dtype)
    pipe = state.pipeline.sum(-1)
    position = state.on_hand + pipe
    incoming = state.on_hand + state.pipeline[..., 0]
    togo = (p.horizon - state.t) / p.horizon
    late = (state.t + lead >= p.horizon).to(p.dtype).expand(b, n)
    # expected demand of this period and the next relative to the mean (seasonal demand)
    now, after = ctx.season[state.t].expand(b, n), ctx.season[state.t + 1].expand(b, n)
    parts = {
        PRODUCT: ctx.static_product.expand(b, n, -1),
        OPS: OPS.stack(
            {
                "on_hand": state.on_hand / mu,
                "pipeline": pipe / mu,
                "arriving": state.pipeline[..., 0] / mu,
                "position": position / ((lead + 1) * mu),
                "last_sales": state.last_sales / mu,
                "last_demand": state.last_demand / mu,
                "last_orders": state.last_orders / mu,
                "periods_to_go": torch.full_like(state.on_hand, togo),
                "arrives_late": late,
                "season_now": now,
                "season_next": after,
            }
        ),
        OPS_COORD: recommendation_signals(ctx, last_slates),
        MKT: MKT.stack(
            {
                "last_demand": state.last_demand / mu,
                "periods_to_go": torch.full_like(state.on_hand, togo),
                "season_now": now,
            }
        ),
        MKT_COORD: MKT_COORD.stack(
            {
                "incoming": incoming / mu,
                "position": position / ((lead + 1) * mu),
                "stocked_out": (incoming <= 0).to(p.dtype),
            }
        ),
    }
    margin = threshold = None
    if ctx.plan is not None:
        plan = ctx.plan
        target = plan.target[state.t].expand(b, n)
        # the order that reaches the target, in order bins (/ the last bin): the teacher's bin
        units = target * (lead + 1) * mu
        gap = (units - position) / (ctx.order_step * (ctx.bins - 1))
        parts[OPS_PLAN] = OPS_PLAN.stack({"target": target, "order_gap": gap})
        parts[MKT_PLAN] = MKT_PLAN.stack({"margin": plan.margin[state.t].expand(b, n)})
        margin, threshold = teacher_slate_inputs(plan, p, state, units)
    per_product = input_parts(information, ctx.plan is not None)
    ops, mkt, critic = (
        torch.cat([parts[part] for part in per_product[key]], dim=-1)
        for key in ("ops", "mkt", "critic")
    )
    row = GLOBAL.ordered({"periods_to_go": togo, "progress": state.t / max(p.horizon - 1, 1)})
    glob = torch.tensor([row], device=p.device, dtype=p.dtype).expand(b, len(GLOBAL))
    guide = decision_labels(ctx, ctx.guide.act(state)) if ctx.guide is not None else (None, None)
    return Observation(ops, mkt, critic, glob, margin, threshold, *guide)
