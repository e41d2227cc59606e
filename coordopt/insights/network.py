"""The substitution network: where the optimiser moves demand when a product runs short.

At a representative state -- period ``t`` (default: the middle of the horizon) with every
product in stock -- each product i in turn loses its stock (on hand and arriving now), the
optimiser decides again, and the change of every other product's expected demand per period
(and of the share of customers it is recommended to) is the demand i's shortage moves to it.
Those shifts are the weighted edges ``i -> j`` of a networkx ``DiGraph`` (edge weight: the
demand that moves); a product's weighted in-degree is the demand it backs up.

One demand definition: every state's expected demand is the simulator's
:func:`~coordopt.simulator.demand_rates` (``"hidden"`` mode: a product without stock leaves
every choice set). Two ways to the decisions:

- **stock values** (:func:`stock_value_response`, the catalog-scale optimiser): the bid-price
  rule of :class:`~coordopt.solvers.bidprice.BidPricePolicy` -- each segment's best-revenue
  slate (:func:`~coordopt.choice.best_slates`) at margins ``g_t p - mu_t``, a product
  without stock at its lost-sale value ``-g_t b`` -- with the stock values ``mu`` of
  :func:`~coordopt.solvers.catalog.solve_catalog`. Removing i's stock changes i's margin
  alone, so only the segments whose slate shows i, or whose slate i's lower margin can
  unsettle (:func:`unsettled_pairs`, a test on arrays over all products at once), are solved
  again: one ``best_slates`` call per segment over those products, then one batched demand
  evaluation per chunk of shortage states; nothing loops over products. Exact with
  ``tolerance=0`` (tests/test_network.py checks it against the policy acting on every
  shortage state); by default a segment that does not show i keeps its slate unless the
  new one earns more than the catalog solve's gap (:data:`SLATE_TOLERANCE`);
- **a policy** (:func:`policy_response`: the exact DP, MPC, trained agents): the policy acts
  on a batch holding the state and one copy of it per product with that product's stock
  removed. A product whose stock the policy restores within the period (an order with lead
  time 0) is not short, and moves nothing.

Edges below ``min_share`` of the demand a source moves, and beyond its ``max_edges``
largest, are dropped (a shortage also lifts every product of the segment a little through
the logit's denominator: those small edges, kept down to :data:`MIN_SHARE`, tie a category's
products together; what is dropped still counts in the node's ``moved``). :func:`analyse_network` finds the products that back up the most demand, the
communities (Louvain, fixed seed) and their agreement with the product categories (adjusted
Rand index, :func:`adjusted_rand_index`); :func:`agents_agreement` measures how much of the
network's demand shift trained agents reproduce when the product runs short in simulation.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from scipy.special import comb

from coordopt.choice import SlateChoice, best_slates
from coordopt.economics import Flow, unit_values
from coordopt.instance import Instance
from coordopt.io import atomic_write, atomic_write_text, save_figure
from coordopt.policies import Policy, make_policy
from coordopt.simulator import (
    Action,
    SimParams,
    SimState,
    advance,
    available_stock,
    demand_rates,
    reset,
    step_seed,
)
from coordopt.sizes import FULL_LP_CELLS, plan_cells
from coordopt.solution import Plan, slates_from_frequency
from coordopt.solvers.catalog import solve_catalog
from coordopt.solvers.dp import dp_fits
from coordopt.solvers.fluid import solve_fluid

NETWORK_MPC_PRODUCTS = 60
"""Largest catalog whose network the optimiser reference takes from MPC (one fluid re-solve
per product) where the DP does not fit; beyond it, the catalog solver's stock values."""
METHODS = ("fluid", "dp", "mpc", "bidprice")
"""``--method`` values with a network of the optimiser: ``fluid`` picks the reference
(:func:`network_method`), the others force one."""
MIN_SHARE = 0.001
"""Edges below this share of the demand their source moves are dropped."""
MAX_EDGES = 100
"""At most this many edges (the largest) leave a product."""
SLATE_TOLERANCE = 0.005
"""A segment not showing the short product changes its slate only for more than this share of
its revenue per customer (the catalog solve's gap; :func:`stock_value_response`)."""
RESOLUTION = 0.5
"""Louvain resolution of the communities (modularity's own is 1; see :func:`communities`)."""
CHUNK_CELLS = 20_000_000
"""Shortage states x products evaluated at once (bounds memory at 10,000 products)."""


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True, eq=False)
class ShortageResponse:
    """How the decisions move demand when each source product runs short.

    ``demand (N,)`` expected demand per period at the state and ``rec_share (N,)`` the share of
    arriving customers each product is recommended to; per source (``sources (U,)``, product
    indices): ``short_demand (U,)`` the demand the source itself loses and ``moved (U,)`` the
    demand the other products gain; edges ``edge_source, edge_target (E,)`` (product
    indices) with ``edge_demand (E,)`` (the demand that moves, > 0) and ``edge_rec (E,)``
    (the change of the target's recommendation share).
    """

    method: str
    period: int
    demand: np.ndarray
    rec_share: np.ndarray
    sources: np.ndarray
    short_demand: np.ndarray
    moved: np.ndarray
    edge_source: np.ndarray
    edge_target: np.ndarray
    edge_demand: np.ndarray
    edge_rec: np.ndarray

    @property
    def n_edges(self) -> int:
        return len(self.edge_source)


def rec_shares(slates: torch.Tensor, rate: torch.Tensor, n: int) -> torch.Tensor:
    """Share of arriving customers each product is recommended to, ``(B, N)``, from slates
    ``(B, M, K)`` (``-1``: empty slot) and the segments' arrival rates ``(M,)``."""
    b = slates.shape[0]
    weight = (rate / rate.sum())[None, :, None].expand(b, -1, slates.shape[2])
    out = torch.zeros(b, n + 1, dtype=rate.dtype, device=rate.device)
    out.scatter_add_(1, torch.where(slates >= 0, slates, n).reshape(b, -1), weight.reshape(b, -1))
    return out[:, :n]


_COLUMNS: tuple[str, ...] = ("sources", "short_demand", "moved", "edge_source", "edge_target")
_COLUMNS += ("edge_demand", "edge_rec")
"""The per-source and per-edge arrays of :class:`ShortageResponse`, in :class:`_Edges` order."""


class _Edges:
    """Collects the kept edges of shortage states chunk by chunk."""

    def __init__(self, min_share: float, max_edges: int) -> None:
        self.min_share, self.max_edges = min_share, max_edges
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, source: torch.Tensor, shift: torch.Tensor, rec: torch.Tensor) -> None:
        """``shift, rec (C, N)``: changes when product ``source[c]`` runs short."""
        rows = torch.arange(len(source), device=shift.device)
        own = -shift[rows, source]
        gain = shift.clamp(min=0.0)
        gain[rows, source] = 0.0
        moved = gain.sum(dim=1)
        k = min(self.max_edges, gain.shape[1])
        top, target = torch.topk(gain, k, dim=1)
        floor = (self.min_share * moved).clamp(min=1e-12)[:, None]
        keep = top >= floor
        src = source[:, None].expand(-1, k)[keep]
        tgt = target[keep]
        self.parts.append(
            tuple(
                x.cpu().numpy()
                for x in (source, own, moved, src, tgt, top[keep], rec[rows[:, None], target][keep])
            )
        )

    def response(self, method: str, period: int, demand: Any, rec_share: Any) -> ShortageResponse:
        parts = self.parts or [tuple(np.zeros(0) for _ in _COLUMNS)]
        cols = {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(_COLUMNS)}
        for name in ("sources", "edge_source", "edge_target"):
            cols[name] = cols[name].astype(np.int64)
        return ShortageResponse(
            method=method,
            period=period,
            demand=np.asarray(demand, dtype=float),
            rec_share=np.asarray(rec_share, dtype=float),
            **cols,
        )


def _chunk(params: SimParams) -> int:
    return max(1, CHUNK_CELLS // max(params.n_products + params.n_segments, 1))


def unsettled_pairs(
    margin: torch.Tensor,
    lost: torch.Tensor,
    wr: torch.Tensor,
    wn: torch.Tensor,
    w0: torch.Tensor,
    base: SlateChoice,
    hidden: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which (segment, product) pairs ``(M, N)`` need the segment's slate solved again when
    the product runs short, given the best slates ``base`` at ``margin (N,)``, and the
    segment's revenue per customer ``R'`` ``(M, N)`` if it kept its slate.

    Dinkelbach's view (:func:`~coordopt.choice.best_slates`): the slate S is best at
    rate R = N(S)/D(S) iff it is the top-K choice of the lines ``f_j(R) = (m_j - R) u_j``
    (``u = w^R - w^N``) at R. As R falls from the segment's best rate R_k the top-K set stays
    S down to the first breakpoint ``tau_k``: an outside line overtaking an inside one, an
    outside line turning positive while the slate has a free slot, or ("hidden" mode) a
    product entering the offered set (its margin passing R). A shortage of a product i off
    the slate only lowers i's margin (to its lost-sale value, never above its margin: the
    stock value is at most ``g (p + b)``) and lowers R with S fixed to ``R'_ki``; if
    ``R'_ki >= tau_k`` then S is the top-K choice at its own rate, the optimality condition,
    and the segment keeps its slate. Every product on the slate, and every pair with
    ``R'_ki < tau_k``, is solved again: the response is exact.
    """
    m_n = wr.shape[0]
    u = wr - wn
    slates = base.slates[0]  # (M, K)
    rate = base.rate[0]  # (M,) best revenue per customer
    shown = slates >= 0
    inside = torch.zeros(wn.shape, dtype=torch.bool, device=wn.device)
    inside.scatter_(1, slates.clamp(min=0), shown)
    line = margin[None] * u  # f_j(R) = line_j - R u_j
    tau = torch.full((m_n,), -math.inf, dtype=wn.dtype, device=wn.device)
    for slot in range(slates.shape[1]):
        idx = slates[:, slot].clamp(min=0)[:, None]
        u_s, line_s = u.gather(1, idx), line.gather(1, idx)
        steeper = (u > u_s) & ~inside & shown[:, slot : slot + 1]
        cross = torch.where(steeper, (line - line_s) / (u - u_s).clamp(min=1e-300), -math.inf)
        tau = torch.maximum(tau, torch.minimum(cross, rate[:, None]).amax(dim=1))
    free = shown.sum(dim=1) < min(slates.shape[1], wn.shape[1])  # a free slot takes f_j > 0
    enters = torch.where(~inside & (u > 0), torch.minimum(margin[None], rate[:, None]), -math.inf)
    tau = torch.where(free, torch.maximum(tau, enters.amax(dim=1)), tau)
    den = w0 + (u * inside).sum(dim=1)
    if hidden:
        offered = base.offered[0] if base.offered is not None else inside
        joins = (wn > 0) & ~offered & (margin[None] <= rate[:, None])
        tau = torch.maximum(tau, torch.where(joins, margin[None], -math.inf).amax(dim=1))
        den = den + (wn * offered).sum(dim=1)
        num = rate * den
        leave = offered & ~inside  # an offered product off the slate leaves the choice set
        after = (num[:, None] - margin[None] * wn) / (den[:, None] - wn).clamp(min=1e-300)
        after = torch.where(leave, after, rate[:, None])
    else:
        den = den + wn.sum(dim=1)
        after = rate[:, None] - (margin - lost)[None] * wn / den[:, None]
    slack = 1e-12 * (rate.abs() + 1.0)[:, None]
    todo = inside | (after < tau[:, None] - slack)
    if not hidden:
        todo |= after <= lost[None]  # the short product's own line would rise above zero
    return todo, after


def stock_value_response(
    params: SimParams,
    stock_value: np.ndarray,
    period: int,
    *,
    min_share: float = MIN_SHARE,
    max_edges: int = MAX_EDGES,
    tolerance: float = SLATE_TOLERANCE,
) -> ShortageResponse:
    """The bid-price rule's response to each product's shortage in ``period``, every other
    product in stock (module docstring), at stock values ``stock_value (N,)`` (``mu_t``).

    Only the pairs of :func:`unsettled_pairs` are solved again, one ``best_slates`` call per
    segment over its unsettled products. A segment whose slate does not show the short
    product changes it only when the new slate earns more than ``tolerance`` of the
    segment's revenue per customer over keeping it: below that the two slates are a near-tie
    that stock values known to the solve's gap cannot separate, and a flip between them moves
    a whole slot's demand that says nothing about substitution (``tolerance=0``: the rule
    exactly). A product whose shortage changes no slate moves nothing in "lost" mode and is
    no source (in "hidden" mode every product is one)."""
    inst = params.instance
    n, m_n = params.n_products, params.n_segments
    dev, dt = params.device, params.dtype
    g, money = inst.discount**period, unit_values(inst)
    margin = torch.as_tensor(g * money[Flow.SOLD] - np.asarray(stock_value), dtype=dt, device=dev)
    lost = torch.as_tensor(g * money[Flow.LOST], dtype=dt, device=dev)
    wn = torch.tensor(inst.base_attraction, dtype=dt, device=dev)
    wr = torch.tensor(inst.rec_attraction, dtype=dt, device=dev)
    w0 = torch.tensor(inst.no_purchase, dtype=dt, device=dev)
    rate = params.arrival_rate[period]
    k = inst.slate_size

    with torch.no_grad():
        base = best_slates(margin[None], rate[None], wr, wn, w0, k, params.hidden)
        slates0 = base.slates[0]
        redo_src, redo_seg, redo_slate = [], [], []
        block = max(1, CHUNK_CELLS // (8 * n))
        for lo in range(0, m_n, block):  # segments in blocks; products vectorised
            seg = slice(lo, lo + block)
            part = SlateChoice(
                base.slates[:, seg],
                None if base.offered is None else base.offered[:, seg],
                base.rate[:, seg],
                base.upper[:, seg],
                base.y[:, seg],
            )
            todo, keep = unsettled_pairs(
                margin, lost, wr[seg], wn[seg], w0[seg], part, params.hidden
            )
            for j in torch.nonzero(todo.any(dim=1)).flatten().tolist():  # segments
                items = torch.nonzero(todo[j]).flatten()
                rows = torch.arange(len(items), device=dev)
                mg = margin.expand(len(items), -1).clone()
                mg[rows, items] = lost[items]
                kk = lo + j
                choice = best_slates(
                    mg,
                    rate[kk].expand(len(items), 1),
                    wr[kk : kk + 1],
                    wn[kk : kk + 1],
                    w0[kk : kk + 1],
                    k,
                    params.hidden,
                )
                redo = choice.slates[:, 0]
                shown = (slates0[kk][None] == items[:, None]).any(dim=1)
                gain = choice.rate[:, 0] - keep[j, items]
                worth = shown | (gain > tolerance * base.rate[0, kk].abs())
                moved = (redo != slates0[kk]).any(dim=1) & worth
                redo_src.append(items[moved])
                redo_seg.append(torch.full((int(moved.sum()),), kk, device=dev))
                redo_slate.append(redo[moved])
        change_src = torch.cat(redo_src) if redo_src else torch.zeros(0, dtype=torch.long)
        change_seg = torch.cat(redo_seg) if redo_seg else torch.zeros(0, dtype=torch.long)
        change = torch.cat(redo_slate) if redo_slate else slates0[:0]
        if params.hidden:  # a hidden product's demand leaves every segment it has weight in
            sources = torch.nonzero((wn.sum(dim=0) > 0) | (wr.sum(dim=0) > 0)).flatten()
        else:  # lost mode: only a slate's change moves demand
            sources = torch.unique(change_src)
        where = torch.full((n,), -1, dtype=torch.long, device=dev)
        where[sources] = torch.arange(len(sources), device=dev)

        in_stock = torch.ones(1, n, dtype=dt, device=dev)
        demand0 = demand_rates(in_stock, slates0[None], params, period)
        rec0 = rec_shares(slates0[None], rate, n)
        edges = _Edges(min_share, max_edges)
        step = _chunk(params)
        for lo in range(0, len(sources), step):
            src = sources[lo : lo + step]
            slates = slates0.expand(len(src), -1, -1).clone()
            mine = (where[change_src] >= lo) & (where[change_src] < lo + len(src))
            slates[where[change_src[mine]] - lo, change_seg[mine]] = change[mine]
            available = in_stock.expand(len(src), -1).clone()
            available[torch.arange(len(src), device=dev), src] = 0.0
            shift = demand_rates(available, slates, params, period) - demand0
            edges.add(src, shift, rec_shares(slates, rate, n) - rec0)
    return edges.response("bidprice", period, demand0[0].cpu(), rec0[0].cpu())


def remove_stock(state: SimState, sources: torch.Tensor) -> SimState:
    """A copy-major batch of ``1 + U`` copies of ``E`` environments with, in copy ``u + 1``,
    the stock of product ``sources[u]`` removed (nothing on hand, nothing arriving now)."""
    e = state.batch_size // (1 + len(sources))
    on_hand, pipeline = state.on_hand.clone(), state.pipeline.clone()
    rows = torch.arange(e, state.batch_size, device=on_hand.device)
    cols = sources.to(on_hand.device).repeat_interleave(e)
    on_hand[rows, cols] = 0.0
    if pipeline.shape[-1]:
        pipeline[rows, cols, 0] = 0.0
    return dataclasses.replace(state, on_hand=on_hand, pipeline=pipeline)


def shortage_states(state: SimState, sources: torch.Tensor) -> SimState:
    """The ``E`` environments of ``state`` followed by one copy of them per source product
    with its stock removed: ``(1 + U) E`` environments, copy-major (:func:`remove_stock`)."""
    copies = 1 + len(sources)

    def tile(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(copies, *([1] * (x.dim() - 1)))

    tiled = SimState(
        state.t,
        tile(state.on_hand),
        tile(state.pipeline),
        tile(state.last_sales),
        tile(state.last_demand),
        tile(state.last_orders),
    )
    return remove_stock(tiled, sources)


def policy_response(
    params: SimParams,
    policy: Policy,
    state: SimState,
    sources: torch.Tensor,
    *,
    method: str,
    fresh: bool = True,
    min_share: float = MIN_SHARE,
    max_edges: int = MAX_EDGES,
) -> ShortageResponse:
    """``policy``'s response to each source's shortage at ``state`` (``E`` environments,
    averaged): the policy acts on :func:`shortage_states`. ``fresh``: reset the policy first
    (a Markov policy); otherwise ``state`` is already the ``(1 + U) E`` batch the policy has
    been acting on (its memory kept), with the stock not yet removed."""
    n, t = params.n_products, state.t
    if fresh:
        batch = shortage_states(state, sources)
        e = state.batch_size
        policy.reset(batch.batch_size)
    else:
        batch = remove_stock(state, sources)
        e = state.batch_size // (1 + len(sources))
    with torch.no_grad():
        action = policy.act(batch)
        available = available_stock(batch, action.orders, params)[0]
        rates = demand_rates(available, action.slates, params, t).reshape(-1, e, n).mean(dim=1)
        rate = params.arrival_rate[t]
        rec = rec_shares(action.slates, rate, n).reshape(-1, e, n).mean(dim=1)
    edges = _Edges(min_share, max_edges)
    edges.add(sources.to(rates.device), rates[1:] - rates[:1], rec[1:] - rec[:1])
    return edges.response(method, t, rates[0].cpu(), rec[0].cpu())


# --------------------------------------------------------------------------- the optimiser


def default_period(inst: Instance) -> int:
    """The representative period: the middle of the horizon (0-based)."""
    return inst.horizon // 2


def network_method(inst: Instance) -> str:
    """The optimiser behind the network of ``inst``: the exact DP where it fits, MPC up to
    :data:`NETWORK_MPC_PRODUCTS` products (within the full fluid program's size), the catalog
    solver's stock values (``bidprice``) beyond."""
    if dp_fits(inst):
        return "dp"
    if inst.n_products <= NETWORK_MPC_PRODUCTS and plan_cells(inst) <= FULL_LP_CELLS:
        return "mpc"
    return "bidprice"


def plan_state(inst: Instance, plan: Plan, period: int, copies: int, params: SimParams) -> SimState:
    """The state a plan reaches at the start of ``period`` (end inventory of the period
    before, its earlier orders in the pipeline, rounded to units), ``copies`` times; a product
    with nothing available then gets one unit, so that every product is in stock."""
    n, w = inst.n_products, params.pipeline_width
    orders = np.rint(np.asarray(plan.orders, dtype=float))
    on_hand = (
        inst.initial_inventory.astype(float)
        if period == 0
        else np.rint(np.asarray(plan.inventory, dtype=float)[period - 1])
    )
    pipeline = np.zeros((n, w))
    for j in range(w):  # units arriving at period + j were ordered at period + j - L (< period)
        placed = period + j - inst.lead_time
        ok = (j < inst.lead_time) & (placed >= 0)
        pipeline[ok, j] = orders[placed[ok], np.flatnonzero(ok)]
    on_hand = np.maximum(on_hand, 0.0)
    on_hand += (on_hand + (pipeline[:, 0] if w else 0.0)) < 1.0

    def t(x: np.ndarray) -> torch.Tensor:
        y = torch.as_tensor(x, dtype=params.dtype, device=params.device)
        return y.expand(copies, *y.shape).clone()

    zero = np.zeros(n)
    return SimState(period, t(on_hand), t(pipeline), t(zero), t(zero), t(zero))


class PlanSlates:
    """MPC's decisions without its draws: at each state the fluid program re-solved from it
    (:meth:`~coordopt.solvers.mpc.MPCPolicy.plan`), its first orders rounded, and per segment
    its first period's most frequent products (:func:`~coordopt.solution.slates_from_frequency`,
    the ``first_slates`` of every solver's :class:`~coordopt.solution.Solution`). MPC draws its
    slates from those frequencies; the draws would put noise into every product's response."""

    name = "mpc"

    def __init__(self, params: SimParams, seed: int = 0) -> None:
        self.params = params
        self.mpc = make_policy("mpc", params, seed=seed)

    def reset(self, batch_size: int) -> None:
        """Markov in the state: nothing to clear."""

    def act(self, state: SimState) -> Action:
        p = self.params
        on_hand = state.on_hand.detach().cpu().double().numpy()
        pipeline = state.pipeline.detach().cpu().double().numpy()
        k = max(p.slate_size, 1)
        orders = np.zeros(on_hand.shape)
        slates = np.full((state.batch_size, p.n_segments, k), -1, dtype=np.int64)
        for j in range(state.batch_size):  # one fluid re-solve per state, as MPC does
            sol = self.mpc.plan(state.t, on_hand[j], pipeline[j])  # type: ignore[attr-defined]
            orders[j] = np.clip(np.rint(sol.orders[0]), 0.0, p.instance.max_order)
            for seg, row in enumerate(slates_from_frequency(sol.rec_frequency[0], k)):
                slates[j, seg, : len(row)] = row
        return Action(
            orders=torch.tensor(orders, dtype=p.dtype, device=p.device),
            slates=torch.tensor(slates, device=p.device),
        )


def optimiser_response(
    inst: Instance,
    method: str = "fluid",
    *,
    period: int | None = None,
    seed: int = 0,
    min_share: float = MIN_SHARE,
    max_edges: int = MAX_EDGES,
    progress: bool = False,
) -> ShortageResponse:
    """The network's shifts from the optimiser ``method`` (``fluid``: :func:`network_method`;
    ``dp``: the DP policy, ``mpc``: :class:`PlanSlates`, each at the fluid plan's state of
    ``period`` (:func:`plan_state`); ``bidprice``: the catalog solver's stock values)."""
    if method not in METHODS:
        raise ValueError(f"unknown network method '{method}'; expected one of {', '.join(METHODS)}")
    if method == "fluid":
        method = network_method(inst)
    t = default_period(inst) if period is None else int(period)
    if not 0 <= t < inst.horizon:
        raise ValueError(f"period {t + 1} is outside the horizon 1..{inst.horizon}")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    if method == "bidprice":
        sol = solve_catalog(inst, gap=0.005, progress=progress)
        return stock_value_response(
            params, sol.mu[t - sol.t0], t, min_share=min_share, max_edges=max_edges
        )
    plan = solve_fluid(inst).result().plan
    assert plan is not None
    state = plan_state(inst, plan, t, 1, params)
    policy = make_policy("dp", params) if method == "dp" else PlanSlates(params, seed)
    sources = torch.arange(inst.n_products, device=params.device)
    return policy_response(
        params, policy, state, sources, method=method, min_share=min_share, max_edges=max_edges
    )


# --------------------------------------------------------------------------- trained agents


def simulated_response(
    inst: Instance,
    policy_spec: str,
    sources: np.ndarray | Sequence[int],
    period: int,
    *,
    episodes: int = 4,
    seed: int = 0,
    batch: int = 256,
) -> ShortageResponse:
    """A policy's response to each source's shortage in simulation: ``episodes`` episodes
    run to ``period`` in lock-step copies (the same demand in every copy), then in copy u the
    stock of ``sources[u]`` is removed and the policy (its memory intact) decides. Sources go
    ``batch`` environments at a time, each group simulated afresh. Every kept edge of every
    source is returned (no pruning: the agreement reads them all)."""
    params = SimParams.from_instance(inst, dtype=torch.float64)
    policy = make_policy(policy_spec, params)
    per = max(1, batch // episodes - 1)
    src_all = torch.as_tensor(np.asarray(sources, dtype=np.int64), device=params.device)
    edges = _Edges(0.0, inst.n_products)
    demand0 = rec0 = None
    gen = torch.Generator(device=params.device)
    for lo in range(0, len(src_all), per):
        src = src_all[lo : lo + per]
        copies = 1 + len(src)
        state = reset(params, copies * episodes)
        policy.reset(copies * episodes)
        with torch.no_grad():
            for u in range(period):
                gen.manual_seed(step_seed(seed, u))
                action = policy.act(state)
                available, orders, arrivals, overflow = available_stock(
                    state, action.orders, params
                )
                rates = demand_rates(available[:episodes], action.slates[:episodes], params, u)
                demand = torch.poisson(rates, generator=gen).repeat(copies, 1)
                state = advance(state, available, orders, arrivals, overflow, demand, params)[0]
        part = policy_response(
            params,
            policy,
            state,
            src,
            method=policy_spec,
            fresh=False,
            min_share=0.0,
            max_edges=inst.n_products,
        )
        demand0, rec0 = part.demand, part.rec_share
        edges.parts.append(tuple(getattr(part, f) for f in _COLUMNS))
    return edges.response(policy_spec, period, demand0, rec0)


def agents_agreement(network: ShortageResponse, agents: ShortageResponse) -> float | None:
    """Share of the network's demand shift that the agents reproduce: over the network's
    edges, ``sum min(agents' shift, network's shift) / sum network's shift`` (the agents'
    shift along an edge counted up to the network's, never below 0). ``None`` without edges."""
    total = float(network.edge_demand.sum())
    if total <= 0:
        return None
    n = max(int(network.demand.shape[0]), 1)
    theirs = dict(
        zip(
            (agents.edge_source * n + agents.edge_target).tolist(),
            agents.edge_demand.tolist(),
            strict=True,
        )
    )
    got = np.array(
        [theirs.get(k, 0.0) for k in (network.edge_source * n + network.edge_target).tolist()]
    )
    return float(np.minimum(np.maximum(got, 0.0), network.edge_demand).sum() / total)


# --------------------------------------------------------------------------- the graph


def build_network(inst: Instance, response: ShortageResponse) -> nx.DiGraph:
    """The substitution network as a networkx ``DiGraph`` over the product names.

    Nodes: ``demand`` and ``rec_share`` at the state, ``short_demand`` and ``moved`` (0 where
    the product's shortage was not examined or moves nothing), ``category`` where the
    instance has categories. Edges ``i -> j``: ``weight`` the demand per period that moves
    from i to j when i runs short, ``rec_shift`` the change of j's recommendation share.
    """
    names = inst.product_names
    graph = nx.DiGraph(
        instance=inst.name, method=response.method, period=response.period + 1, unit="units/period"
    )
    short = np.zeros(inst.n_products)
    moved = np.zeros(inst.n_products)
    short[response.sources] = response.short_demand
    moved[response.sources] = response.moved
    for i, name in enumerate(names):
        attrs: dict[str, Any] = {
            "demand": float(response.demand[i]),
            "rec_share": float(response.rec_share[i]),
            "short_demand": float(short[i]),
            "moved": float(moved[i]),
        }
        if inst.category is not None:
            attrs["category"] = inst.category[i]
        graph.add_node(name, **attrs)
    graph.add_edges_from(
        (names[s], names[t], {"weight": float(w), "rec_shift": float(r)})
        for s, t, w, r in zip(
            response.edge_source.tolist(),
            response.edge_target.tolist(),
            response.edge_demand.tolist(),
            response.edge_rec.tolist(),
            strict=True,
        )
    )
    return graph


def adjusted_rand_index(labels_a: Sequence[Any], labels_b: Sequence[Any]) -> float:
    """Adjusted Rand index of two labelings of the same items (Hubert and Arabie, 1985):
    1 for identical partitions, about 0 for independent ones."""
    if len(labels_a) != len(labels_b):
        raise ValueError(f"labelings of {len(labels_a)} and {len(labels_b)} items")
    n = len(labels_a)
    if n < 2:
        return 1.0
    _, a = np.unique(np.asarray(labels_a, dtype=str), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b, dtype=str), return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1.0)
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(n, 2)
    top = 0.5 * (rows + cols)
    if top == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0 if pairs == expected else 0.0
    return float((pairs - expected) / (top - expected))


def symmetric(graph: nx.DiGraph) -> nx.Graph:
    """The undirected graph of the products with an edge, ``i - j`` weighing the demand moved
    both ways (``i -> j`` plus ``j -> i``)."""
    undirected = nx.Graph()
    for u, v, w in graph.edges(data="weight"):
        if u != v:
            prev = undirected.get_edge_data(u, v, {"weight": 0.0})["weight"]
            undirected.add_edge(u, v, weight=prev + w)
    return undirected


def communities(
    graph: nx.DiGraph, seed: int = 0, resolution: float = RESOLUTION
) -> list[list[str]]:
    """Louvain communities (networkx, ``seed`` fixed) of the products with an edge, on the
    undirected graph whose weights sum both directions; largest first, then by name.

    The default ``resolution`` is below modularity's 1: a shortage sends most of its demand
    to the few products next in line on the slates of the segments that showed it, so at
    resolution 1 modularity splits a category along the tastes of the segments that buy it
    (on generated catalogs with planted categories, into sub-groups of 20-30 products).
    """
    undirected = symmetric(graph)
    if undirected.number_of_edges() == 0:
        return []
    found = nx.community.louvain_communities(
        undirected, weight="weight", resolution=resolution, seed=seed
    )
    return sorted((sorted(c) for c in found), key=lambda c: (-len(c), c[0]))


def category_shares(graph: nx.DiGraph) -> tuple[float, float]:
    """Share of the demand on the edges that stays within its source's category, and the
    share expected if each source's demand went to other products drawn at random."""
    cats = [d["category"] for _, d in graph.nodes(data=True)]
    size = {c: cats.count(c) for c in set(cats)}
    n = len(cats)
    total = within = chance = 0.0
    for u, v, w in graph.edges(data="weight"):
        cu = graph.nodes[u]["category"]
        total += w
        within += w * (cu == graph.nodes[v]["category"])
        chance += w * (size[cu] - 1) / max(n - 1, 1)
    return within / total, chance / total


def analyse_network(
    graph: nx.DiGraph,
    *,
    seed: int = 0,
    resolution: float = RESOLUTION,
    top: int = 20,
    agreement: float | None = None,
) -> dict[str, Any]:
    """What the network says: the products that back up the most demand (weighted in-degree,
    with PageRank centrality), the communities, their agreement with the categories (adjusted
    Rand index over the products with an edge, and :func:`category_shares`; ``None`` without
    categories) and ``agreement`` (:func:`agents_agreement`, ``None`` without agents)."""
    groups = communities(graph, seed, resolution)
    member = {p: c for c, group in enumerate(groups) for p in group}
    for node in graph.nodes:
        graph.nodes[node]["community"] = member.get(node, -1)
    backed = dict(graph.in_degree(weight="weight"))
    rank = nx.pagerank(graph, weight="weight") if graph.number_of_edges() else {}
    for node in graph.nodes:
        graph.nodes[node]["backed_up"] = float(backed[node])
        graph.nodes[node]["pagerank"] = float(rank.get(node, 0.0))
    order = sorted(graph.nodes, key=lambda p: (-backed[p], p))
    has_category = all("category" in d for _, d in graph.nodes(data=True))
    backups = [
        {
            "product": p,
            "demand": backed[p],
            "sources": graph.in_degree(p),
            "pagerank": rank.get(p, 0.0),
            **({"category": graph.nodes[p]["category"]} if has_category else {}),
        }
        for p in order[:top]
        if backed[p] > 0
    ]
    covered = sorted(member)
    ari = None
    if has_category and graph.number_of_nodes() and covered:
        ari = adjusted_rand_index(
            [member[p] for p in covered], [graph.nodes[p]["category"] for p in covered]
        )
    within = chance = None
    if has_category and graph.number_of_edges():
        within, chance = category_shares(graph)
    modularity = None
    if groups:
        undirected = symmetric(graph)
        modularity = float(
            nx.community.modularity(undirected, groups, weight="weight", resolution=resolution)
        )
    moved = sum(d["moved"] for _, d in graph.nodes(data=True))
    kept = graph.size(weight="weight")
    return {
        "instance": graph.graph.get("instance"),
        "method": graph.graph.get("method"),
        "period": graph.graph.get("period"),
        "n_products": graph.number_of_nodes(),
        "n_edges": graph.number_of_edges(),
        "covered": len(covered),
        "demand_moved": moved,
        "demand_on_edges": kept,
        "communities": [g for g in groups if len(g) > 1],
        "resolution": resolution,
        "modularity": modularity,
        "backups": backups,
        "category_ari": ari,
        "category_share": within,
        "category_share_random": chance,
        "agents_agreement": agreement,
    }


# --------------------------------------------------------------------------- outputs


def write_network(graph: nx.DiGraph, summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``network.graphml``, ``network_nodes.csv``, ``network_edges.csv``, ``network.png`` and
    ``network.json`` (``summary``) into ``out_dir``, each written atomically."""
    out = Path(out_dir)
    files = [atomic_write(out / "network.graphml", lambda p: nx.write_graphml(graph, p))]
    cols = ["product", "category", "community", "demand", "rec_share", "backed_up", "sources"]
    cols += ["short_demand", "moved", "pagerank"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for p, d in graph.nodes(data=True):
        writer.writerow(
            [p, d.get("category", ""), d.get("community", -1)]
            + [_num(d.get(c, 0.0)) for c in ("demand", "rec_share", "backed_up")]
            + [graph.in_degree(p)]
            + [_num(d.get(c, 0.0)) for c in ("short_demand", "moved", "pagerank")]
        )
    files.append(atomic_write_text(out / "network_nodes.csv", buf.getvalue()))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "target", "demand", "rec_shift", "same_category"])
    for u, v, d in graph.edges(data=True):
        cu, cv = graph.nodes[u].get("category"), graph.nodes[v].get("category")
        same = "" if cu is None or cv is None else int(cu == cv)
        writer.writerow([u, v, _num(d["weight"]), _num(d["rec_shift"]), same])
    files.append(atomic_write_text(out / "network_edges.csv", buf.getvalue()))
    files.append(plot_network(graph, out / "network.png"))
    files.append(atomic_write_text(out / "network.json", json.dumps(_plain(summary), indent=2)))
    return files


def _num(x: float) -> str:
    return f"{x:.6g}"


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def plot_network(
    graph: nx.DiGraph,
    path: str | Path,
    *,
    largest: int = 6,
    max_nodes: int = 400,
    max_edges: int = 1500,
    seed: int = 0,
) -> Path:
    """The ``largest`` communities (at most ``max_nodes`` products, those backing up the most
    demand, and their ``max_edges`` heaviest edges), nodes sized by the demand they back up
    and coloured by community, with each community's main category where the instance has
    categories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 7.5))
    groups: dict[int, list[str]] = {}
    for p, d in graph.nodes(data=True):
        if d.get("community", -1) >= 0:
            groups.setdefault(d["community"], []).append(p)
    shown = sorted(groups, key=lambda c: (-len(groups[c]), c))[:largest]
    nodes = [p for c in shown for p in groups[c]]
    nodes = sorted(nodes, key=lambda p: -graph.nodes[p].get("backed_up", 0.0))[:max_nodes]
    sub = graph.subgraph(nodes)
    title = f"{graph.graph.get('instance')}: substitution network ({graph.graph.get('method')}, "
    title += f"period {graph.graph.get('period')})"
    if sub.number_of_nodes() == 0:
        ax.text(0.5, 0.5, "no product's shortage moves demand", ha="center", va="center")
        ax.axis("off")
    else:
        pos = nx.spring_layout(sub.to_undirected(), weight="weight", seed=seed)
        backed = np.array([sub.nodes[p].get("backed_up", 0.0) for p in sub.nodes])
        size = 15 + 600 * backed / max(float(backed.max()), 1e-12)
        colours = [shown.index(sub.nodes[p]["community"]) for p in sub.nodes]
        heavy = sorted(sub.edges(data="weight"), key=lambda e: -e[2])[:max_edges]
        widths = np.array([w for _, _, w in heavy])
        nx.draw_networkx_edges(
            sub,
            pos,
            edgelist=[(u, v) for u, v, _ in heavy],
            ax=ax,
            alpha=0.25,
            arrows=False,
            width=0.3 + 2.0 * widths / max(float(widths.max(initial=0.0)), 1e-12),
        )
        nx.draw_networkx_nodes(
            sub,
            pos,
            ax=ax,
            node_size=size,
            node_color=colours,
            cmap="tab10",
            vmin=0,
            vmax=9,
            alpha=0.85,
        )
        cmap = plt.get_cmap("tab10")
        for j, c in enumerate(shown):
            cats = [graph.nodes[p].get("category") for p in groups[c]]
            label = f"community {c + 1}: {len(groups[c])} products"
            if cats and cats[0] is not None:
                main = max(set(cats), key=lambda x: (cats.count(x), x))
                label += f", {100 * cats.count(main) / len(cats):.0f}% {main}"
            ax.scatter([], [], color=cmap(j % 10), label=label)
        ax.legend(fontsize=8, loc="best", frameon=False)
        ax.axis("off")
    ax.set_title(title + "\nnode size: demand backed up; edges: demand moved", fontsize=10)
    return save_figure(fig, path, dpi=100)
