"""The fluid sales-based linear program of docs/model.md ("The fluid benchmark"), in Pyomo.

Random demand is replaced by its mean. For segment k, product i and period t,
``alpha[t,k,i]`` is the no-purchase-scaled mass of "offered and recommended",
``beta[t,k,i]`` of "offered, not recommended" and ``y[t,k]`` the no-purchase mass, so that
``alpha / y`` is how often i is on segment k's slate. Each constraint family is one named
function whose docstring states its algebra; :func:`build_fluid_model` is the list of
calls. The same data (:class:`FluidData`) feeds the bulk matrix path in
``coordopt.solvers.highs_bulk``, whose objective is tested equal to this model's.

Periods of the Pyomo model are ``1..H`` (local); with a :class:`FluidStart` at absolute
period ``t0`` (0-based, as in ``SimState.t``), local period ``t`` is absolute ``t0 + t - 1``
and ``H = T - t0``. Discounting is relative to the start: ``gamma^(t-1)``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np
import pyomo.environ as pyo

from coordopt.choice import best_revenue_slates
from coordopt.economics import PERIOD_FLOWS, Flow, unit_values
from coordopt.instance import Instance, Stockout, instance_values
from coordopt.periods import discount_factors


class FluidVariant(enum.StrEnum):
    """Which fluid program to build.

    COORDINATED: recommendations and orders planned jointly (the bound of docs/model.md).
    SILOED_SLATES: slates fixed to the static revenue-maximising ones, inventory planned
    around them. UNLIMITED_STOCK: the marketing-only plan, revenue with no inventory.
    """

    COORDINATED = "coordinated"
    SILOED_SLATES = "siloed-slates"
    UNLIMITED_STOCK = "unlimited-stock"


@dataclass(frozen=True, eq=False)
class FluidStart:
    """A mid-horizon state to plan from (what MPC sees).

    ``t0``: absolute period about to start (0-based, ``SimState.t``); ``on_hand (N,)``: end
    inventory of period ``t0 - 1``; ``pipeline (N, W)``: ``pipeline[i, j]`` units of product
    i arriving at the start of period ``t0 + j``.
    """

    t0: int
    on_hand: np.ndarray
    pipeline: np.ndarray

    def stock(self, n_products: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """``(on_hand (N,), arrivals (horizon, N))``: the start stock and the pipeline as
        fixed arrivals at the start of each of the next ``horizon`` periods (row 0 = ``t0``)."""
        on_hand = np.asarray(self.on_hand, dtype=float).reshape(n_products)
        pipeline = np.asarray(self.pipeline, dtype=float).reshape(n_products, -1)
        if (on_hand < 0).any() or (pipeline < 0).any():
            raise ValueError("start state has negative on-hand or pipeline quantities")
        arrivals = np.zeros((horizon, n_products))
        width = min(horizon, pipeline.shape[1])
        arrivals[:width] = pipeline[:, :width].T
        return on_hand, arrivals


class FluidOptions(TypedDict, total=False):
    """The options that pick a fluid program (the keywords of :func:`fluid_data`)."""

    variant: str | FluidVariant
    start: FluidStart | None
    integer_orders: bool
    integer_quantities: bool


@dataclass(frozen=True, eq=False)
class FluidData:
    """Every array the fluid program needs, over the ``H`` remaining periods.

    Shapes: products ``(N,)``, segments ``(M,)``, attractions ``(M, N)``, per period
    ``(H,)``, ``(H, M)`` (``arrival_rate``) or ``(H, N)``. Fields named as in
    :class:`~coordopt.instance.Instance` are taken from it by name. ``arrivals[t, i]`` are fixed pipeline arrivals at the start of
    local period ``t`` (0-based row). ``big_m[t, i]`` bounds a useful order placed in local
    period ``t`` (used only with order indicators).
    """

    variant: FluidVariant
    t0: int
    horizon: int  # H, remaining periods
    n_products: int
    n_segments: int
    slate_size: int  # effective: min(K, N)
    hidden: bool
    unit_value: dict[Flow, np.ndarray]  # money per unit of each flow (economics.unit_values)
    max_order: np.ndarray  # inf where uncapped
    lead_time: np.ndarray  # int
    on_hand: np.ndarray
    arrivals: np.ndarray  # (H, N)
    discount: np.ndarray  # (H,) gamma^(t-1), local
    arrival_rate: np.ndarray  # (H, M), the remaining periods' rates
    no_purchase: np.ndarray
    rec_attraction: np.ndarray
    base_attraction: np.ndarray
    warehouse_capacity: float | None
    slate_mask: np.ndarray | None  # (M, N) bool, the fixed slates of SILOED_SLATES
    big_m: np.ndarray  # (H, N)
    order_indicators: bool  # z variables exist (fixed costs or integer_orders)
    integer_orders: bool  # z binary
    integer_quantities: bool  # q integer

    @property
    def has_inventory(self) -> bool:
        return self.variant is not FluidVariant.UNLIMITED_STOCK


def max_demand_rate(inst: Instance) -> np.ndarray:
    """Largest possible mean demand per period of each product, ``(N,)``.

    ``sum_k max_t lambda_kt w^R_ki / (w_k0 + w^R_ki)``: product i recommended and alone in
    the choice set in the peak period, the most it can draw under the multinomial logit in
    either stockout mode.
    """
    w = inst.rec_attraction
    peak = inst.arrival_rate.max(axis=0)
    return (peak[:, None] * w / (inst.no_purchase[:, None] + w)).sum(axis=0)


def fluid_data(
    inst: Instance,
    *,
    variant: str | FluidVariant = FluidVariant.COORDINATED,
    start: FluidStart | None = None,
    integer_orders: bool = False,
    integer_quantities: bool = False,
) -> FluidData:
    """Collect the arrays of the fluid program from ``inst`` (and a mid-horizon ``start``).

    The big-M of an order placed in local period t is ``max_order`` when finite, else the
    most the product can sell after it arrives, ``max_demand_rate * (H - t - L)`` (0-based
    t): ordering more than can ever be sold only pays when discounted salvage exceeds the
    unit cost, and then the uncapped program is unbounded anyway.
    """
    variant = FluidVariant(variant)
    n, t_total = inst.n_products, inst.horizon
    width = max(1, inst.max_lead_time)
    if start is None:
        start = FluidStart(0, inst.initial_inventory.astype(float), np.zeros((n, width)))
    t0 = int(start.t0)
    if not 0 <= t0 < t_total:
        raise ValueError(f"start period t0={t0} is outside the horizon 0..{t_total - 1}")
    h = t_total - t0
    on_hand, arrivals = start.stock(n, h)
    periods = np.arange(h)
    remaining = np.clip(h - periods[:, None] - inst.lead_time[None, :], 0, None)
    big_m = np.where(
        np.isfinite(inst.max_order)[None, :],
        inst.max_order[None, :],
        max_demand_rate(inst)[None, :] * remaining,
    )
    unit_value = unit_values(inst)
    slate_mask = None
    if variant is FluidVariant.SILOED_SLATES:
        slates, _ = best_revenue_slates(inst)
        slate_mask = np.zeros((inst.n_segments, n), dtype=bool)
        for k, row in enumerate(slates):
            slate_mask[k, row[row >= 0]] = True
    shared = instance_values(inst, FluidData)  # prices, costs, attractions... by name
    shared.update(
        horizon=h,
        slate_size=inst.effective_slate_size,
        discount=discount_factors(inst.discount, h),
        arrival_rate=inst.arrival_rate[t0:],
    )
    return FluidData(
        **shared,
        variant=variant,
        t0=t0,
        n_products=n,
        n_segments=inst.n_segments,
        hidden=inst.stockout is Stockout.HIDDEN,
        unit_value=unit_value,
        on_hand=on_hand,
        arrivals=arrivals,
        slate_mask=slate_mask,
        big_m=big_m,
        order_indicators=bool(integer_orders or unit_value[Flow.PLACED].any()),
        integer_orders=bool(integer_orders),
        integer_quantities=bool(integer_quantities),
    )


# --------------------------------------------------------------------------- families


def define_sets(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Periods ``T = 1..H``, segments ``K = 0..M-1``, products ``I = 0..N-1``."""
    m.T = pyo.RangeSet(1, d.horizon)
    m.K = pyo.RangeSet(0, d.n_segments - 1)
    m.I = pyo.RangeSet(0, d.n_products - 1)


def define_variables(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Choice masses ``alpha, beta (T,K,I)``, ``y (T,K)``; with inventory also orders q,
    sales s, lost sales l, end inventory I ``(T,I)``, and order indicators z if needed."""
    m.alpha = pyo.Var(m.T, m.K, m.I, domain=pyo.NonNegativeReals)
    m.beta = pyo.Var(m.T, m.K, m.I, domain=pyo.NonNegativeReals)
    m.y = pyo.Var(m.T, m.K, domain=pyo.NonNegativeReals)
    if not d.has_inventory:
        return
    q_domain = pyo.NonNegativeIntegers if d.integer_quantities else pyo.NonNegativeReals
    m.q = pyo.Var(m.T, m.I, domain=q_domain)
    m.s = pyo.Var(m.T, m.I, domain=pyo.NonNegativeReals)
    m.l = pyo.Var(m.T, m.I, domain=pyo.NonNegativeReals)
    m.inv = pyo.Var(m.T, m.I, domain=pyo.NonNegativeReals)
    if d.order_indicators:
        z_domain = pyo.Binary if d.integer_orders else pyo.UnitInterval
        m.z = pyo.Var(m.T, m.I, domain=z_domain)


def define_expected_demand(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Expected demand ``x[t,k,i] = w^R_ki alpha[t,k,i] + w^N_ki beta[t,k,i]`` (an expression)."""
    wr, wn = d.rec_attraction, d.base_attraction

    def rule(m: pyo.ConcreteModel, t: int, k: int, i: int) -> pyo.Expression:
        return wr[k, i] * m.alpha[t, k, i] + wn[k, i] * m.beta[t, k, i]

    m.x = pyo.Expression(m.T, m.K, m.I, rule=rule)


def define_choice_balance(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Choice balance: ``w_k0 y[t,k] + sum_i x[t,k,i] = lambda_kt`` for every t, k.

    Every arriving customer of segment k either buys some product or buys nothing.
    """

    def rule(m: pyo.ConcreteModel, t: int, k: int) -> pyo.Expression:
        lam = d.arrival_rate[t - 1, k]
        return d.no_purchase[k] * m.y[t, k] + sum(m.x[t, k, i] for i in m.I) == lam

    m.choice_balance = pyo.Constraint(m.T, m.K, rule=rule)


def define_offer_once(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Each product at most once: ``alpha[t,k,i] + beta[t,k,i] = y[t,k]`` in "lost" mode
    (every product stays in the choice set), ``<= y[t,k]`` in "hidden" mode (it may leave)."""

    def rule(m: pyo.ConcreteModel, t: int, k: int, i: int) -> pyo.Expression:
        lhs = m.alpha[t, k, i] + m.beta[t, k, i]
        return lhs <= m.y[t, k] if d.hidden else lhs == m.y[t, k]

    m.offer_once = pyo.Constraint(m.T, m.K, m.I, rule=rule)


def define_slate_capacity(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Slate size: ``sum_i alpha[t,k,i] <= K y[t,k]`` (at most K recommended on average)."""

    def rule(m: pyo.ConcreteModel, t: int, k: int) -> pyo.Expression:
        return sum(m.alpha[t, k, i] for i in m.I) <= d.slate_size * m.y[t, k]

    m.slate_capacity = pyo.Constraint(m.T, m.K, rule=rule)


def define_fixed_slates(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Siloed slates S_k: ``alpha[t,k,i] = 0`` for i not in S_k and ``beta[t,k,i] = 0`` for i
    in S_k (fixed variables), so ``alpha / y = 1{i in S_k}`` whenever i is offered."""
    assert d.slate_mask is not None
    for t in m.T:
        for k in m.K:
            for i in m.I:
                (m.beta if d.slate_mask[k, i] else m.alpha)[t, k, i].fix(0.0)


def define_inventory_flow(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Demand split and inventory flow, for every t, i:

    ``s[t,i] + l[t,i] = sum_k x[t,k,i]`` (sales plus lost sales is demand) and
    ``I[t,i] = I[t-1,i] + q[t-L_i,i] + P[t,i] - s[t,i]`` with ``I[0,i]`` the on-hand start
    stock, ``P`` the fixed pipeline arrivals, and no ``q`` term when ``t - L_i < 1`` (orders
    before the start do not exist; the pipeline holds them). ``I >= 0`` keeps sales within
    the stock on hand after arrivals.
    """

    def split(m: pyo.ConcreteModel, t: int, i: int) -> pyo.Expression:
        return m.s[t, i] + m.l[t, i] == sum(m.x[t, k, i] for k in m.K)

    def flow(m: pyo.ConcreteModel, t: int, i: int) -> pyo.Expression:
        return m.inv[t, i] == _on_hand_after_arrivals(m, d, t, i) - m.s[t, i]

    m.demand_split = pyo.Constraint(m.T, m.I, rule=split)
    m.inventory_flow = pyo.Constraint(m.T, m.I, rule=flow)


def _on_hand_after_arrivals(m: pyo.ConcreteModel, d: FluidData, t: int, i: int) -> pyo.Expression:
    """``I[t-1,i] + q[t-L_i,i] + P[t,i]`` (start stock in period 1)."""
    expr = m.inv[t - 1, i] if t > 1 else float(d.on_hand[i])
    expr = expr + float(d.arrivals[t - 1, i])
    lag = t - int(d.lead_time[i])
    if lag >= 1:
        expr = expr + m.q[lag, i]
    return expr


def define_warehouse_capacity(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Warehouse: ``sum_i (I[t-1,i] + q[t-L_i,i] + P[t,i]) <= cap`` (on hand after arrivals)."""
    if d.warehouse_capacity is None:
        return
    cap = d.warehouse_capacity

    def rule(m: pyo.ConcreteModel, t: int) -> pyo.Expression:
        return sum(_on_hand_after_arrivals(m, d, t, i) for i in m.I) <= cap

    m.warehouse_capacity = pyo.Constraint(m.T, rule=rule)


def define_max_order(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Order caps as variable bounds: ``q[t,i] <= max_order_i`` where finite."""
    for i in m.I:
        cap = float(d.max_order[i])
        if math.isfinite(cap):
            for t in m.T:
                m.q[t, i].setub(cap)


def define_order_indicators(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Order indicators: ``q[t,i] <= M[t,i] z[t,i]`` with z binary (MILP) or in [0,1] (its
    LP relaxation, the bound of docs/model.md); M from :func:`fluid_data`."""
    if not d.order_indicators:
        return

    def rule(m: pyo.ConcreteModel, t: int, i: int) -> pyo.Expression:
        return m.q[t, i] <= float(d.big_m[t - 1, i]) * m.z[t, i]

    m.order_indicator = pyo.Constraint(m.T, m.I, rule=rule)


FLOW_VARIABLES: dict[Flow, str] = {
    Flow.SOLD: "s",
    Flow.ORDERED: "q",
    Flow.HELD: "inv",
    Flow.LOST: "l",
    Flow.PLACED: "z",
    Flow.LEFT_OVER: "inv",  # in the last period
}
"""The variable that carries each money flow of :mod:`coordopt.economics` (the bulk path's
column blocks have the same names)."""


def define_objective(m: pyo.ConcreteModel, d: FluidData) -> None:
    """Discounted profit, maximised: with ``u_f`` the money per unit of flow f
    (:func:`coordopt.economics.unit_values`) and :data:`FLOW_VARIABLES`,

    ``sum_t gamma^(t-1) sum_i [u_sold s + u_ordered q + u_held I + u_lost l + u_placed z]
    + gamma^(H-1) sum_i u_left_over I[H,i]`` (``p s - c q - h I - b l - F z + v I_H``), each
    period flow where its variable exists and its money is not zero. An order placed in t with
    ``t + L_i > H`` never arrives: it costs and is worth nothing. Without inventory
    (UNLIMITED_STOCK) everything demanded is sold: ``sum_t gamma^(t-1) sum_{k,i} u_sold x[t,k,i]``.
    """
    g, u = d.discount, d.unit_value
    if not d.has_inventory:
        sold = u[Flow.SOLD]
        revenue = sum(g[t - 1] * sold[i] * m.x[t, k, i] for t in m.T for k in m.K for i in m.I)
        m.objective = pyo.Objective(expr=revenue, sense=pyo.maximize)
        return
    flows = [
        (u[f], var) for f in PERIOD_FLOWS if (var := m.component(FLOW_VARIABLES[f])) is not None
    ]
    terms = []
    for t in m.T:
        for i in m.I:
            period = sum(value[i] * var[t, i] for value, var in flows if value[i] != 0)
            terms.append(g[t - 1] * period)
    last, left_over = d.horizon, m.component(FLOW_VARIABLES[Flow.LEFT_OVER])
    salvage = g[last - 1] * sum(u[Flow.LEFT_OVER][i] * left_over[last, i] for i in m.I)
    m.objective = pyo.Objective(expr=sum(terms) + salvage, sense=pyo.maximize)


# --------------------------------------------------------------------------- model


def build_fluid_model(inst: Instance, **options: Unpack[FluidOptions]) -> pyo.ConcreteModel:
    """The fluid program of ``inst`` as a Pyomo model (the readable specification).

    ``options`` are :func:`fluid_data`'s: ``variant`` "coordinated" (default),
    "siloed-slates" or "unlimited-stock" (see :class:`FluidVariant`); ``start``: plan from a
    mid-horizon state over the remaining periods; ``integer_orders``: binary order
    indicators (MILP; with fixed order costs the default is their LP relaxation);
    ``integer_quantities``: integer order quantities. The data used is kept as
    ``model.fluid_data``.
    """
    d = fluid_data(inst, **options)
    m = pyo.ConcreteModel(name=f"fluid[{inst.name},{d.variant.value}]")
    define_sets(m, d)
    define_variables(m, d)
    define_expected_demand(m, d)
    define_choice_balance(m, d)
    define_offer_once(m, d)
    define_slate_capacity(m, d)
    if d.variant is FluidVariant.SILOED_SLATES:
        define_fixed_slates(m, d)
    if d.has_inventory:
        define_inventory_flow(m, d)
        define_warehouse_capacity(m, d)
        define_max_order(m, d)
        define_order_indicators(m, d)
    define_objective(m, d)
    m.fluid_data = d
    return m
