"""Block decomposition of the fluid program for large catalogs, with a Lagrangian bound.

The fluid program of docs/model.md has ``2 T M N`` choice variables (10 million on ``large``).
Products interact only through each segment-period's choice balance and slate capacity
(and the no-purchase mass ``y[t,k]`` that every product's offer constraint refers to).
This module

1. builds the product similarity graph (:func:`attraction_graph`: products linked by the
   cosine similarity of their demand-share profiles across segments, i.e. by how much they
   compete for the same customers) and splits it into blocks of close substitutes
   (:func:`product_blocks`: Louvain communities with a seed, oversized ones split again);
2. relaxes the coupling constraints with Lagrange multipliers; the relaxed program
   separates into one *priced block fluid program* per block plus a closed-form term for
   ``y`` (:func:`lagrangian_bound`), whose sum is an upper bound on the fluid optimum for
   ANY multipliers (proof in :func:`lagrangian_bound`);
3. assembles a plan for the whole catalog from the blocks' recommendation frequencies
   (:func:`assemble_plan`): a point of the full fluid LP that satisfies every constraint
   (residuals are reported by :func:`plan_residuals`), so its objective is an honest lower
   bound on the fluid optimum;
4. improves the multipliers by projected subgradient steps (Polyak step toward the best
   plan value), starting from the duals of per-segment steady-state choice programs
   (:func:`coarse_multipliers`), and reports the gap between plan and bound
   (:func:`solve_decomposed`).

Every block program keeps its HiGHS model between iterations, so a new set of multipliers
changes only objective coefficients and re-solves from the previous basis.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from coordopt.choice import best_revenue_slates
from coordopt.instance import Instance, Stockout
from coordopt.models.fluid import fluid_data
from coordopt.solution import GAP_TOLERANCE, Plan, Solution, SolveStatus, slates_from_frequency
from coordopt.solvers.highs_bulk import add_inventory_flow, assemble_fluid_lp, new_highs, to_highs

INF = math.inf


class DecompositionError(ValueError):
    """The decomposition cannot handle this instance; the message says why and what to do."""


# --------------------------------------------------------------------------- graph and blocks


def demand_profiles(inst: Instance) -> np.ndarray:
    """Demand-share profile of every product across segments, ``(N, M)``.

    Entry ``(i, k)`` is ``lambda_k w^R_ki / (w_k0 + sum_j w^N_kj)``: the mean demand product i
    would draw from segment k if it alone were recommended. Two products with parallel
    profiles sell to the same customers, so under the multinomial logit each takes demand
    from the other (close substitutes).
    """
    denom = inst.no_purchase + inst.base_attraction.sum(axis=1)
    return (inst.arrival_rate[:, None] * inst.rec_attraction / denom[:, None]).T


def attraction_graph(inst: Instance, *, neighbours: int = 10) -> nx.Graph:
    """Product similarity graph: node i per product, an edge from every product to its
    ``neighbours`` most similar products, weighted by the cosine similarity of their
    :func:`demand_profiles` (square-root scaled, so a big segment does not drown the rest).
    Isolated products (zero profile) stay as nodes without edges.
    """
    prof = np.sqrt(demand_profiles(inst))
    norm = np.linalg.norm(prof, axis=1)
    unit = prof / np.where(norm > 0, norm, 1.0)[:, None]
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    n = inst.n_products
    g = nx.Graph()
    g.add_nodes_from(range(n))
    k = min(neighbours, n - 1)
    if k <= 0:
        return g
    nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    for i in range(n):
        if norm[i] == 0:
            continue
        for j in nearest[i]:
            w = float(sim[i, j])
            if w > 0 and norm[j] > 0:
                g.add_edge(i, int(j), weight=w)
    return g


def _split_community(g: nx.Graph, nodes: list[int], cap: int, seed: int) -> list[list[int]]:
    """Split ``nodes`` into parts of at most ``cap``: Louvain at rising resolution on the
    induced subgraph, and, if that stops splitting, chunks in breadth-first order from the
    best-connected node (so a chunk still holds neighbours)."""
    if len(nodes) <= cap:
        return [sorted(nodes)]
    sub = g.subgraph(nodes)
    for resolution in (2.0, 4.0, 8.0):
        parts = nx.community.louvain_communities(
            sub, weight="weight", resolution=resolution, seed=seed
        )
        if len(parts) > 1:
            out: list[list[int]] = []
            for part in parts:
                out.extend(_split_community(g, list(part), cap, seed))
            return out
    start = max(nodes, key=lambda v: sub.degree(v, weight="weight"))
    order = list(nx.bfs_tree(sub, start))
    order += sorted(set(nodes) - set(order))
    return [sorted(order[s : s + cap]) for s in range(0, len(order), cap)]


def product_blocks(
    inst: Instance,
    *,
    max_block_size: int = 40,
    min_block_size: int = 4,
    neighbours: int = 10,
    seed: int = 0,
) -> list[np.ndarray]:
    """Blocks of close substitutes: Louvain communities of :func:`attraction_graph`
    (``seed`` fixes them), communities above ``max_block_size`` split again, and blocks
    below ``min_block_size`` merged greedily (smallest first, into the block they share the
    most edge weight with, if that stays within the cap) to save solver calls.

    Returns sorted product-index arrays that partition ``0..N-1``.
    """
    if max_block_size < 1:
        raise ValueError(f"max_block_size must be >= 1, got {max_block_size}")
    g = attraction_graph(inst, neighbours=neighbours)
    parts: list[list[int]] = []
    for comm in nx.community.louvain_communities(g, weight="weight", seed=seed):
        parts.extend(_split_community(g, list(comm), max_block_size, seed))
    parts.sort(key=len)
    owner = {v: b for b, part in enumerate(parts) for v in part}
    alive = [True] * len(parts)
    for b in range(len(parts)):
        if not alive[b] or len(parts[b]) >= min_block_size:
            continue
        link: dict[int, float] = {}
        for v in parts[b]:
            for u, attrs in g[v].items():
                c = owner[u]
                if c != b and alive[c] and len(parts[c]) + len(parts[b]) <= max_block_size:
                    link[c] = link.get(c, 0.0) + attrs["weight"]
        if link:
            target = max(link, key=lambda c: link[c])
            parts[target] = parts[target] + parts[b]
            for v in parts[b]:
                owner[v] = target
            alive[b] = False
    blocks = [np.array(sorted(p), dtype=np.int64) for p, a in zip(parts, alive, strict=True) if a]
    blocks.sort(key=lambda a: int(a[0]))
    return blocks


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, eq=False)
class FluidPoint:
    """A point of the full fluid program: choice masses ``alpha, beta (T,M,N)``, ``y (T,M)``;
    ``orders, sales, lost, inventory (T,N)``; ``indicators (T,N)`` (LP-relaxed order
    indicators, zeros without fixed order costs); ``objective`` its discounted profit."""

    alpha: np.ndarray
    beta: np.ndarray
    y: np.ndarray
    orders: np.ndarray
    sales: np.ndarray
    lost: np.ndarray
    inventory: np.ndarray
    indicators: np.ndarray
    objective: float

    def demand(self, inst: Instance) -> np.ndarray:
        """Expected demand ``x[t,k,i] = w^R alpha + w^N beta``, ``(T,M,N)``."""
        return inst.rec_attraction[None] * self.alpha + inst.base_attraction[None] * self.beta

    @property
    def rec_frequency(self) -> np.ndarray:
        """``alpha / y``: how often each product is on each segment's slate, ``(T,M,N)``."""
        y = self.y[..., None]
        return np.divide(self.alpha, y, out=np.zeros_like(self.alpha), where=y > 1e-12)


def _check_supported(inst: Instance) -> None:
    if inst.warehouse_capacity is not None:
        raise DecompositionError(
            f"instance '{inst.name}' has a warehouse_capacity, which couples every product's "
            "inventory; the block decomposition does not relax it. Solve the full program "
            "(coordopt.solvers.fluid.solve_fluid) or remove the capacity."
        )


def discount_factors(inst: Instance) -> np.ndarray:
    """``gamma^t`` for 0-based periods, ``(T,)``."""
    return inst.discount ** np.arange(inst.horizon, dtype=float)


def full_big_m(inst: Instance) -> np.ndarray:
    """Big-M of the order indicators of the full program, ``(T,N)`` (as :func:`fluid_data`)."""
    return fluid_data(inst).big_m


def fluid_objective(
    inst: Instance,
    orders: np.ndarray,
    sales: np.ndarray,
    lost: np.ndarray,
    inventory: np.ndarray,
    indicators: np.ndarray | None = None,
) -> float:
    """Discounted fluid profit of flows ``(T,N)`` (docs/model.md objective, LP-relaxed indicators)."""
    g = discount_factors(inst)[:, None]
    per = (
        inst.price * sales
        - inst.unit_cost * orders
        - inst.holding_cost * inventory
        - inst.lost_sale_penalty * lost
    )
    if indicators is not None:
        per = per - inst.fixed_order_cost * indicators
    total = float((g * per).sum())
    return total + float(g[-1, 0] * (inst.salvage_value * inventory[-1]).sum())


def plan_inventory(inst: Instance, demand: np.ndarray) -> tuple[np.ndarray, ...]:
    """Best orders, sales, lost sales, end inventory and indicators ``(T,N)`` for a fixed
    expected demand ``(T,N)``: the inventory part of the fluid program, one small LP whose
    products are independent (solved together by HiGHS).

    Rows per ``(t,i)``: ``s + l = demand``; ``I_t - I_{t-1} - q_{t-L} + s = P_t`` (start stock
    in period 0); with fixed order costs ``q <= M z``, ``0 <= z <= 1``.
    """
    import highspy

    t_n, n = inst.horizon, inst.n_products
    nv = t_n * n
    ind = bool((inst.fixed_order_cost > 0).any())
    nblk = 5 if ind else 4
    q, s, l, inv = (np.arange(nv).reshape(t_n, n) + j * nv for j in range(4))
    rows, cols, vals = [], [], []

    def add(r: np.ndarray, c: np.ndarray, v: float | np.ndarray) -> None:
        r, c = np.broadcast_arrays(r, c)
        rows.append(r.ravel())
        cols.append(c.ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), r.shape).ravel())

    split = np.arange(nv).reshape(t_n, n)
    flow = split + nv
    add(split, s, 1.0)
    add(split, l, 1.0)
    add_inventory_flow(add, flow, inv, s, q, inst.lead_time)
    n_rows = 2 * nv
    lo = np.zeros(n_rows)
    lo[split.ravel()] = np.asarray(demand, dtype=float).ravel()
    rhs = np.zeros((t_n, n))
    rhs[0] = inst.initial_inventory
    lo[flow.ravel()] = rhs.ravel()
    up = lo.copy()
    g = discount_factors(inst)[:, None]
    cost = np.zeros(nblk * nv)
    cost[q] = -g * inst.unit_cost
    cost[s] = g * inst.price
    cost[l] = -g * inst.lost_sale_penalty
    cost[inv] = -g * inst.holding_cost
    cost[inv[-1]] += g[-1] * inst.salvage_value
    col_up = np.full(nblk * nv, INF)
    col_up[q] = np.broadcast_to(inst.max_order, (t_n, n))
    if ind:
        z = np.arange(nv).reshape(t_n, n) + 4 * nv
        oi = np.arange(nv).reshape(t_n, n) + n_rows
        add(oi, q, 1.0)
        add(oi, z, -full_big_m(inst))
        lo = np.concatenate([lo, np.full(nv, -INF)])
        up = np.concatenate([up, np.zeros(nv)])
        n_rows += nv
        col_up[z] = 1.0
        cost[z] = -g * inst.fixed_order_cost
    mat = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, nblk * nv),
    )
    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nblk * nv, n_rows
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, np.zeros(nblk * nv), col_up
    lp.row_lower_, lp.row_upper_ = lo, up
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr.astype(np.int32)
    lp.a_matrix_.index_ = mat.indices.astype(np.int32)
    lp.a_matrix_.value_ = mat.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = nblk * nv, n_rows
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise DecompositionError(
            f"inventory program of '{inst.name}' not solved: {h.modelStatusToString(h.getModelStatus())}"
            " (is ordering unboundedly profitable, e.g. salvage above unit cost?)"
        )
    x = np.asarray(h.getSolution().col_value)
    zv = x[4 * nv :].reshape(t_n, n) if ind else np.zeros((t_n, n))
    return (x[q], np.maximum(x[s], 0), np.maximum(x[l], 0), np.maximum(x[inv], 0), zv)


def assemble_plan(inst: Instance, rec: np.ndarray, offered: np.ndarray | None = None) -> FluidPoint:
    """A feasible point of the full fluid program from recommendation frequencies.

    ``rec (T,M,N)`` in [0,1] is how often each product is recommended (``alpha / y``);
    ``offered`` (hidden mode only; default 1) how often it is in the choice set
    (``(alpha + beta) / y``). Frequencies are clipped to ``[0, offered]`` and every segment's
    total scaled down to the slate size K where it exceeds it; then
    ``y = lambda / (w0 + sum_i (w^R rec + w^N (offered - rec)))``, ``alpha = rec y``,
    ``beta = (offered - rec) y`` satisfy choice balance, the offer rows and slate capacity
    exactly, and :func:`plan_inventory` gives the best flows for the demand they induce.
    """
    t_n, m, n = inst.horizon, inst.n_segments, inst.n_products
    rec = np.clip(np.asarray(rec, dtype=float).reshape(t_n, m, n), 0.0, 1.0)
    if offered is None or inst.stockout is Stockout.LOST:
        off = np.ones_like(rec)
    else:
        off = np.clip(np.asarray(offered, dtype=float).reshape(t_n, m, n), 0.0, 1.0)
    rec = np.minimum(rec, off)
    k = inst.effective_slate_size
    total = rec.sum(axis=2, keepdims=True)
    rec = rec * np.minimum(1.0, k / np.maximum(total, 1e-300))
    wr, wn = inst.rec_attraction[None], inst.base_attraction[None]
    weight = (wr * rec + wn * (off - rec)).sum(axis=2)
    y = inst.arrival_rate[None, :] / (inst.no_purchase[None, :] + weight)
    alpha = rec * y[..., None]
    beta = (off - rec) * y[..., None]
    demand = (wr * alpha + wn * beta).sum(axis=1)
    q, s, l, inv, z = plan_inventory(inst, demand)
    obj = fluid_objective(inst, q, s, l, inv, z)
    return FluidPoint(alpha, beta, y, q, s, l, inv, z, obj)


def plan_residuals(inst: Instance, p: FluidPoint) -> dict[str, float]:
    """Largest violation of every constraint family of the full fluid program by ``p``
    (0 means satisfied; compare with a tolerance around 1e-6 relative to the flows)."""
    wr, wn = inst.rec_attraction[None], inst.base_attraction[None]
    x = wr * p.alpha + wn * p.beta
    bal = inst.no_purchase[None] * p.y + x.sum(axis=2) - inst.arrival_rate[None]
    once = p.alpha + p.beta - p.y[..., None]
    once_v = np.maximum(once, 0) if inst.stockout is Stockout.HIDDEN else np.abs(once)
    slate = p.alpha.sum(axis=2) - inst.effective_slate_size * p.y
    split = p.sales + p.lost - x.sum(axis=1)
    t_n = inst.horizon
    avail = np.zeros_like(p.inventory)
    avail[0] = inst.initial_inventory
    avail[1:] = p.inventory[:-1]
    for i in range(inst.n_products):
        lt = int(inst.lead_time[i])
        if lt < t_n:
            avail[lt:, i] += p.orders[: t_n - lt, i]
    flow = p.inventory - (avail - p.sales)
    neg = min(
        float(a.min())
        for a in (p.alpha, p.beta, p.y, p.orders, p.sales, p.lost, p.inventory, p.indicators)
    )
    caps = np.where(np.isfinite(inst.max_order), p.orders - inst.max_order, 0.0)
    out = {
        "choice_balance": float(np.abs(bal).max()),
        "offer_once": float(once_v.max()),
        "slate_capacity": float(max(slate.max(), 0.0)),
        "demand_split": float(np.abs(split).max()),
        "inventory_flow": float(np.abs(flow).max()),
        "nonnegativity": max(0.0, -neg),
        "max_order": float(max(caps.max(), 0.0)),
    }
    if (inst.fixed_order_cost > 0).any():
        out["order_indicator"] = float(max((p.orders - full_big_m(inst) * p.indicators).max(), 0.0))
    return out


# --------------------------------------------------------------------------- the full LP


def solve_full_lp(inst: Instance) -> tuple[FluidPoint, dict[str, np.ndarray]]:
    """Solve the whole fluid program at once (bulk HiGHS path); for instances small enough.

    Returns the optimal point and the multipliers of the coupling rows in the sign
    convention of :func:`lagrangian_bound`: ``mu (T,M)`` (choice balance), ``nu (T,M)``
    (slate capacity, >= 0) and ``pi (T,M,N)`` (offer-once rows, so that the block share
    ``theta_b = sum_{i in b} pi``).
    """
    import highspy

    d = fluid_data(inst)
    arrays = assemble_fluid_lp(d)
    h = new_highs()
    to_highs(arrays, h)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise DecompositionError(
            f"full fluid program of '{inst.name}' not solved: "
            f"{h.modelStatusToString(h.getModelStatus())}"
        )
    sol = h.getSolution()
    x = np.asarray(sol.col_value)
    dual = np.asarray(sol.row_dual)
    lay = arrays.layout
    z = x[lay.col("z")] if "z" in lay.cols else np.zeros((inst.horizon, inst.n_products))
    point = FluidPoint(
        x[lay.col("alpha")],
        x[lay.col("beta")],
        x[lay.col("y")],
        x[lay.col("q")],
        x[lay.col("s")],
        x[lay.col("l")],
        x[lay.col("inv")],
        z,
        float(h.getInfo().objective_function_value),
    )
    # HiGHS row duals of a maximisation are the derivatives of the optimum with respect to
    # the row bound, which is the sign the Lagrangian uses for all three families (a test
    # checks that these multipliers make the bound equal the optimum).
    mults = {
        "mu": dual[lay.row("choice_balance")],
        "nu": np.maximum(dual[lay.row("slate_capacity")], 0.0),
        "pi": dual[lay.row("offer_once")],
    }
    return point, mults


# --------------------------------------------------------------------------- Lagrangian


@dataclass(frozen=True, eq=False)
class Multipliers:
    """Lagrange multipliers: ``mu (T,M)`` choice balance (free), ``nu (T,M)`` slate capacity
    (>= 0), ``theta (B,T,M)`` copies ``y^b = y`` of block b (free)."""

    mu: np.ndarray
    nu: np.ndarray
    theta: np.ndarray

    def y_coefficient(self, inst: Instance) -> np.ndarray:
        """``K nu - w0 mu + sum_b theta_b`` ``(T,M)``: the Lagrangian's coefficient of ``y``."""
        return (
            inst.effective_slate_size * self.nu
            - inst.no_purchase[None] * self.mu
            + self.theta.sum(axis=0)
        )


def y_upper_bound(inst: Instance) -> np.ndarray:
    """``Ybar_k``: the largest no-purchase mass any feasible point has, ``(M,)``.

    Choice balance with non-negative terms gives ``w0 y <= lambda``; in "lost" mode every
    product is offered (``x_i >= w^N_i y``), so ``(w0 + sum_i w^N_i) y <= lambda``.
    """
    w = inst.no_purchase.copy()
    if inst.stockout is Stockout.LOST:
        w = w + inst.base_attraction.sum(axis=1)
    return inst.arrival_rate / w


class BlockProgram:
    """The priced fluid program of one block, kept alive in HiGHS between multiplier updates.

    It is the fluid program of the block's products alone, with its own no-purchase mass
    ``y^b``, where (i) the choice balance becomes the valid inequality
    ``(w0 + O_k) y^b + sum_{i in b} x_i <= lambda_k`` with ``O_k = sum_{j not in b} w^N_kj``
    in "lost" mode (every outside product is offered, so draws at least ``w^N y``; 0 in
    hidden mode), (ii) slate capacity ``sum_{i in b} alpha_i <= min(K, |b|) y^b``, (iii)
    ``y^b <= Ybar``, and the objective subtracts ``mu x + nu alpha + theta_b y^b``.

    ``keep_model``: keep the solved HiGHS model, so the next multipliers re-solve from its
    basis (fast, but memory grows with the block: about 30 MB per product on ``large``);
    otherwise rebuild it at every solve.
    """

    def __init__(self, inst: Instance, products: np.ndarray, keep_model: bool = True) -> None:
        self.keep_model = keep_model
        self.products = np.asarray(products, dtype=np.int64)
        b = self.products
        sub = _sub_instance(inst, b)
        d = fluid_data(sub)
        if d.order_indicators:
            d = dataclasses.replace(d, big_m=full_big_m(inst)[:, b])
        arrays = assemble_fluid_lp(d)
        lay = arrays.layout
        row_lo = arrays.row_lower.copy()
        row_lo[lay.row("choice_balance")] = -INF
        col_up = arrays.col_upper.copy()
        col_up[lay.col("y")] = np.broadcast_to(y_upper_bound(inst), (inst.horizon, inst.n_segments))
        self.layout = lay
        self.base_cost = arrays.cost.copy()
        self._arrays = dataclasses.replace(arrays, row_lower=row_lo, col_upper=col_up)
        self.highs: Any = None
        self.wr = inst.rec_attraction[:, b]
        self.wn = inst.base_attraction[:, b]
        self.value = math.nan
        self.solution: np.ndarray | None = None

    def solve(
        self, mu: np.ndarray, nu: np.ndarray, theta: np.ndarray, time_limit: float | None = None
    ) -> float:
        """Optimal value of the priced block program for multipliers ``mu, nu, theta_b``."""
        import highspy

        lay = self.layout
        cost = self.base_cost.copy()
        a, b, y = lay.col("alpha"), lay.col("beta"), lay.col("y")
        cost[a] -= mu[..., None] * self.wr[None] + nu[..., None]
        cost[b] -= mu[..., None] * self.wn[None]
        cost[y] -= theta
        if self.highs is None:
            self.highs = new_highs()
            to_highs(self._arrays, self.highs)
        self.highs.changeColsCost(len(cost), np.arange(len(cost), dtype=np.int32), cost)
        if time_limit is not None:
            self.highs.setOptionValue("time_limit", float(max(time_limit, 1.0)))
        self.highs.run()
        status = self.highs.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise DecompositionError(
                f"block of {len(self.products)} products not solved to optimality "
                f"({self.highs.modelStatusToString(status)}); the bound needs exact block optima."
                " Raise the time limit or lower max_block_size."
            )
        self.solution = np.asarray(self.highs.getSolution().col_value)
        self.value = float(self.highs.getInfo().objective_function_value)
        if not self.keep_model:
            self.highs = None  # HiGHS holds ~30 MB per product of a large block after a solve
        return self.value

    def part(self, name: str) -> np.ndarray:
        """Block of the last solution (``alpha``, ``beta``, ``y``, ``q``...) in its shape."""
        assert self.solution is not None, "solve the block first"
        return self.solution[self.layout.col(name)]


def _sub_instance(inst: Instance, b: np.ndarray) -> Instance:
    """The instance restricted to products ``b``; outside products' base attraction is
    folded into the no-purchase weight in "lost" mode (they are always offered)."""
    outside = inst.base_attraction.sum(axis=1) - inst.base_attraction[:, b].sum(axis=1)
    w0 = inst.no_purchase + (np.maximum(outside, 0.0) if inst.stockout is Stockout.LOST else 0)
    return inst.replace(
        name=f"{inst.name}[block of {len(b)}]",
        product_names=tuple(inst.product_names[i] for i in b),
        price=inst.price[b],
        unit_cost=inst.unit_cost[b],
        holding_cost=inst.holding_cost[b],
        lost_sale_penalty=inst.lost_sale_penalty[b],
        lead_time=inst.lead_time[b],
        initial_inventory=inst.initial_inventory[b],
        salvage_value=inst.salvage_value[b],
        fixed_order_cost=inst.fixed_order_cost[b],
        max_order=inst.max_order[b],
        base_attraction=inst.base_attraction[:, b],
        rec_attraction=inst.rec_attraction[:, b],
        no_purchase=w0,
        slate_size=min(inst.slate_size, len(b)),
    )


@dataclass(frozen=True, eq=False)
class LagrangianValue:
    """One evaluation of the Lagrangian dual function: ``bound`` and its parts, the
    maximising ``y (T,M)``, the subgradient (``g_mu, g_nu (T,M)``, ``g_theta (B,T,M)``) and
    each block's recommendation frequencies ``rec (T,M,N)`` (``alpha^b / y^b``)."""

    bound: float
    constant: float
    y_term: float
    block_values: np.ndarray
    y: np.ndarray
    g_mu: np.ndarray
    g_nu: np.ndarray
    g_theta: np.ndarray
    rec: np.ndarray
    offered: np.ndarray


def lagrangian_bound(
    inst: Instance, programs: list[BlockProgram], mult: Multipliers, time_limit: float | None = None
) -> LagrangianValue:
    """Upper bound on the fluid optimum for ANY multipliers ``mult`` (``nu >= 0``).

    Relaxation: give every block b its own copy ``y^b`` of the no-purchase mass and add
    ``y^b = y``; dualise the choice balance (``mu``), slate capacity (``nu``) and the copy
    constraints (``theta_b``):

        L = sum_tk mu_tk lambda_k + max_{0 <= y <= Ybar} sum_tk (K nu - w0 mu + sum_b theta_b) y
            + sum_b max_{block b feasible} [profit_b - sum mu x - sum nu alpha - sum theta_b y^b]

    **Validity.** Take any feasible point P of the full fluid program and set ``y^b = y``.
    P satisfies every constraint kept in a block program (offer rows, inventory flow, the
    valid inequalities of :class:`BlockProgram`: outside products are offered so draw
    ``x_j >= w^N_j y`` in "lost" mode, alpha of block b sum to at most ``K y`` and to at
    most ``|b| y``, and ``y <= Ybar`` by :func:`y_upper_bound`). At P the Lagrangian equals
    ``profit(P) + mu * 0 + nu * (K y - sum alpha) + theta * 0 >= profit(P)`` because
    ``nu >= 0`` and capacity slack is ``>= 0``. The relaxed feasible set is a product of the
    ``y`` box and the blocks' sets and contains P, so the maximum of the Lagrangian, which
    splits into the separate maxima above, is ``>= profit(P)``. P was any feasible point,
    hence ``L >= `` fluid optimum. The y-term is in closed form:
    ``sum Ybar max(0, coefficient)``. By LP duality, ``L`` equals the optimum at the right
    multipliers (e.g. the full program's duals, :func:`solve_full_lp`).
    """
    if (mult.nu < -1e-12).any():
        raise ValueError("slate-capacity multipliers nu must be >= 0 for a valid bound")
    t_n, m, n = inst.horizon, inst.n_segments, inst.n_products
    ybar = np.broadcast_to(y_upper_bound(inst), (t_n, m))
    coef = mult.y_coefficient(inst)
    y = np.where(coef > 0, ybar, 0.0)
    y_term = float((ybar * np.maximum(coef, 0.0)).sum())
    constant = float((mult.mu * inst.arrival_rate[None]).sum())
    values = np.zeros(len(programs))
    x_sum = np.zeros((t_n, m))
    a_sum = np.zeros((t_n, m))
    g_theta = np.zeros((len(programs), t_n, m))
    rec = np.zeros((t_n, m, n))
    offered = np.ones((t_n, m, n))
    t_start = time.perf_counter()
    for j, prog in enumerate(programs):
        left = None if time_limit is None else time_limit - (time.perf_counter() - t_start)
        values[j] = prog.solve(mult.mu, mult.nu, mult.theta[j], left)
        al, be, yb = prog.part("alpha"), prog.part("beta"), prog.part("y")
        x_sum += (prog.wr[None] * al + prog.wn[None] * be).sum(axis=2)
        a_sum += al.sum(axis=2)
        g_theta[j] = y - yb
        safe = yb[..., None] > 1e-12
        b = prog.products
        rec[:, :, b] = np.divide(al, yb[..., None], out=np.zeros_like(al), where=safe)
        offered[:, :, b] = np.where(safe, (al + be) / np.where(safe, yb[..., None], 1.0), 1.0)
    g_mu = inst.arrival_rate[None] - inst.no_purchase[None] * y - x_sum
    g_nu = inst.effective_slate_size * y - a_sum
    bound = constant + y_term + float(values.sum())
    return LagrangianValue(bound, constant, y_term, values, y, g_mu, g_nu, g_theta, rec, offered)


def demand_values(inst: Instance) -> np.ndarray:
    """Rough marginal value of one unit of expected demand, ``(T,N)``: the discounted margin
    ``gamma^t p - gamma^(t-L) c`` of a replenished sale (an unreplenishable early period
    uses the order placed at period 0), floored at minus the lost-sale penalty."""
    g = discount_factors(inst)
    t = np.arange(inst.horizon)[:, None]
    placed = np.clip(t - inst.lead_time[None, :], 0, None)
    val = g[:, None] * inst.price[None] - g[placed] * inst.unit_cost[None]
    return np.maximum(val, -g[:, None] * inst.lost_sale_penalty[None])


def coarse_multipliers(
    inst: Instance, blocks: list[np.ndarray], values: np.ndarray | None = None
) -> Multipliers:
    """Starting multipliers from per-segment choice programs with demand valued at
    ``values (T,N)`` (default :func:`demand_values`).

    For each period and segment the program ``max sum_i v_i x_i`` subject to choice balance,
    offer rows and slate capacity is an MNL assortment problem; its optimum per customer R
    (exact, :func:`coordopt.choice.best_revenue_slates`) is the choice-balance dual
    ``mu = R``; the slate dual ``nu`` is the (K+1)-th largest positive gain
    ``(v_i - R) u_i`` (``u = w^R - w^N``), and the offer-row duals
    ``pi_i = (v_i - R) w^N_i + max(0, (v_i - R) u_i - nu)`` give ``theta_b = sum_{i in b}
    pi_i``; together they make the y-coefficient zero (dual feasibility of y).
    """
    v = demand_values(inst) if values is None else np.asarray(values, dtype=float)
    t_n, m, n = inst.horizon, inst.n_segments, inst.n_products
    k = inst.effective_slate_size
    uplift = inst.rec_attraction - inst.base_attraction
    mu = np.zeros((t_n, m))
    nu = np.zeros((t_n, m))
    pi = np.zeros((t_n, m, n))
    rows, inverse = np.unique(np.round(v, 12), axis=0, return_inverse=True)
    for r, vals in enumerate(rows):
        _, rate = best_revenue_slates(inst, prices=vals)
        gain = (vals[None] - rate[:, None]) * uplift
        ordered = -np.sort(-gain, axis=1)
        nu_r = np.maximum(ordered[:, k], 0.0) if k < n else np.zeros(m)
        pi_r = (vals[None] - rate[:, None]) * inst.base_attraction + np.maximum(
            0.0, gain - nu_r[:, None]
        )
        for t in np.flatnonzero(inverse.ravel() == r):
            mu[t], nu[t], pi[t] = rate, nu_r, pi_r
    theta = np.stack([pi[:, :, b].sum(axis=2) for b in blocks])
    # absorb rounding so that the y coefficient is exactly zero
    resid = k * nu - inst.no_purchase[None] * mu + theta.sum(axis=0)
    theta[0] -= resid
    return Multipliers(mu, nu, theta)


def multipliers_from_duals(duals: dict[str, np.ndarray], blocks: list[np.ndarray]) -> Multipliers:
    """Multipliers from the full program's duals (:func:`solve_full_lp`)."""
    pi = duals["pi"]
    theta = np.stack([pi[:, :, b].sum(axis=2) for b in blocks])
    return Multipliers(duals["mu"].copy(), np.maximum(duals["nu"], 0.0), theta)


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True, eq=False)
class DecomposedPlan:
    """A plan for the whole catalog assembled from block solutions, with a valid bound.

    Arrays have the shapes of :class:`~coordopt.solvers.fluid.FluidSolution`: ``orders,
    sales, lost, inventory (T,N)``, ``alpha, beta, x, rec_frequency (T,M,N)``, ``y (T,M)``.
    ``value`` is the plan's objective as a feasible point of the full fluid program
    (``residual``: its largest constraint violation), ``bound`` the best Lagrangian bound,
    ``gap = (bound - value) / |bound|``.
    """

    blocks: list[np.ndarray]
    orders: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    x: np.ndarray
    y: np.ndarray
    rec_frequency: np.ndarray
    sales: np.ndarray
    lost: np.ndarray
    inventory: np.ndarray
    value: float
    bound: float
    residual: float
    seconds: float
    slate_size: int
    bound_history: list[float] = field(default_factory=list)
    value_history: list[float] = field(default_factory=list)
    multipliers: Multipliers | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return (self.bound - self.value) / max(abs(self.bound), 1e-12)

    def result(self) -> Solution:
        """The shared solution contract: ``objective`` and ``bound`` are the Lagrangian
        bound, ``plan_value`` the assembled plan's objective; FEASIBLE unless the gap is
        within :data:`~coordopt.solution.GAP_TOLERANCE`."""
        return Solution(
            method="decompose",
            status=SolveStatus.OPTIMAL if self.gap <= GAP_TOLERANCE else SolveStatus.FEASIBLE,
            objective=self.bound,
            seconds=self.seconds,
            message=f"Lagrangian bound over {len(self.blocks)} blocks; plan residual "
            f"{self.residual:.3g}",
            first_orders=self.orders[0],
            first_slates=slates_from_frequency(self.rec_frequency[0], self.slate_size),
            bound=self.bound,
            plan_value=self.value,
            plan=Plan(
                orders=self.orders,
                alpha=self.alpha,
                beta=self.beta,
                x=self.x,
                y=self.y,
                rec_frequency=self.rec_frequency,
                sales=self.sales,
                lost=self.lost,
                inventory=self.inventory,
                inventory_price=np.full_like(self.orders, np.nan),
            ),
            details={"blocks": len(self.blocks), "residual": self.residual},
        )

    @property
    def block_sizes(self) -> list[int]:
        return [len(b) for b in self.blocks]

    def summary(self) -> dict[str, Any]:
        """Plain-JSON summary (sizes, bound, value, gap, histories, timings)."""
        sizes = self.block_sizes
        return {
            "blocks": len(sizes),
            "block_size_min": min(sizes),
            "block_size_max": max(sizes),
            "block_size_mean": float(np.mean(sizes)),
            "value": self.value,
            "bound": self.bound,
            "gap": self.gap,
            "residual": self.residual,
            "seconds": self.seconds,
            "bound_history": self.bound_history,
            "value_history": self.value_history,
            "timings": self.timings,
        }


def solve_decomposed(
    inst: Instance,
    *,
    max_block_size: int = 40,
    min_block_size: int = 4,
    iterations: int = 3,
    seed: int = 0,
    neighbours: int = 10,
    blocks: list[np.ndarray] | None = None,
    start: Multipliers | None = None,
    time_limit: float | None = None,
    step_scale: float = 0.5,
    keep_models: bool | None = None,
    progress: bool = False,
) -> DecomposedPlan:
    """Block-decomposed fluid plan of ``inst`` with a Lagrangian upper bound.

    Starts from :func:`coarse_multipliers` (or ``start``), evaluates the Lagrangian
    (``iterations + 1`` times in all), assembles a full plan from the block frequencies of
    every evaluation (:func:`assemble_plan`) and keeps the best, and moves the multipliers
    by a projected subgradient step with Polyak's step size ``s (L - value) / |g|^2``
    (``s = step_scale``, halved and restarted from the best multipliers whenever a step fails
    to lower the bound). The bound is the smallest Lagrangian value seen; ``time_limit``
    (seconds) stops the loop early after a complete evaluation. ``keep_models`` keeps every
    block's HiGHS model for warm re-solves (default: when ``N M T <= 2e6``; memory-bound on
    ``large``, where models are rebuilt at each evaluation instead).
    """
    _check_supported(inst)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if blocks is None:
        blocks = product_blocks(
            inst,
            max_block_size=max_block_size,
            min_block_size=min_block_size,
            neighbours=neighbours,
            seed=seed,
        )
    covered = np.sort(np.concatenate(blocks))
    if not np.array_equal(covered, np.arange(inst.n_products)):
        raise DecompositionError("blocks must partition the products 0..N-1 exactly once")
    timings["blocks"] = time.perf_counter() - t0
    ts = time.perf_counter()
    if keep_models is None:
        keep_models = inst.n_products * inst.n_segments * inst.horizon <= 2_000_000
    programs = [BlockProgram(inst, b, keep_model=keep_models) for b in blocks]
    timings["build"] = time.perf_counter() - ts
    mult = start if start is not None else coarse_multipliers(inst, blocks)
    best_bound, best_mult = INF, mult
    best_lv: LagrangianValue | None = None
    best_plan: FluidPoint | None = None
    bounds: list[float] = []
    values: list[float] = []
    timings["lagrangian"] = timings["assemble"] = 0.0
    for it in range(iterations + 1):
        ts = time.perf_counter()
        left = None if time_limit is None else time_limit - (ts - t0)
        lv = lagrangian_bound(inst, programs, mult, time_limit=left)
        timings["lagrangian"] += time.perf_counter() - ts
        ts = time.perf_counter()
        plan = assemble_plan(inst, lv.rec, lv.offered)
        timings["assemble"] += time.perf_counter() - ts
        bounds.append(lv.bound)
        values.append(plan.objective)
        if lv.bound < best_bound:
            best_bound, best_mult, best_lv = lv.bound, mult, lv
        else:
            step_scale *= 0.5
        if best_plan is None or plan.objective > best_plan.objective:
            best_plan = plan
        if progress:
            print(
                f"[decompose] iteration {it}: bound {lv.bound:,.2f}, plan {plan.objective:,.2f}"
                f" ({time.perf_counter() - t0:.1f}s)",
                flush=True,
            )
        if it == iterations or (time_limit is not None and time.perf_counter() - t0 > time_limit):
            break
        g = best_lv
        assert g is not None
        norm2 = float((g.g_mu**2).sum() + (g.g_nu**2).sum() + (g.g_theta**2).sum())
        if norm2 <= 1e-18:
            break  # the relaxed solution is feasible: the bound is attained
        step = step_scale * (best_bound - best_plan.objective) / norm2
        m = best_mult
        mult = Multipliers(
            m.mu - step * g.g_mu, np.maximum(m.nu - step * g.g_nu, 0.0), m.theta - step * g.g_theta
        )
    assert best_plan is not None
    res = plan_residuals(inst, best_plan)
    x = best_plan.demand(inst)
    return DecomposedPlan(
        blocks=blocks,
        orders=best_plan.orders,
        alpha=best_plan.alpha,
        beta=best_plan.beta,
        x=x,
        y=best_plan.y,
        rec_frequency=best_plan.rec_frequency,
        sales=best_plan.sales,
        lost=best_plan.lost,
        inventory=best_plan.inventory,
        value=best_plan.objective,
        bound=best_bound,
        residual=max(res.values()),
        seconds=time.perf_counter() - t0,
        slate_size=inst.effective_slate_size,
        bound_history=bounds,
        value_history=values,
        multipliers=best_mult,
        timings=timings,
    )
