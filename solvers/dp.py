"""Exact dynamic program of docs/model.md for tiny instances, and the policy it defines.

Backward induction over the start-of-period state ``(on-hand, pipeline)``, with the simulator's
semantics (``coordopt.simulator.step``): arrivals (lead-time-0 orders included, warehouse
capacity applied pro rata), then demand under the multinomial logit, sales
``min(available, demand)``, costs, salvage after the last period.

Each period is split at the post-decision state ``(available a, next pipeline P')``:

- ``G_t(a, P') = max_S  r(a, mu(S)) + gamma * E[V_{t+1}(a - min(a, D), P')]``: the joint slate
  ``S`` only moves the Poisson rates ``mu(S)``; demands of different products are independent
  (Poisson thinning), so the expectation is one small matrix per product applied along its
  on-hand axis. Demand at or above stock is lumped exactly through the survival function.
- ``V_t(x, P) = max_q  -cost(q) + G_t(a(x, P, q), P'(P, q))``: a gather per joint order.

Every step is a numpy operation over all states; Python loops run over periods, joint slates
and joint orders only. Two restrictions keep the state space finite, and both are reported:
orders are bounded (``max_order`` or ``order_cap``) and the inventory position after ordering
(on-hand plus pipeline) may not exceed ``inventory_cap``. The default cap is the largest
position any policy can reach, so by default nothing is restricted and the value is exact.
Orders that cannot arrive before the horizon ends (``t + L_i > T - 1``) are not placed: they
cost money and change nothing, so this loses no optimality.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from coordopt.economics import Flow, unit_values
from coordopt.instance import Instance, Stockout, content_hash
from coordopt.simulator import Action, SimParams, SimState
from coordopt.solution import Solution, SolveStatus

__all__ = [
    "SOLUTIONS",
    "DPError",
    "DPPolicy",
    "DPSolution",
    "DPTables",
    "SolutionCache",
    "StateSpace",
    "Truncation",
    "accepted_arrivals",
    "dp_fits",
    "enumerate_slates",
    "joint_slate_count",
    "poisson_transition",
    "reference_method",
    "slate_rates",
    "solve_dp",
]

MAX_STATES = 2_000_000
MAX_JOINT_SLATES = 4096


class DPError(ValueError):
    """The instance is outside what the exact DP can solve; the message says what to change."""


# --------------------------------------------------------------------------- building blocks


def enumerate_slates(n_products: int, n_segments: int, slate_size: int) -> np.ndarray:
    """Every joint slate: per segment, every subset of size ``0..slate_size``, ``(J, M, K)``.

    Subsets are ordered by size, then lexicographically, so the empty slate comes first and,
    among equally good slates, the DP keeps the smallest. Empty slots are ``-1``.
    """
    k = max(min(slate_size, n_products), 1)
    subsets = [
        c
        for size in range(min(slate_size, n_products) + 1)
        for c in itertools.combinations(range(n_products), size)
    ]
    rows = np.full((len(subsets), k), -1, dtype=np.int64)
    for r, c in enumerate(subsets):
        rows[r, : len(c)] = c
    joint = np.array(
        list(itertools.product(range(len(subsets)), repeat=n_segments)), dtype=np.int64
    )
    return rows[joint]  # (J, M, K)


def joint_slate_count(n_products: int, n_segments: int, slate_size: int) -> int:
    """How many rows :func:`enumerate_slates` would return (without building them)."""
    per_segment = sum(math.comb(n_products, s) for s in range(min(slate_size, n_products) + 1))
    return int(per_segment**n_segments)


def dp_fits(inst: Instance) -> bool:
    """Whether :func:`solve_dp` runs on ``inst`` with its default caps: every product has a
    finite ``max_order`` and the states and joint slates are within the limits."""
    try:
        q_cap, c_cap, h_cap, _ = _resolve_caps(inst, None, None)
    except DPError:
        return False
    space = StateSpace.build(inst.lead_time.astype(np.int64), q_cap, c_cap, h_cap)
    slates = joint_slate_count(inst.n_products, inst.n_segments, inst.slate_size)
    return space.n_states <= MAX_STATES and slates <= MAX_JOINT_SLATES


def reference_method(inst: Instance) -> str:
    """The optimiser every comparison and imitation takes as its reference -- the one rule
    the ``insights`` command, the synchronised-adjustments study and the warm start share:
    ``"dp"`` (the exact optimum) where the DP fits the instance, else ``"fluid"`` (the fluid
    program: its plan for insights, its closed-loop form MPC for a policy to imitate)."""
    return "dp" if dp_fits(inst) else "fluid"


def slate_rates(
    inst: Instance, slates: np.ndarray, in_stock: np.ndarray | None = None, period: int = 0
) -> np.ndarray:
    """Poisson demand rate per product in ``period``, ``mu_i = sum_k lambda_kt P_ki``, for
    each joint slate.

    ``slates`` is ``(J, M, K)``; returns ``(J, N)``. ``in_stock`` (hidden mode) zeroes the weight
    of products that are out of stock, in every segment, as the simulator does.
    """
    n = inst.n_products
    member = np.zeros((slates.shape[0], inst.n_segments, n + 1), dtype=bool)
    np.put_along_axis(member, np.where(slates >= 0, slates, n), True, axis=2)
    w = np.where(member[..., :n], inst.rec_attraction, inst.base_attraction)  # (J, M, N)
    if in_stock is not None:
        w = w * np.asarray(in_stock, dtype=bool)
    denom = inst.no_purchase + w.sum(-1)  # (J, M)
    return np.einsum("k,jki->ji", inst.arrival_rate[period], w / denom[..., None])


def poisson_transition(mu: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """End-inventory kernel and expected sales of one product with Poisson(``mu``) demand.

    Returns ``(kernel (size, size), expected_sales (size,))`` for available stock
    ``a = 0..size-1``: ``kernel[a, e] = P(a - min(a, D) = e)``; the mass of ``D >= a`` sits on
    ``e = 0`` via the survival function, so no tail is truncated.
    """
    d = np.arange(size)
    if mu > 0:
        pmf = stats.poisson.pmf(d, mu)
        sf = stats.poisson.sf(d, mu)  # P(D > d)
    else:
        pmf = (d == 0).astype(float)
        sf = np.zeros(size)
    a, e = np.meshgrid(d, d, indexing="ij")
    gap = a - e
    kernel = np.where((e >= 1) & (gap >= 0), pmf[np.clip(gap, 0, size - 1)], 0.0)
    kernel[:, 0] = np.concatenate([[1.0], sf[: size - 1]])  # P(D >= a)
    sales = np.concatenate([[0.0], np.cumsum(sf[: size - 1])])  # E[min(D, a)]
    return kernel, sales


def accepted_arrivals(
    on_hand: np.ndarray, arrivals: np.ndarray, capacity: float | None
) -> np.ndarray:
    """Units the warehouse accepts, ``(..., N)``: all if they fit, else pro rata rounded down.

    The free space is ``capacity - sum(on_hand)`` (at least 0); when the incoming total
    exceeds it, product ``i`` gets ``floor(arrivals_i * free / incoming)`` units, computed
    multiply-first so that whole quotients are exact.
    """
    if capacity is None:
        return arrivals
    free = np.maximum(capacity - on_hand.sum(-1, keepdims=True), 0.0)
    incoming = arrivals.sum(-1, keepdims=True)
    scaled = np.floor(arrivals * free / np.maximum(incoming, 1))
    return np.where(incoming > free, scaled, arrivals).astype(arrivals.dtype)


def _contract(values: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
    """Apply ``mats[i]`` along axis ``i`` of ``values`` (the leading on-hand axes)."""
    out = values
    for i, mat in enumerate(mats):
        out = np.moveaxis(np.tensordot(mat, out, axes=([1], [i])), 0, i)
    return out


# --------------------------------------------------------------------------- state space


@dataclass(frozen=True, eq=False)
class StateSpace:
    """Layout of the state array: on-hand axes ``(H_i + 1)``, then each product's pipeline.

    Product ``i`` with lead time ``L_i >= 1`` owns ``L_i`` pipeline axes of size ``Q_i + 1``
    (slot ``j``: units arriving ``j`` periods from now), in product order.
    """

    lead_time: np.ndarray  # (N,)
    order_cap: np.ndarray  # (N,) Q_i, the largest order
    inventory_cap: np.ndarray  # (N,) C_i, the largest inventory position after ordering
    on_hand_cap: np.ndarray  # (N,) H_i, the largest on-hand (<= C_i; smaller with a warehouse)
    shape: tuple[int, ...]
    pipe_axes: tuple[tuple[int, ...], ...]  # axes of product i's slots 0..L_i-1

    @classmethod
    def build(
        cls,
        lead_time: np.ndarray,
        order_cap: np.ndarray,
        inventory_cap: np.ndarray,
        on_hand_cap: np.ndarray,
    ) -> StateSpace:
        n = len(lead_time)
        shape = [int(h) + 1 for h in on_hand_cap]
        axes = []
        for i in range(n):
            axes.append(tuple(range(len(shape), len(shape) + int(lead_time[i]))))
            shape.extend([int(order_cap[i]) + 1] * int(lead_time[i]))
        return cls(
            lead_time=lead_time,
            order_cap=order_cap,
            inventory_cap=inventory_cap,
            on_hand_cap=on_hand_cap,
            shape=tuple(shape),
            pipe_axes=tuple(axes),
        )

    @property
    def n_products(self) -> int:
        return len(self.lead_time)

    @property
    def n_states(self) -> int:
        return math.prod(self.shape)

    @property
    def strides(self) -> np.ndarray:
        """Flat-index stride of every axis (C order)."""
        return np.array(
            [math.prod(self.shape[a + 1 :]) for a in range(len(self.shape))], dtype=np.int64
        )

    def decode(self) -> tuple[np.ndarray, np.ndarray]:
        """All states: ``on_hand (S, N)`` and ``pipeline (S, N, W)``, ``W = max(1, max L)``."""
        grid = np.unravel_index(np.arange(self.n_states), self.shape)
        n = self.n_products
        on_hand = np.stack(grid[:n], axis=1).astype(np.int64)
        pipe = np.zeros(
            (self.n_states, n, max(1, int(self.lead_time.max(initial=0)))), dtype=np.int64
        )
        for i, axes in enumerate(self.pipe_axes):
            for j, ax in enumerate(axes):
                pipe[:, i, j] = grid[ax]
        return on_hand, pipe

    def index(self, on_hand: np.ndarray, pipeline: np.ndarray) -> np.ndarray:
        """Flat state index of ``on_hand (B, N)`` and ``pipeline (B, N, W)`` (simulator layout).

        Raises :class:`DPError` naming the first state outside the table.
        """
        x = np.asarray(on_hand)
        p = np.asarray(pipeline)
        if x.ndim == 1:
            x, p = x[None], p[None]
        xi = np.rint(x).astype(np.int64)
        pi = np.rint(p).astype(np.int64)
        if not (np.array_equal(xi, x) and np.array_equal(pi, p)):
            raise DPError("the DP indexes whole units; got a fractional on-hand or pipeline entry")
        n = self.n_products
        strides = self.strides
        flat = (xi * strides[:n]).sum(1)
        bad = (xi < 0) | (xi > self.on_hand_cap)
        for i, axes in enumerate(self.pipe_axes):
            slots = pi[:, i, : len(axes)]
            flat = flat + (slots * strides[list(axes)]).sum(1)
            bad[:, i] |= ((slots < 0) | (slots > self.order_cap[i])).any(1)
            bad[:, i] |= (pi[:, i, len(axes) :] != 0).any(1)
        if bad.any():
            b, i = (int(v) for v in np.argwhere(bad)[0])
            raise DPError(
                f"state {b}: product {i} has on-hand {xi[b, i]} and pipeline {pi[b, i].tolist()}, "
                f"outside the DP table (on-hand <= {int(self.on_hand_cap[i])}, pipeline slots "
                f"<= {int(self.order_cap[i])}, lead time {int(self.lead_time[i])}); solve with a "
                "larger inventory_cap / order_cap, or on the instance the policy is run on"
            )
        return flat


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Truncation:
    """What (if anything) the finite state space restricts, and how much it mattered.

    ``exact`` is true when neither the inventory cap nor the order cap removes any decision a
    policy could take; then ``value`` is the true optimum. Otherwise ``value`` is the optimum
    over policies that respect the caps (a lower bound on the true optimum), and
    ``restricted_visits`` is the expected number of periods in which the computed policy sits
    in a state where the inventory cap removed an order quantity.
    """

    exact: bool
    inventory_cap: np.ndarray  # (N,) position cap used
    reachable_position: np.ndarray  # (N,) largest position any policy can reach (cap needed)
    order_cap: np.ndarray  # (N,) largest order used
    max_order: np.ndarray  # (N,) the instance's max_order (inf where uncapped)
    restricted_visits: float
    lost_mass: float  # probability mass lost by the forward pass (0 up to rounding)
    forward_value: float  # expected profit of the policy by forward propagation (= value)
    message: str


@dataclass(frozen=True, eq=False)
class DPTables:
    """The optimal policy and values, per period ``t`` and flat state index ``s``."""

    orders: np.ndarray  # (T, S, N) int
    slate_ids: np.ndarray  # (T, S) rows of slate_table
    slate_table: np.ndarray  # (J, M, K) every joint slate, -1 padded
    values: np.ndarray  # (T, S) optimal expected discounted profit-to-go (in period-t money)

    def slates(self, t: int, index: np.ndarray) -> np.ndarray:
        """Slates ``(B, M, K)`` of the states ``index`` in period ``t``."""
        return self.slate_table[self.slate_ids[t, index]]


@dataclass(frozen=True, eq=False)
class DPSolution:
    """Optimal value and policy of the DP from the instance's initial state.

    :meth:`result` gives the shared :class:`~coordopt.solution.Solution` contract.
    """

    value: float
    status: SolveStatus  # OPTIMAL (exact) or OPTIMAL_RESTRICTED (see truncation)
    seconds: float
    n_states: int  # states per period
    reachable_states: int  # (period, state) pairs visited with probability > tail_tol
    first_orders: np.ndarray  # (N,)
    first_slates: np.ndarray  # (M, K), -1 padded
    policy: DPTables
    space: StateSpace
    truncation: Truncation
    horizon: int

    def result(self) -> Solution:
        """The shared solution contract: the value is the optimum (and the value of the
        returned policy); restricted, it is a lower bound, so there is no upper bound."""
        exact = self.status is SolveStatus.OPTIMAL
        return Solution(
            method="dp",
            status=self.status,
            objective=self.value,
            seconds=self.seconds,
            message=self.truncation.message,
            first_orders=self.first_orders,
            first_slates=[[int(i) for i in row if i >= 0] for row in self.first_slates],
            bound=self.value if exact else None,
            plan_value=self.value,
            details={"n_states": self.n_states, "reachable_states": self.reachable_states},
        )

    def lookup(self, t: int, on_hand: np.ndarray, pipeline: np.ndarray) -> np.ndarray:
        """Flat indices ``(B,)`` of states ``on_hand (B, N)``, ``pipeline (B, N, W)`` at ``t``."""
        if not 0 <= t < self.horizon:
            raise DPError(f"period t={t} is outside the horizon 0..{self.horizon - 1}")
        return self.space.index(on_hand, pipeline)

    def action(
        self, t: int, on_hand: np.ndarray, pipeline: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal ``orders (B, N)`` and ``slates (B, M, K)`` in the given states."""
        idx = self.lookup(t, on_hand, pipeline)
        return self.policy.orders[t, idx], self.policy.slates(t, idx)

    def value_at(self, t: int, on_hand: np.ndarray, pipeline: np.ndarray) -> np.ndarray:
        """Optimal expected discounted profit-to-go ``(B,)`` from the given states at ``t``."""
        return self.policy.values[t, self.lookup(t, on_hand, pipeline)]


# --------------------------------------------------------------------------- the solver


@dataclass
class _Block:
    """A rectangle of available stock with one in-stock pattern (hidden mode), its rates."""

    rows: tuple[slice, ...]  # on-hand rows a_i of the block
    reps: np.ndarray  # (U,) joint slate ids with distinct rates, in enumeration order
    u_of_joint: np.ndarray  # (J,) distinct-rate index of every joint slate
    kernels: list[list[np.ndarray]] = field(default_factory=list)  # [u][i] (rows_i, H_i + 1)
    reward: list[np.ndarray] = field(default_factory=list)  # [u] broadcastable, periods < T-1
    reward_last: list[np.ndarray] = field(default_factory=list)  # [u] with salvage


def _short(items: Sequence[Any], limit: int = 6) -> str:
    """``[a, b, c, ... (+k more)]`` for messages about many products."""
    shown = ", ".join(str(x) for x in items[:limit])
    more = f", ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def _resolve_caps(inst: Instance, inventory_cap: Any, order_cap: Any) -> tuple[np.ndarray, ...]:
    """``(Q, C, H, reachable)``: order cap, position cap, on-hand cap, largest reachable position."""
    n, horizon = inst.n_products, inst.horizon
    mo = inst.max_order
    if order_cap is None:
        if not np.isfinite(mo).all():
            names = [inst.product_names[i] for i in np.flatnonzero(~np.isfinite(mo))]
            raise DPError(
                f"{inst.name}: product(s) {_short(names)} have no max_order, so the DP's "
                "action set is infinite; set max_order in the instance or pass order_cap=<int> "
                "(a restriction that the solution reports)"
            )
        q = mo.astype(np.int64)
    else:
        oc = np.broadcast_to(np.asarray(order_cap), (n,))
        if (oc < 0).any() or not np.array_equal(oc, np.floor(oc)):
            raise DPError(f"order_cap must be whole numbers >= 0, got {order_cap!r}")
        q = np.minimum(mo, oc).astype(np.int64)
    x0 = inst.initial_inventory.astype(np.int64)
    reachable = x0 + q * np.maximum(horizon - inst.lead_time, 0)
    if inventory_cap is None:
        c = reachable.copy()
    else:
        c = np.broadcast_to(np.asarray(inventory_cap), (n,)).astype(np.int64)
        low = np.flatnonzero(c < x0)
        if low.size:
            i = int(low[0])
            raise DPError(
                f"inventory_cap {int(c[i])} of product {inst.product_names[i]} is below its "
                f"initial inventory {int(x0[i])}; the cap must be at least that"
            )
    h = c.copy()
    if inst.warehouse_capacity is not None:
        h = np.minimum(c, np.maximum(x0, math.floor(inst.warehouse_capacity)))
    return q, c, h, reachable


def _order_money(money: dict[Flow, np.ndarray], q: np.ndarray) -> np.ndarray:
    """Money of the orders ``q``, ``(N,)`` or per state ``(S, N)``, at the unit values
    ``money`` (:func:`coordopt.economics.unit_values`): ``-(c q + F 1{q > 0})``."""
    return q @ money[Flow.ORDERED] + (q > 0) @ money[Flow.PLACED]


def _make_blocks(
    inst: Instance, slates: np.ndarray, h: np.ndarray, ndim: int, period: int
) -> list[_Block]:
    """Precompute, per in-stock pattern, the distinct rates, kernels and expected rewards of
    ``period``'s arrival rates.

    Rewards are shaped to broadcast over the ``ndim`` axes of the state array.
    """
    n = inst.n_products
    money = unit_values(inst)
    hidden = inst.stockout is Stockout.HIDDEN
    patterns = list(itertools.product((False, True), repeat=n)) if hidden else [(True,) * n]
    blocks = []
    for z in patterns:
        rows = tuple(
            slice(1, int(h[i]) + 1)
            if (z[i] and hidden)
            else slice(0, int(h[i]) + 1)
            if z[i]
            else slice(0, 1)
            for i in range(n)
        )
        if any(r.stop <= r.start for r in rows):
            continue
        mu = slate_rates(inst, slates, np.array(z) if hidden else None, period)
        _, first, inverse = np.unique(
            np.round(mu, 12), axis=0, return_index=True, return_inverse=True
        )
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        block = _Block(rows=rows, reps=first[order], u_of_joint=rank[inverse.reshape(-1)])
        for j in block.reps:
            mats, parts, parts_last = [], [], []
            for i in range(n):
                kernel, sales = poisson_transition(float(mu[j, i]), int(h[i]) + 1)
                a = np.arange(int(h[i]) + 1, dtype=float)
                end = a - sales
                r = (
                    money[Flow.SOLD][i] * sales
                    + money[Flow.HELD][i] * end
                    + money[Flow.LOST][i] * (mu[j, i] - sales)
                )
                shape = [1] * ndim
                shape[i] = -1
                mats.append(kernel[rows[i]])
                parts.append(r[rows[i]].reshape(shape))
                parts_last.append((r + money[Flow.LEFT_OVER][i] * end)[rows[i]].reshape(shape))
            block.kernels.append(mats)
            block.reward.append(sum(parts[1:], parts[0]))
            block.reward_last.append(sum(parts_last[1:], parts_last[0]))
        blocks.append(block)
    return blocks


class _OrderStep:
    """Post-decision index ``(a, P')`` of every state under a joint order, vectorised."""

    def __init__(self, inst: Instance, space: StateSpace) -> None:
        self.inst = inst
        self.space = space
        n = space.n_products
        self.on_hand, pipe = space.decode()  # (S, N), (S, N, W)
        self.first_slot = np.where(space.lead_time >= 1, pipe[:, :, 0], 0)  # arriving now
        self.position = self.on_hand + pipe.sum(2)
        strides = space.strides
        self.on_hand_stride = strides[:n]
        self.shifted = np.zeros(space.n_states, dtype=np.int64)  # P' without the new order
        self.order_stride = np.zeros(n, dtype=np.int64)  # where q_i lands (L_i >= 1)
        for i, axes in enumerate(space.pipe_axes):
            for j in range(len(axes) - 1):
                self.shifted += pipe[:, i, j + 1] * strides[axes[j]]
            if axes:
                self.order_stride[i] = strides[axes[-1]]
        self.zero_lead = (space.lead_time == 0).astype(np.int64)

    def post_index(self, q: np.ndarray) -> np.ndarray:
        """Flat ``(a, P')`` index per state for orders ``q`` of shape ``(N,)`` or ``(S, N)``."""
        arrivals = self.first_slot + q * self.zero_lead
        accepted = accepted_arrivals(self.on_hand, arrivals, self.inst.warehouse_capacity)
        a = np.minimum(self.on_hand + accepted, self.space.on_hand_cap)  # clip: unreachable only
        return (a * self.on_hand_stride).sum(-1) + self.shifted + (q * self.order_stride).sum(-1)

    def separable(self) -> bool:
        """Without a warehouse capacity the index is a sum of one term per product."""
        return self.inst.warehouse_capacity is None

    def product_terms(self, i: int) -> list[np.ndarray]:
        """Index contribution ``(S,)`` of product ``i`` for each order ``0..Q_i`` (separable case)."""
        stride = int(self.on_hand_stride[i])
        a = np.minimum(self.on_hand[:, i] + self.first_slot[:, i], self.space.on_hand_cap[i])
        base = a * stride
        terms = []
        for q in range(int(self.space.order_cap[i]) + 1):
            if self.zero_lead[i]:
                terms.append(np.minimum(self.on_hand[:, i] + q, self.space.on_hand_cap[i]) * stride)
            else:
                terms.append(base + q * int(self.order_stride[i]))
        return terms

    def allowed(self, t: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Largest allowed order per state ``(S, N)`` and whether the cap removed any."""
        q_t = np.where(t + self.space.lead_time <= horizon - 1, self.space.order_cap, 0)
        room = np.clip(self.space.inventory_cap - self.position, 0, None)
        allow = np.minimum(room, q_t)
        return allow, (allow < q_t).any(1)


def solve_dp(
    inst: Instance,
    *,
    inventory_cap: int | Sequence[int] | None = None,
    order_cap: int | Sequence[int] | None = None,
    tail_tol: float = 1e-9,
    progress: bool = False,
    max_states: int = MAX_STATES,
) -> DPSolution:
    """Optimal expected discounted profit and policy by backward induction.

    Parameters
    ----------
    inst
        The instance; every product needs a finite ``max_order`` unless ``order_cap`` is given.
    inventory_cap
        Largest inventory position (on-hand plus pipeline) after ordering, per product or one
        for all. Default: the largest position any policy can reach, which restricts nothing.
    order_cap
        Largest order per product (``min`` with ``max_order``); a smaller value restricts.
    tail_tol
        Probability below which the forward pass counts a state as unreachable; also the
        tolerance of its mass-conservation check.
    progress
        Show a progress bar over periods.
    max_states
        Refuse (with the numbers and the fix) when a period has more states than this.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    n, horizon, gamma = inst.n_products, inst.horizon, inst.discount
    q_cap, c_cap, h_cap, reachable = _resolve_caps(inst, inventory_cap, order_cap)
    space = StateSpace.build(inst.lead_time.astype(np.int64), q_cap, c_cap, h_cap)
    if space.n_states > max_states:
        raise DPError(
            f"{inst.name}: the DP would have {float(space.n_states):.3g} states per period (on-hand "
            f"caps {_short(h_cap.tolist())}, order caps {_short(q_cap.tolist())}, lead times "
            f"{_short(inst.lead_time.tolist())}), "
            f"more than max_states={max_states:,}; pass a smaller inventory_cap (e.g. a high "
            "demand quantile over lead time + 1 periods), a smaller order_cap or max_order, "
            "or a shorter horizon"
        )
    n_joint = joint_slate_count(n, inst.n_segments, inst.slate_size)
    if n_joint > MAX_JOINT_SLATES:
        raise DPError(
            f"{inst.name}: {n_joint:,} joint slates ({inst.n_segments} segments, slate size "
            f"{inst.slate_size}, {n} products) exceed {MAX_JOINT_SLATES}; the DP is for tiny instances"
        )
    slates = enumerate_slates(n, inst.n_segments, inst.slate_size)
    # One set of blocks per distinct row of arrival rates (a single set without seasonality).
    _, first, which = np.unique(inst.arrival_rate, axis=0, return_index=True, return_inverse=True)
    sets = [_make_blocks(inst, slates, h_cap, len(space.shape), int(t)) for t in first]
    blocks = [sets[r] for r in which.reshape(-1)]  # blocks[t]
    step = _OrderStep(inst, space)
    money = unit_values(inst)
    s_count = space.n_states
    orders_tab = np.zeros((horizon, s_count, n), dtype=np.int16)
    slate_tab = np.zeros((horizon, s_count), dtype=np.int32)
    values = np.zeros((horizon, s_count))
    restricted = np.zeros((horizon, s_count), dtype=bool)
    v_next: np.ndarray | None = None
    order_grid = [
        np.array(q, dtype=np.int64) for q in itertools.product(*(range(int(c) + 1) for c in q_cap))
    ]

    for t in tqdm(range(horizon - 1, -1, -1), desc="dp", disable=not progress, unit="period"):
        last = t == horizon - 1
        post = np.full(space.shape, -np.inf)
        post_slate = np.zeros(space.shape, dtype=np.int32)
        for block in blocks[t]:
            post[block.rows], post_slate[block.rows] = _best_slates(
                space, block, v_next, gamma, last
            )
        flat_post, flat_slate = post.reshape(-1), post_slate.reshape(-1)
        allow, restricted[t] = step.allowed(t, horizon)
        allow_max = allow.max(0)
        best_v = np.full(s_count, -np.inf)
        best_q = np.zeros(s_count, dtype=np.int64)
        best_idx = np.zeros(s_count, dtype=np.int64)
        terms = [step.product_terms(i) for i in range(n)] if step.separable() else None
        for qi, q in enumerate(order_grid):
            if (q > allow_max).any():
                continue
            ok = np.logical_and.reduce([allow[:, i] >= q[i] for i in range(n)])
            if terms is None:
                idx = step.post_index(q)
            else:
                idx = step.shifted + sum(terms[i][q[i]] for i in range(n))
            val = flat_post[idx] + float(_order_money(money, q))
            val[~ok] = -np.inf
            better = val > best_v
            best_v = np.where(better, val, best_v)
            best_q[better] = qi
            best_idx[better] = idx[better]
        values[t] = best_v
        orders_tab[t] = np.stack(order_grid)[best_q]
        slate_tab[t] = flat_slate[best_idx]
        v_next = best_v.reshape(space.shape)

    tables = DPTables(orders=orders_tab, slate_ids=slate_tab, slate_table=slates, values=values)
    init = inst.initial_inventory.astype(np.int64)[None]
    s0 = int(space.index(init, np.zeros((1, n, max(1, inst.max_lead_time)), dtype=np.int64))[0])
    fwd_value, visits, lost_mass, n_reach = _forward(
        inst, space, step, blocks, tables, restricted, s0, tail_tol
    )
    if lost_mass > max(tail_tol, 1e-9):
        raise RuntimeError(
            f"{inst.name}: the DP's forward pass lost probability mass {lost_mass:.3g} "
            f"(tolerance {tail_tol:g}); this is a bug in coordopt.solvers.dp, please report it"
        )
    exact = bool((c_cap >= reachable).all() and np.array_equal(q_cap, inst.max_order))
    optimum = float(values[0, s0])
    if exact:
        message = "exact: the caps remove no decision"
    else:
        message = (
            f"restricted: inventory position <= {c_cap.tolist()} (reachable {reachable.tolist()}), "
            f"orders <= {q_cap.tolist()} (max_order {inst.max_order.tolist()}); the value is the "
            f"optimum over policies within these caps, a lower bound on the true optimum; the "
            f"inventory cap removed order options in {visits:.3g} expected periods"
        )
    trunc = Truncation(
        exact=exact,
        inventory_cap=c_cap,
        reachable_position=reachable,
        order_cap=q_cap,
        max_order=inst.max_order.copy(),
        restricted_visits=visits,
        lost_mass=lost_mass,
        forward_value=fwd_value,
        message=message,
    )
    return DPSolution(
        value=optimum,
        status=SolveStatus.OPTIMAL if exact else SolveStatus.OPTIMAL_RESTRICTED,
        seconds=time.perf_counter() - t0,
        n_states=s_count,
        reachable_states=n_reach,
        first_orders=orders_tab[0, s0].astype(np.int64),
        first_slates=slates[slate_tab[0, s0]],
        policy=tables,
        space=space,
        truncation=trunc,
        horizon=horizon,
    )


def _best_slates(
    space: StateSpace, block: _Block, v_next: np.ndarray | None, gamma: float, last: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``G_t`` on one block: the best joint slate's value and id at every ``(a, P')``.

    ``value_S = r(a, mu_S) + gamma * E[V_{t+1}(a - min(a, D), P')]``; ties keep the slate
    enumerated first (the smallest).
    """
    n = space.n_products
    shape = tuple(r.stop - r.start for r in block.rows) + space.shape[n:]
    best = np.full(shape, -np.inf)
    arg = np.zeros(shape, dtype=np.int32)
    for u, rep in enumerate(block.reps):
        value = (block.reward_last if last else block.reward)[u]
        if v_next is not None:
            value = value + gamma * _contract(v_next, block.kernels[u])
        better = np.broadcast_to(value > best, shape)
        best = np.where(better, value, best)
        arg[better] = rep
    return best, arg


def _forward(
    inst: Instance,
    space: StateSpace,
    step: _OrderStep,
    blocks: list[list[_Block]],
    tables: DPTables,
    restricted: np.ndarray,
    s0: int,
    tail_tol: float,
) -> tuple[float, float, float, int]:
    """Propagate the state distribution under the computed policy.

    Returns ``(expected discounted profit, expected restricted periods, lost mass, reachable
    (period, state) pairs)``; the profit must equal the DP value (a built-in consistency check).
    """
    money = unit_values(inst)
    dist = np.zeros(space.n_states)
    dist[s0] = 1.0
    total, visits, disc, reach, lost = 0.0, 0.0, 1.0, 0, 0.0
    for t in range(inst.horizon):
        last = t == inst.horizon - 1
        live = dist > 0
        reach += int((dist > tail_tol).sum())
        visits += float(dist[restricted[t]].sum())
        q = tables.orders[t].astype(np.int64)
        total += disc * float(dist @ _order_money(money, q))
        post_idx = step.post_index(q)
        nxt = np.zeros(space.shape)
        for j in np.unique(tables.slate_ids[t][live]):
            sel = live & (tables.slate_ids[t] == j)
            mass = np.bincount(post_idx[sel], weights=dist[sel], minlength=space.n_states)
            mass = mass.reshape(space.shape)
            for block in blocks[t]:
                part = mass[block.rows]
                if not part.any():
                    continue
                u = int(block.u_of_joint[j])
                reward = (block.reward_last if last else block.reward)[u]
                total += disc * float((part * reward).sum())
                if not last:
                    nxt += _contract(part, [k.T for k in block.kernels[u]])
        disc *= inst.discount
        if not last:
            dist = nxt.reshape(-1)
            lost = max(lost, abs(1.0 - float(dist.sum())))
    return total, visits, lost, reach


# --------------------------------------------------------------------------- the policy


class SolutionCache:
    """The last ``size`` DP solutions, keyed by the instance's content and the options, so
    that policies made again for the same instance (each evaluation, each study cell) do not
    solve again; an edited copy of an instance is a different key."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], DPSolution] = (
            OrderedDict()
        )

    def solve(self, inst: Instance, options: dict[str, Any]) -> DPSolution:
        """``solve_dp(inst, **options)``, from the cache when solved before."""
        key = (content_hash(inst), tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        sol = solve_dp(inst, **options)
        self._items[key] = sol
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return sol

    def clear(self) -> None:
        self._items.clear()


SOLUTIONS = SolutionCache()
"""The cache :class:`DPPolicy` reads (``SOLUTIONS.clear()`` frees the memory)."""


class DPPolicy:
    """The DP's optimal policy as a batched :class:`~coordopt.policies.Policy`.

    Solves the DP on construction (through :data:`SOLUTIONS`, keyed by the instance's content
    and the options) and answers each batch by one table lookup: state tensors to numpy
    indices to action tensors. Deterministic: ``seed`` is ignored.
    """

    name = "dp"

    def __init__(self, params: SimParams, *, seed: int = 0, **options: Any) -> None:
        del seed  # the optimal policy is deterministic given the state
        self.params = params
        self.solution = SOLUTIONS.solve(params.instance, options)

    def reset(self, batch_size: int) -> None:
        """The DP policy is Markov in the state: nothing to clear."""

    def act(self, state: SimState) -> Action:
        on_hand = state.on_hand.detach().cpu().numpy()
        pipeline = state.pipeline.detach().cpu().numpy()
        orders, slates = self.solution.action(state.t, on_hand, pipeline)
        p = self.params
        return Action(
            orders=torch.as_tensor(orders.astype(np.float64), dtype=p.dtype, device=p.device),
            slates=torch.as_tensor(slates, dtype=torch.long, device=p.device),
        )
