"""The stochastic bound: a Lagrangian relaxation with one dynamic program per product.

docs/model.md ("The stochastic bound"). Once the slates of period t are fixed, product i's
demand is Poisson with rate ``d_it(S_t) = sum_k lambda_kt P_ki(S_kt)`` ("lost" mode) and its
inventory evolves on its own. Give every product its own rate decision ``u_it`` in
``[0, umax_it]`` (``umax_it = max_S d_it(S)``: i recommended alone, every other product at its
base weight, in every segment) and price the coupling ``u_it = d_it(S_t)`` with multipliers
``alpha_it`` (any reals, in period-t money). For every policy and every alpha

    value <= sum_t g_t sum_k lambda_kt max_S sum_i alpha_it P_ki(S)  +  sum_i V_i(alpha)     (*)

with ``g_t = gamma^t`` and ``V_i(alpha)`` the optimal expected discounted profit of product i
alone when it chooses its orders and ``u`` every period, pays ``g_t alpha_it u_it`` and faces
Poisson(``u``) demand (lost sales, holding, penalty, salvage, unit and fixed order cost,
``max_order``, lead time, start state as in the model).

**Validity of (*).** Fix a policy pi of the full problem. Along every path ``u_it :=
d_it(S_t)`` lies in ``[0, umax_it]``, so adding ``sum_t g_t sum_i alpha_it (d_it(S_t) - u_it) =
0`` changes nothing. (1) ``sum_i alpha_it d_it(S) = sum_k lambda_kt sum_i alpha_it P_ki(S_k)``,
and each segment's term is at most its best-revenue slate value at margins alpha -- the
first term of (*) (:func:`coordopt.choice.best_slates` returns a certified upper
bound on it even before Dinkelbach's iteration has converged). (2) Seen from product i,
pi is a randomised history-dependent policy of product i's program: given the history up to
the slate choice, product i's demand is Poisson(``u_it``) and independent of every other
product's demand (Poisson thinning), so everything else that happens is a randomisation
device independent of product i's future demands. Its expected profit less the priced
rate is therefore at most the optimum of that program, ``V_i(alpha)``, which a Markov
policy attains (finite horizon; the continuous rate is handled in (4)).

The program actually solved is a relaxation of ``V_i``'s program, so each step below only
raises the value (an upper bound stays an upper bound; the Bellman operator is monotone):

(3) **Postponed orders** (only where the state space of lead time ``L_i`` is too large,
``max_states``): an order placed at ``tau`` with lead time ``L`` may instead be decided at
``tau + d`` with lead time ``L' = L - d`` (same arrival, same cost ``g_tau (c q + F 1{q>0})``,
same cap). Deciding later, with more information, can copy every original policy, so the
value does not fall; the state shrinks to ``(on hand, L' pipeline slots)``.

(4) **The rate decision.** For a post-decision state ``(a, P')`` the period's value as a
function of ``u`` is ``f(u) = phi(u) - g (b + alpha) u`` with ``phi(u) = E psi(min(a, D))``,
``psi(s) = g (p + b) s - g h (a - s) + W(a - s, P')`` (``W``: next period's value). With
``P(D >= j)' = pmf(j-1)`` and ``pmf(m)' = pmf(m-1) - pmf(m)``,
``phi''(u) = sum_{m=0}^{a-2} (dpsi_{m+2} - dpsi_{m+1}) pmf(m; u) - dpsi_a pmf(a-1; u)``, where
``dpsi_j = psi(j) - psi(j-1)``; so ``-f'' <= K`` with ``K = min(max(c_max, e), (c_sum + e)
pmf_max)``: ``c`` the positive parts of ``W``'s second differences in on hand (``c(e) = 2 W(e)
- W(e-1) - W(e+1)``, ``e = 1..a-1``, their max and sum), ``e = (g (p + b + h) - (W(1) -
W(0)))^+`` and ``pmf_max`` the largest Poisson probability of any count for a rate in the
interval (the probabilities of distinct counts sum to at most 1). On a grid interval
``[u0, u0 + delta]``, ``f - K y (delta - y) / 2`` (``y = u - u0``) is convex, hence below its
chord, so ``f(u0 + y) <= f(u0) + s y + K y (delta - y) / 2`` with ``s`` the chord's slope; the
right side's maximum over ``y`` is closed form. The DP takes, per state, the largest of these
interval maxima: at least ``max_u f``. (A steep ``f`` -- a large priced rate -- makes the
bound exact at an end point.)

(5) **Truncation.** On hand is kept in ``0..H_i`` and orders in ``0..Q_i``. Neither drops a
decision's value, by two bounds on the value of one more unit that hold for the true program
(coupling: the system with one unit fewer follows the optimal decisions of the system with
it; only the unit's own fate differs). A unit on hand after arrivals in period s with at least
``j - 1`` other units beside it is sold only if demand from s on reaches j, and demand there
is dominated by Poisson of the summed ``umax`` (``Lambda``). So its value is at most

- ``beta_end(j) = G_end + sum_{tau >= s} P(N_{s..tau} >= j) (G_tau - G_{tau+1})`` with
  ``G_tau = g_tau (p + b) - sum_{s <= r < tau} g_r h`` (sold at tau) and ``G_end = g_{T-1} v -
  sum_{r >= s} g_r h`` (kept to the end) -- Abel summation, the differences are >= 0;
- where orders are uncapped, fixed costs are zero and an order decided at ``s + 1`` still
  arrives (at ``s + 1 + L'``): ``beta_rep(j) = g_{s+1-d} c + P(N_{s..s+L'} >= j) (g_s (p + b) -
  G_min)^+`` -- the system without the unit orders a replacement at ``s + 1``; they differ only
  if the unit is sold before the replacement arrives, after which the other system holds one
  surplus unit worth at least ``G_min = g_{T-1} v - sum_{r > s+L'} g_r h``.

On hand above ``H`` after arrivals is valued at ``H`` plus the sum of these per-unit bounds
(the credit), and orders above ``Q`` (uncapped products) gain at most ``sum_{j > Q} (beta(j) -
g c)^+``, which ``v <= c`` and ``gamma <= 1`` turn into a multiple of ``E (N - Q)^+`` added to
every decision state's value. With ``max_order`` finite and the reachable on-hand within the
state budget, ``H`` is the reachable level and nothing is truncated at all.

"Hidden" mode (a product without stock offers no rate: the coupling involves the other
products' stock) and warehouse capacities are refused: not derived here. Fixed order costs
with uncapped orders are refused (the order-cap argument needs a cap or no fixed cost).

**Minimising over alpha.** The right side of (*) is convex in alpha up to the corrections
(4)-(5); its subgradient is ``g_t (d_it(S*_t) - E u_it)``: the slate term's demand minus the
expected rate of product i's optimal policy from its start state (a forward pass of the
state distribution). :func:`solve_lagrangian` starts from the fluid stock values of
:func:`coordopt.solvers.catalog.solve_catalog` mapped by ``g alpha = g p - mu`` (the
catalog's choice margin): at those prices each product's noisy program earns no more than its
fluid inventory program (its expected flows are feasible there, ``E 1{q>0} >= E q / qmax``), so
the first iterate is at or below the fluid bound up to the corrections. Then projected
subgradient steps with Polyak's step toward a target below the best bound, halved when the
bound stalls. Every iterate's value is a valid bound; the smallest is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from coordopt.choice import best_slates
from coordopt.economics import Flow, coefficients_on, unit_values
from coordopt.instance import Instance, Stockout
from coordopt.simulator import Action, SimParams, SimState
from coordopt.solution import Solution, SolveStatus
from coordopt.solvers.catalog import (
    CatalogData,
    catalog_data,
    iteration_bar,
    period_slates,
    solve_catalog,
)

__all__ = [
    "BestSiloedPolicy",
    "FixedRatePrograms",
    "LagrangianError",
    "LagrangianModel",
    "LagrangianSolution",
    "LagrangianValue",
    "build_model",
    "max_rates",
    "solve_fixed_rates",
    "solve_lagrangian",
]

TAIL = 1e-12
"""Poisson tail probability at which on-hand and order caps are set (their effect is added)."""


class LagrangianError(ValueError):
    """The instance is outside what the stochastic bound covers; the message says why."""


def max_rates(cd: CatalogData) -> torch.Tensor:
    """``umax (H,N)``: each product's largest demand rate over all slates ("lost" mode): in
    every segment it is recommended alone and every other product keeps its base weight."""
    wr = torch.maximum(cd.wr, cd.wn)
    den = cd.w0[:, None] + cd.wn.sum(dim=1, keepdim=True) - cd.wn + wr
    return cd.rate @ (wr / den)


# --------------------------------------------------------------------------- Poisson helpers


def _tail(lam: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """``P(Poisson(lam) >= j)`` (broadcast), 1 for ``j <= 0``."""
    lam, j = torch.broadcast_tensors(lam, j.to(lam.dtype))
    out = torch.special.gammainc(j.clamp(min=1.0), lam.clamp(min=1e-300))
    out = torch.where(lam <= 0, 0.0, out)
    return torch.where(j <= 0, 1.0, out)


def _excess(lam: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``E (Poisson(lam) - q)^+ = lam P(N >= q) - q P(N >= q + 1)`` (>= 0)."""
    q = q.to(lam.dtype)
    return (lam * _tail(lam, q) - q * _tail(lam, q + 1)).clamp(min=0.0)


def _pmf(lam: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Poisson probability of ``m`` at rate ``lam`` (broadcast; rate 0 allowed)."""
    lam, m = torch.broadcast_tensors(lam, m.to(lam.dtype))
    safe = lam.clamp(min=1e-300)
    out = torch.exp(m * torch.log(safe) - safe - torch.lgamma(m + 1.0))
    return torch.where(lam <= 0, (m == 0).to(lam.dtype), out)


# --------------------------------------------------------------------------- product groups


@dataclass(eq=False)
class _Group:
    """Products solved together: one effective lead time ``lead``, on-hand cap ``H``, order
    cap ``Q``; per product and period the order cost, whether ordering is allowed, the
    order-cap correction and the overflow credit (module docstring, (3) and (5))."""

    idx: torch.Tensor  # (n,) product indices
    lead: int
    H: int
    Q: int
    price: torch.Tensor
    penalty: torch.Tensor
    holding: torch.Tensor
    salvage: torch.Tensor
    x0: torch.Tensor  # (n,) long
    qcap: torch.Tensor  # (n,) long, <= Q
    unit: torch.Tensor  # (T,n) g_{t-d} c
    fixed: torch.Tensor  # (T,n) g_{t-d} F
    allowed: torch.Tensor  # (T,n) bool
    cap_corr: torch.Tensor  # (T,n)
    credit: torch.Tensor  # (T,n,Q) value of 1..Q units above H
    umax: torch.Tensor  # (T,n)
    delay: torch.Tensor  # (n,) periods by which orders are postponed (3)
    grid: int = 16
    postponed: int = 0
    kernels: dict[int, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.idx.shape[0])

    @property
    def pipe(self) -> int:
        return (self.Q + 1) ** self.lead


@dataclass(eq=False)
class LagrangianModel:
    """What stays fixed across multipliers: the catalog data, the product groups, the
    rate grid size and the rows of arrival rates (kernels are shared by equal rows)."""

    inst: Instance
    cd: CatalogData
    groups: list[_Group]
    grid: int
    row_of: np.ndarray  # (T,) index of the distinct arrival-rate row of each period
    umax: torch.Tensor  # (T,N)
    info: dict[str, Any]
    cache_rows: int = 64


def _check(inst: Instance) -> None:
    where = f"instance '{inst.name}'"
    if inst.stockout is Stockout.HIDDEN:
        raise LagrangianError(
            f'{where} uses stockout = "hidden": there a product without stock offers no '
            "demand rate, so the other products' stock enters the coupling, and that bound is "
            'not derived; use --method decompose (the fluid bound) or stockout = "lost"'
        )
    if inst.warehouse_capacity is not None:
        raise LagrangianError(
            f"{where} has warehouse_capacity = {inst.warehouse_capacity}: the stochastic "
            "bound does not price the capacity yet; use --method decompose (the fluid bound)"
        )
    money = unit_values(inst)
    field = {flow: " + ".join(coefficients_on(flow)) for flow in Flow}
    bad = np.flatnonzero((money[Flow.PLACED] != 0) & ~np.isfinite(inst.max_order))
    if bad.size:
        raise LagrangianError(
            f"{where}: product '{inst.product_names[bad[0]]}' has a {field[Flow.PLACED]} and "
            "no max_order; the bound's order-cap argument needs one of them; set max_order"
        )
    bad = np.flatnonzero(money[Flow.LEFT_OVER] > money[Flow.SOLD] - money[Flow.LOST])
    if bad.size:
        raise LagrangianError(
            f"{where}: product '{inst.product_names[bad[0]]}' has {field[Flow.LEFT_OVER]} "
            f"above {field[Flow.SOLD]} + {field[Flow.LOST]}; lower {field[Flow.LEFT_OVER]}"
        )


def build_model(
    inst: Instance,
    *,
    grid: int = 16,
    max_states: int = 2048,
    device: str | torch.device = "cpu",
    rates: torch.Tensor | None = None,
) -> LagrangianModel:
    """Collect the product programs of ``inst`` (module docstring): caps, effective lead
    times (the largest ``L' <= L`` whose ``(H+1)(Q+1)^L'`` states fit ``max_states``; a
    product that fits at no ``L'`` keeps ``L' = 0``), order costs, corrections, credits.

    ``rates (T,N)``: programs whose demand rate is fixed at ``rates`` (:func:`solve_fixed_rates`)
    take them in place of :func:`max_rates` as ``umax``: the caps and the truncation terms
    (5) only need a rate that dominates the demand, and that demand is exactly Poisson(rates)."""
    _check(inst)
    cd = catalog_data(inst, device=device)  # refuses salvage above unit cost
    h, _, n = cd.shape
    umax = max_rates(cd) if rates is None else rates.to(cd.g.device, cd.g.dtype)
    lead = inst.lead_time.astype(int)
    mo = inst.max_order
    x0 = inst.initial_inventory.astype(int)
    umax_np = umax.cpu().numpy()
    cum = np.concatenate([np.zeros((1, n)), np.cumsum(umax_np, axis=0)])  # Lambda_{s..tau}
    plan: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for i in range(n):
        choice = None
        for lp in range(lead[i], -1, -1):
            if np.isfinite(mo[i]):
                q = int(mo[i])
                reach = x0[i] + q * max(h - lead[i], 0)
                hh = reach
                if (hh + 1) * (q + 1) ** lp > max_states:
                    window = cum[np.minimum(np.arange(h) + lp + 1, h)] - cum[:h]
                    lam = float(window[:, i].max())
                    hh = max(x0[i], int(stats.poisson.isf(TAIL, lam)) + 1, 1)
                    hh = min(hh, reach)
            else:
                window = cum[np.minimum(np.arange(h) + lp + 1, h)] - cum[:h]
                lam = float(window[:, i].max())
                q = max(int(stats.poisson.isf(TAIL, lam)) + 1, 1)
                hh = max(x0[i], q)
            if (hh + 1) * (q + 1) ** lp <= max_states or lp == 0:
                choice = (lp, hh, q)
                break
        assert choice is not None
        lp, hh, q = choice
        key = (lp, _bucket(hh), _bucket(q) if not np.isfinite(mo[i]) else q)
        plan.setdefault(key, []).append((i, lead[i] - lp))
    groups = [_make_group(inst, cd, umax, key, members, device) for key, members in plan.items()]
    # the interval term (4) grows like umax^1.5 / G^2: finer grids for fast movers
    for gr in groups:
        fast = math.sqrt(max(float(gr.umax.max()), 1.0))
        gr.grid = min(max(grid, math.ceil(grid * fast / 2)), 8 * grid)
    groups = [part for gr in groups for part in _split(gr, CHUNK_CELLS)]
    _, row_of = np.unique(np.asarray(cd.rate.cpu()), axis=0, return_inverse=True)
    states = sum(gr.n * (gr.H + 1) * gr.pipe for gr in groups)
    info = {
        "groups": len(groups),
        "states": int(states),
        "postponed_products": int(sum(gr.postponed for gr in groups)),
        "rate_grid": grid,
    }
    return LagrangianModel(inst, cd, groups, grid, np.asarray(row_of).reshape(-1), umax, info)


CHUNK_CELLS = 4_000_000
"""Largest ``products x grid x states`` of one tensor pass: bigger groups are split."""


def _split(gr: _Group, cells: int) -> list[_Group]:
    """``gr`` cut along its products into parts of at most ``cells`` grid-state cells."""
    per = max(1, cells // max(gr.grid * (gr.H + 1) * gr.pipe, 1))
    if gr.n <= per:
        return [gr]
    parts = []
    for a in range(0, gr.n, per):
        sl = slice(a, min(a + per, gr.n))
        by_product = {
            k: getattr(gr, k)[sl]
            for k in ("idx", "price", "penalty", "holding", "salvage", "x0", "qcap", "delay")
        }
        by_period = {
            k: getattr(gr, k)[:, sl]
            for k in ("unit", "fixed", "allowed", "cap_corr", "credit", "umax")
        }
        part = dataclasses.replace(gr, **by_product, **by_period, kernels={})
        part.postponed = int((part.delay > 0).sum())
        parts.append(part)
    return parts


def _bucket(x: int) -> int:
    """Round a cap up to the ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (few distinct shapes)."""
    b = 1
    while b < x:
        b = b + 1 if b < 4 else (b * 3) // 2 if (b & (b - 1)) == 0 else (b * 4) // 3
    return b


def _make_group(
    inst: Instance,
    cd: CatalogData,
    umax: torch.Tensor,
    key: tuple[int, int, int],
    members: list[tuple[int, int]],
    device: str | torch.device,
) -> _Group:
    lead, big_h, big_q = key
    h = cd.shape[0]
    g = cd.g
    dt = g.dtype
    idx = torch.tensor([i for i, _ in members], dtype=torch.long, device=device)
    delay = torch.tensor([d for _, d in members], dtype=torch.long, device=device)
    n = len(members)

    money = unit_values(inst)

    def prod(flow: Flow, sign: int) -> torch.Tensor:
        """``sign`` times the money per unit of ``flow`` of the group's products."""
        x = sign * money[flow][idx.cpu().numpy()]
        return torch.tensor(x, dtype=dt, device=device)

    p, b, hc, v = (
        prod(Flow.SOLD, 1),
        prod(Flow.LOST, -1),
        prod(Flow.HELD, -1),
        prod(Flow.LEFT_OVER, 1),
    )
    c, f = prod(Flow.ORDERED, -1), prod(Flow.PLACED, -1)
    mo = inst.max_order[idx.cpu().numpy()]
    finite = torch.tensor(np.isfinite(mo), device=device)
    qcap = torch.tensor(np.where(np.isfinite(mo), np.minimum(mo, big_q), big_q), device=device)
    qcap = qcap.long()
    t_ = torch.arange(h, device=device)[:, None]
    placed = t_ - delay[None]  # (T,n) original placement period
    allowed = (placed >= 0) & (t_ + lead <= h - 1)
    gp = g[placed.clamp(min=0)]
    unit = gp * c[None]
    fixed = gp * f[None]
    um = umax[:, idx]  # (T,n)
    cum = torch.cat([torch.zeros(1, n, dtype=dt, device=device), torch.cumsum(um, dim=0)])
    # Abel differences of the "kept to the end" bound: dG_tau (T,n)
    g_next = torch.cat([g[1:], g[-1:]])
    dgs = (g - g_next)[:, None] * (p + b)[None] + g[:, None] * hc[None]
    dgs[-1] = g[-1] * (p + b + hc - v)
    hold_after = torch.flip(
        torch.cumsum(torch.flip(g[:, None] * hc[None], [0]), 0), [0]
    )  # sum_{r>=s}
    g_end = g[-1] * v[None] - hold_after  # (T,n)
    js = torch.arange(1, big_q + 1, device=device, dtype=dt)  # overflow units 1..Q
    credit = torch.zeros(h, n, big_q, dtype=dt, device=device)
    cap_corr = torch.zeros(h, n, dtype=dt, device=device)
    uncapped = ~finite
    for s in range(h):
        rep_t = s + 1  # replacement decided at s + 1
        rep_ok = uncapped & (rep_t - delay >= 0) & (rep_t + lead <= h - 1) & (f <= 0)
        beta = torch.full((n, big_q), math.inf, dtype=dt, device=device)
        if bool(rep_ok.any()):
            g_min = g[-1] * v - (hold_after[rep_t + lead] if rep_t + lead < h else 0.0)
            lam_rep = cum[min(s + lead + 1, h)] - cum[s]  # (n,)
            coef = (g[s] * (p + b) - g_min).clamp(min=0.0)
            rep = g[(rep_t - delay).clamp(min=0)] * c
            beta_rep = rep[:, None] + _tail(lam_rep[:, None], (big_h + js)[None]) * coef[:, None]
            beta = torch.where(rep_ok[:, None], beta_rep, beta)
        if not bool(rep_ok.all()):  # beta_end for units H+1..H+Q (either bound is valid)
            lam = cum[s + 1 :] - cum[s][None]  # (T-s, n): Lambda_{s..tau}
            tails = _tail(lam[:, :, None], (big_h + js)[None, None, :])  # (T-s, n, Q)
            beta_end = g_end[s][:, None] + (tails * dgs[s:, :, None]).sum(dim=0)
            beta = torch.minimum(beta, beta_end)
        credit[s] = torch.cumsum(beta, dim=1)
        # order-cap correction for an order decided at s arriving at a = s + lead
        a = s + lead
        if a <= h - 1 and bool(uncapped.any()):
            qq = qcap.to(dt)
            lam_a = cum[a + 1 :] - cum[a][None]  # (T-a, n)
            end_corr = (_excess(lam_a, qq[None]) * dgs[a:]).sum(dim=0)
            corr = end_corr
            rep_t = a + 1
            if rep_t + lead <= h - 1:
                g_min = g[-1] * v - hold_after[rep_t + lead]
                lam_rep = cum[min(a + lead + 1, h)] - cum[a]
                coef = (g[a] * (p + b) - g_min).clamp(min=0.0)
                corr = torch.minimum(corr, coef * _excess(lam_rep, qq))
            cap_corr[s] = torch.where(uncapped & allowed[s], corr, 0.0)
    return _Group(
        idx=idx,
        lead=lead,
        H=big_h,
        Q=big_q,
        price=p,
        penalty=b,
        holding=hc,
        salvage=v,
        x0=torch.tensor(inst.initial_inventory[idx.cpu().numpy()], device=device).long(),
        qcap=qcap,
        unit=unit,
        fixed=fixed,
        allowed=allowed,
        cap_corr=cap_corr,
        credit=credit,
        umax=um,
        delay=delay,
        postponed=int((delay > 0).sum()),
    )


# --------------------------------------------------------------------------- product programs


def _kernels(model: LagrangianModel, gr: _Group, t: int) -> tuple[torch.Tensor, ...]:
    """Rate grid and demand tables of period ``t`` (shared by periods with equal rates):
    ``u (n,G)``, ``kernel (n,G,H+1,H+1)`` with ``kernel[a, e] = P(a - min(a, D) = e)``,
    ``sales (n,G,H+1) = E min(a, D)``, ``pmf_max (n,G-1)`` per grid interval."""
    row = int(model.row_of[t])
    if row in gr.kernels:
        return gr.kernels[row]
    if len(gr.kernels) >= model.cache_rows:
        gr.kernels.clear()
    big_g, big_h = gr.grid, gr.H
    dt, dev = gr.price.dtype, gr.price.device
    frac = torch.linspace(0.0, 1.0, big_g, dtype=dt, device=dev)
    u = gr.umax[t][:, None] * frac[None]  # (n,G)
    m = torch.arange(big_h + 1, device=dev, dtype=dt)
    pmf = _pmf(u[..., None], m)  # (n,G,H+1)
    ge = _tail(u[..., None], m)  # P(D >= a)
    a_ = torch.arange(big_h + 1, device=dev)
    diff = a_[:, None] - a_[None, :]
    kernel = torch.where(
        ((diff >= 0) & (a_[None, :] >= 1))[None, None], pmf[..., diff.clamp(min=0)], 0.0
    )
    kernel[..., 0] = ge
    sales = torch.cat([torch.zeros_like(ge[..., :1]), torch.cumsum(ge[..., 1:], dim=-1)], dim=-1)
    if big_g > 1:
        lo, hi = u[:, :-1], u[:, 1:]
        top = math.ceil(float(gr.umax[t].max())) + 2
        mm = torch.arange(top + 1, device=dev, dtype=dt)
        at = torch.minimum(torch.maximum(mm, lo[..., None]), hi[..., None])
        pmf_max = _pmf(at, mm).amax(dim=-1)
    else:
        pmf_max = torch.zeros(gr.n, 0, dtype=dt, device=dev)
    out = (u, kernel, sales, pmf_max)
    gr.kernels[row] = out
    return out


@dataclass(eq=False)
class _Policy:
    """A group's solved program: value at the start state, per period the rate index at
    every post-decision state and the order rule."""

    value: torch.Tensor  # (n,)
    rate_idx: list[torch.Tensor]  # [t] (n,H+1,P)
    order: list[torch.Tensor]  # [t] L'=0: (n,H+1) order at on hand x; L'>=1: (n,H+1,R) at a
    values: list[torch.Tensor] | None = None  # [t] (n,H+1,P) value of one more unit of rate


def _rate_step(
    gr: _Group,
    tabs: tuple[torch.Tensor, ...],
    w_next: torch.Tensor,
    gt: torch.Tensor,
    alpha_t: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post-decision value ``(n,H+1,P)``: the bound (4) on ``max_u f(u)``, the index of the
    better end point of the best interval, and ``f`` on the grid ``(n,G,H+1,P)``."""
    u, kernel, sales, pmf_max = tabs
    big_h = gr.H
    a = torch.arange(big_h + 1, dtype=u.dtype, device=u.device)
    p, b, hc = gr.price[:, None, None], gr.penalty[:, None, None], gr.holding[:, None, None]
    reward = gt * ((p + b + hc) * sales - hc * a - (b + alpha_t[:, None, None]) * u[..., None])
    f = torch.matmul(kernel, w_next[:, None]) + reward[..., None]  # (n,G,H+1,P)
    if f.shape[1] == 1:
        zero = torch.zeros(f.shape[0], *f.shape[2:], dtype=torch.long, device=f.device)
        return f[:, 0], zero, f
    dw = w_next[:, 1:] - w_next[:, :-1]  # (n,H,P): W(e) - W(e-1), e = 1..H
    n, _, pp = w_next.shape
    zeros = torch.zeros(n, 2, pp, dtype=u.dtype, device=u.device)
    if big_h >= 2:
        conc = (dw[:, :-1] - dw[:, 1:]).clamp(min=0.0)  # e = 1..H-1
        c_max = torch.cat([zeros, torch.cummax(conc, dim=1).values], dim=1)[:, : big_h + 1]
        c_sum = torch.cat([zeros, torch.cumsum(conc, dim=1)], dim=1)[:, : big_h + 1]
    else:
        c_max = c_sum = torch.zeros(n, big_h + 1, pp, dtype=u.dtype, device=u.device)
    if big_h >= 1:
        edge = (gt * (gr.price + gr.penalty + gr.holding)[:, None] - dw[:, 0]).clamp(min=0.0)
    else:
        edge = torch.zeros(n, pp, dtype=u.dtype, device=u.device)
    k1 = torch.maximum(c_max, edge[:, None])
    k2 = c_sum + edge[:, None]
    k1[:, 0] = 0.0
    k2[:, 0] = 0.0
    curv = torch.minimum(k1[:, None], k2[:, None] * pmf_max[:, :, None, None])  # (n,G-1,H+1,P)
    delta = (u[:, 1:] - u[:, :-1])[:, :, None, None]
    left, right = f[:, :-1], f[:, 1:]
    slope = (right - left) / delta.clamp(min=1e-300)
    y = (delta / 2 + slope / curv.clamp(min=1e-300)).clamp(min=0.0)
    y = torch.minimum(y, delta)
    top = left + slope * y + curv * y * (delta - y) / 2
    top = torch.maximum(top, torch.maximum(left, right))  # rounding guard
    best, k = top.max(dim=1)
    kk = k[:, None]
    pick = torch.where(torch.gather(right, 1, kk)[:, 0] > torch.gather(left, 1, kk)[:, 0], k + 1, k)
    return best, pick, f


def _solve_group(
    model: LagrangianModel,
    gr: _Group,
    alpha: torch.Tensor,
    ref_rate: torch.Tensor | None = None,
) -> _Policy:
    """Backward induction of the group's programs at multipliers ``alpha (T,N)``. With
    ``ref_rate (T,n)``, also the value of one more unit of rate at every post-decision state
    (the slope of the period's value, the priced term left out, on the grid interval that
    holds the reference rate), in period-t money, kept in :attr:`_Policy.values`."""
    g = model.cd.g
    h = g.shape[0]
    n, big_h, big_q, lead = gr.n, gr.H, gr.Q, gr.lead
    dt, dev = g.dtype, g.device
    pp = gr.pipe
    e = torch.arange(big_h + 1, dtype=dt, device=dev)
    w = (g[-1] * gr.salvage[:, None] * e[None])[..., None].expand(n, big_h + 1, pp)
    rate_idx: list[torch.Tensor] = [torch.empty(0)] * h
    order: list[torch.Tensor] = [torch.empty(0)] * h
    values: list[torch.Tensor] = []
    qs = torch.arange(big_q + 1, device=dev)
    for t in range(h - 1, -1, -1):
        tabs = _kernels(model, gr, t)
        post, pick, f = _rate_step(gr, tabs, w, g[t], alpha[t, gr.idx])
        rate_idx[t] = pick.to(torch.uint8 if gr.grid <= 256 else torch.int16)
        if ref_rate is not None:
            values.insert(0, _rate_value(tabs[0], f, ref_rate[t], g[t], alpha[t, gr.idx]))
        ok = (gr.allowed[t][:, None] | (qs[None] == 0)) & (qs[None] <= gr.qcap[:, None])
        cost = gr.unit[t][:, None] * qs[None] + gr.fixed[t][:, None] * (qs[None] > 0)
        cost = torch.where(ok, cost, math.inf)  # (n,Q+1)
        credit = gr.credit[t]  # (n,Q)
        if lead == 0:
            ext = torch.cat([post[:, :, 0], post[:, big_h:, 0] + credit], dim=1)  # (n,H+Q+1)
            at = torch.arange(big_h + 1, device=dev)[:, None] + qs[None]  # x + q
            v, arg = (ext[:, at] - cost[:, None, :]).max(dim=2)  # (n,H+1)
            v = v + gr.cap_corr[t][:, None]
            order[t] = arg.to(torch.int16)
            w = v[..., None]
        else:
            rest = (big_q + 1) ** (lead - 1)
            val = post.reshape(n, big_h + 1, rest, big_q + 1) - cost[:, None, None, :]
            z, arg = val.max(dim=3)  # (n,H+1,R)
            z = z + gr.cap_corr[t][:, None, None]
            order[t] = arg.to(torch.int16)
            zext = torch.cat([z, z[:, big_h:] + credit[:, :, None]], dim=1)  # (n,H+Q+1,R)
            at = torch.arange(big_h + 1, device=dev)[:, None] + qs[None]  # x + P0
            w = zext[:, at].reshape(n, big_h + 1, pp)
    start = w[torch.arange(n, device=dev), gr.x0.clamp(max=big_h), 0]
    return _Policy(start, rate_idx, order, values if ref_rate is not None else None)


def _rate_value(
    u: torch.Tensor, f: torch.Tensor, ref: torch.Tensor, gt: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """``(n,H+1,P)`` float32: slope of ``f + g alpha u`` on the grid interval holding ``ref``,
    divided by ``g`` (the value of one more unit of demand rate, in period-t money)."""
    big_g = u.shape[1]
    if big_g == 1:
        return torch.zeros_like(f[:, 0], dtype=torch.float32)
    span = u[:, -1].clamp(min=1e-12)
    k = torch.floor(ref / span * (big_g - 1)).long().clamp(0, big_g - 2)  # (n,)
    rows = torch.arange(u.shape[0], device=u.device)
    delta = (u[rows, k + 1] - u[rows, k]).clamp(min=1e-12)
    slope = (f[rows, k + 1] - f[rows, k]) / delta[:, None, None] + gt * alpha[:, None, None]
    return (slope / gt).to(torch.float32)


def _expected_rates(model: LagrangianModel, gr: _Group, pol: _Policy) -> torch.Tensor:
    """``E u_t (T,n)`` under the group's policy from its start state (forward pass)."""
    g = model.cd.g
    h = g.shape[0]
    n, big_h, big_q, lead, pp = gr.n, gr.H, gr.Q, gr.lead, gr.pipe
    dev, dt = g.device, g.dtype
    rows = torch.arange(n, device=dev)
    dist = torch.zeros(n, big_h + 1, pp, dtype=dt, device=dev)
    dist[rows, gr.x0.clamp(max=big_h), 0] = 1.0
    x = torch.arange(big_h + 1, device=dev)
    qs = torch.arange(big_q + 1, device=dev)
    out = torch.zeros(h, n, dtype=dt, device=dev)
    for t in range(h):
        u, kernel, _, _ = _kernels(model, gr, t)
        if lead == 0:
            q = pol.order[t].long()  # (n,H+1)
            a = (x[None] + q).clamp(max=big_h)
            post = torch.zeros(n, big_h + 1, dtype=dt, device=dev)
            post.scatter_add_(1, a, dist[:, :, 0])
            post = post[..., None]
        else:
            rest = (big_q + 1) ** (lead - 1)
            a = (x[:, None] + qs[None]).clamp(max=big_h)  # (H+1,Q+1) from x, P0
            q = pol.order[t].long()[:, a]  # (n,H+1,Q+1,R)
            r_ = torch.arange(rest, device=dev)
            flat = a[None, :, :, None] * pp + r_[None, None, None] * (big_q + 1) + q
            post = torch.zeros(n, (big_h + 1) * pp, dtype=dt, device=dev)
            post.scatter_add_(1, flat.reshape(n, -1), dist.reshape(n, -1))
            post = post.reshape(n, big_h + 1, pp)
        idx = pol.rate_idx[t].long()
        out[t] = (post * torch.gather(u, 1, idx.reshape(n, -1)).reshape(idx.shape)).sum(dim=(1, 2))
        if t < h - 1:
            rows_ = kernel[rows[:, None, None], idx, x[None, :, None]]  # (n,H+1,P,H+1)
            dist = torch.einsum("nap,nape->nep", post, rows_)
    return out


def _first_orders(gr: _Group, pol: _Policy) -> torch.Tensor:
    x0 = gr.x0.clamp(max=gr.H)
    rows = torch.arange(gr.n, device=x0.device)
    if gr.lead == 0:
        return pol.order[0].long()[rows, x0]
    return pol.order[0].long()[rows, x0, 0]


# --------------------------------------------------------------------------- the bound


@dataclass(frozen=True, eq=False)
class LagrangianValue:
    """The right side of (*) at ``alpha``: ``bound = slate_part + product_part``; the best
    slates' demand ``demand (T,N)``, the products' expected rates ``rates (T,N)``, the
    subgradient ``grad (T,N) = g (demand - rates)``, each product's value ``values (N,)``
    and first-period order ``first_orders (N,)``, the first period's slates ``(M,K)``."""

    bound: float
    slate_part: float
    product_part: float
    demand: torch.Tensor
    rates: torch.Tensor
    grad: torch.Tensor
    values: torch.Tensor
    first_orders: torch.Tensor
    first_slates: torch.Tensor
    warm: torch.Tensor


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat subnormal floats (below 2.2e-308: far Poisson tails) as zero while inside: they
    are below rounding everywhere here, and arithmetic on them is a hundred times slower."""
    before = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        del before


def evaluate(
    model: LagrangianModel, alpha: torch.Tensor, warm: torch.Tensor | None = None
) -> LagrangianValue:
    """The bound (*) at multipliers ``alpha (T,N)`` (period-t money per unit of rate)."""
    with _flush_denormals():
        return _evaluate(model, alpha, warm)


def _evaluate(
    model: LagrangianModel, alpha: torch.Tensor, warm: torch.Tensor | None
) -> LagrangianValue:
    cd = model.cd  # "lost" stock-outs only (build_model refuses hidden ones)
    choice, demand = period_slates(cd, cd.g[:, None] * alpha, warm)
    slate_part = float((cd.rate * choice.upper).sum())
    n = alpha.shape[1]
    values = torch.zeros(n, dtype=alpha.dtype, device=alpha.device)
    exp_u = torch.zeros_like(alpha)
    first = torch.zeros(n, dtype=torch.long, device=alpha.device)
    for gr in model.groups:
        pol = _solve_group(model, gr, alpha)
        values[gr.idx] = pol.value
        exp_u[:, gr.idx] = _expected_rates(model, gr, pol)
        first[gr.idx] = _first_orders(gr, pol)
    product_part = float(values.sum())
    return LagrangianValue(
        bound=slate_part + product_part,
        slate_part=slate_part,
        product_part=product_part,
        demand=demand,
        rates=exp_u,
        grad=cd.g[:, None] * (demand - exp_u),
        values=values,
        first_orders=first,
        first_slates=choice.slates[0],
        warm=choice.rate,
    )


# --------------------------------------------------------------------------- the solver


STOP_REASONS = {
    "iterations": "the iteration limit was reached (best bound so far)",
    "time_limit": "the time limit was reached (best bound so far)",
    "stalled": "the step size collapsed without improving the bound",
    "zero_subgradient": "the subgradient vanished: the multipliers are optimal",
}


@dataclass(frozen=True, eq=False)
class LagrangianSolution:
    """Result of :func:`solve_lagrangian`: ``bound`` the smallest value of (*) seen (a valid
    upper bound on the optimal expected profit), ``fluid_bound`` the catalog solver's fluid
    bound it started from, ``first_bound`` the value at the fluid prices, ``alpha (T,N)``
    the best multipliers, ``history`` the best bound after each iteration."""

    bound: float
    fluid_bound: float
    first_bound: float
    alpha: np.ndarray
    iterations: int
    seconds: float
    stop: str
    first_orders: np.ndarray
    first_slates: list[list[int]]
    info: dict[str, Any]
    demand: np.ndarray  # (T,N) the best slates' demand at the best multipliers
    history: list[float] = field(default_factory=list)

    def result(self) -> Solution:
        """The shared contract: ``objective`` and ``bound`` are the bound; no plan. TIME_LIMIT
        when the time or iteration limit stopped the search, else OPTIMAL (a valid bound whose
        multiplier search has converged to its step tolerance)."""
        status = (
            SolveStatus.TIME_LIMIT
            if self.stop in ("iterations", "time_limit")
            else SolveStatus.OPTIMAL
        )
        return Solution(
            method="lagrangian",
            status=status,
            objective=self.bound,
            seconds=self.seconds,
            message=f"stopped after {self.iterations} iterations: {STOP_REASONS[self.stop]}; "
            f"stochastic bound {self.bound:,.4f} vs fluid bound {self.fluid_bound:,.4f}",
            first_orders=self.first_orders,
            first_slates=self.first_slates,
            bound=self.bound,
            details={
                "fluid_bound": self.fluid_bound,
                "first_bound": self.first_bound,
                "iterations": self.iterations,
                "stop": self.stop,
                **self.info,
            },
        )


def fluid_multipliers(model: LagrangianModel, mu: np.ndarray) -> torch.Tensor:
    """``alpha = p - mu / g``: the catalog's choice margin ``g p - mu`` per unit of rate."""
    cd = model.cd
    mu_t = torch.as_tensor(np.asarray(mu, dtype=float), dtype=cd.g.dtype, device=cd.g.device)
    return cd.price[None] - mu_t / cd.g[:, None]


def solve_lagrangian(
    inst: Instance,
    *,
    iterations: int = 30,
    time_limit: float | None = None,
    grid: int = 16,
    max_states: int = 2048,
    device: str | torch.device = "cpu",
    progress: bool = False,
    catalog_gap: float = 1e-4,
    catalog_iterations: int = 2000,
    patience: int = 3,
    step_scale: float = 1.0,
    model: LagrangianModel | None = None,
) -> LagrangianSolution:
    """The stochastic bound of ``inst`` (module docstring) by ``iterations`` subgradient
    steps from the fluid stock values. Polyak's step toward ``target = best - share |best|``
    (``share`` starts at 2% of the gap to the fluid bound's scale and halves with the step
    scale whenever ``patience`` steps bring no improvement), in the metric ``diag(p)``."""
    began = time.perf_counter()
    with torch.no_grad():
        if model is None:
            model = build_model(inst, grid=grid, max_states=max_states, device=device)
        cat = solve_catalog(inst, gap=catalog_gap, max_iterations=catalog_iterations, device=device)
        fluid_bound = float(cat.bound)
        cd = model.cd
        alpha = fluid_multipliers(model, cat.mu)
        lo = -(cd.price + cd.penalty)[None].expand_as(alpha)
        hi = (2 * (cd.price + cd.penalty))[None].expand_as(alpha)
        alpha = torch.minimum(torch.maximum(alpha, lo), hi)
        metric = cd.price[None].expand_as(alpha).clamp(min=1e-9)
        best: LagrangianValue | None = None
        best_alpha = alpha
        first_bound = math.nan
        history: list[float] = []
        scale, share, since = step_scale, 0.02, 0
        warm = None
        stop = "iterations"
        bar = iteration_bar(progress, iterations, "lagrangian")
        it = 0
        for it in range(iterations):
            val = evaluate(model, alpha, warm)
            warm = val.warm
            if it == 0:
                first_bound = val.bound
            if best is None or val.bound < best.bound - 1e-12 * abs(best.bound):
                best, best_alpha, since = val, alpha, 0
            else:
                since += 1
            history.append(best.bound)
            bar.set_postfix(bound=f"{best.bound:,.2f}", fluid=f"{fluid_bound:,.2f}", refresh=False)
            bar.update(1)
            if time_limit is not None and time.perf_counter() - began >= time_limit:
                stop = "time_limit"
                break
            if since >= patience:
                scale, share, since = scale * 0.5, share * 0.5, 0
                alpha, warm = best_alpha, best.warm
                if scale < 1e-3:
                    stop = "stalled"
                    break
                continue
            grad = val.grad
            norm2 = float((grad**2 * metric).sum())
            if norm2 <= 1e-18:
                stop = "zero_subgradient"
                break
            target = best.bound - share * max(abs(best.bound), 1e-9)
            step = scale * (val.bound - target) / norm2
            alpha = torch.minimum(torch.maximum(alpha - step * metric * grad, lo), hi)
        bar.close()
        assert best is not None
        k = cd.slate_size
        slates = [[int(i) for i in row if i >= 0][:k] for row in best.first_slates.cpu().tolist()]
        return LagrangianSolution(
            bound=best.bound,
            fluid_bound=fluid_bound,
            first_bound=first_bound,
            alpha=best_alpha.cpu().numpy(),
            iterations=it + 1,
            seconds=time.perf_counter() - began,
            stop=stop,
            first_orders=best.first_orders.cpu().numpy().astype(float),
            first_slates=slates,
            info=dict(model.info),
            demand=best.demand.cpu().numpy(),
            history=history,
        )


def _group_orders(
    gr: _Group, order_tab: torch.Tensor, expected: torch.Tensor, state: SimState
) -> torch.Tensor:
    """Orders ``(B,n)`` of the group's order rule ``order_tab`` (``_Policy.order`` stacked
    over periods) at each environment's own state. A product whose orders are postponed by
    ``d`` periods (module docstring, (3)) orders now what its program would order ``d``
    periods on, from its state with the next ``d`` periods' arrivals added and their expected
    demand (``expected (T+1,N)``, cumulative from period 0) taken off: a heuristic there."""
    t = state.t
    h = expected.shape[0] - 1
    batch = state.on_hand.shape[0]
    dev = state.on_hand.device
    width = state.pipeline.shape[2]
    n, big_h, big_q, lead = gr.n, gr.H, gr.Q, gr.lead
    x = state.on_hand[:, gr.idx].round().long()  # (B,n)
    pipe = state.pipeline[:, gr.idx, :].round().long().clamp(0, big_q)  # (B,n,W)
    d = gr.delay
    col = torch.arange(width, device=dev)
    early = (col[None] < d[:, None]).to(pipe.dtype)  # slots arriving before t + d
    td = (t + d).clamp(max=h)
    demand = (expected[td, gr.idx] - expected[t, gr.idx]).round().long()
    x_eff = (x + (pipe * early[None]).sum(2) - demand[None]).clamp(0, big_h)
    rows = torch.arange(n, device=dev)[None].expand(batch, n)
    tq = td.clamp(max=h - 1)[None].expand(batch, n)
    live = (t + d <= h - 1)[None].expand(batch, n)
    if lead == 0:
        q = order_tab[tq, rows, x_eff].long()
    else:
        slot = (d[:, None] + torch.arange(lead, device=dev)[None]).clamp(max=width - 1)
        rel = torch.gather(pipe, 2, slot[None].expand(batch, -1, -1))  # (B,n,L')
        a = (x_eff + rel[..., 0]).clamp(max=big_h)
        r = torch.zeros_like(a)
        for j in range(1, lead):
            r = r * (big_q + 1) + rel[..., j]
        q = order_tab[tq, rows, a, r].long()
    return torch.where(live, q, 0)


# --------------------------------------------------------------------------- the policy


class LagrangianPolicy:
    """The decomposition policy (docs/model.md): orders from each product's program at its
    own state; each segment's slate by the best-revenue slate at margins equal to the value,
    to each product at its current state, of one more unit of demand rate.

    Solves :func:`solve_lagrangian` once (``iterations`` steps), then every product's program
    at the best multipliers, keeping the order rules and the rate values; each batch of
    states is then a few gathers and one :func:`~coordopt.choice.best_slates` pass
    over ``B x M x N``. A product whose orders the bound postponed (lead time ``L`` solved as
    ``L' = L - d``) orders now what its program would order ``d`` periods on, from its state
    with the next ``d`` periods' arrivals added and their expected demand taken off.
    ``planned_rates`` (default): the programs behind the decisions are solved with each
    product's rate fixed at what the best slates of the bound induce (orders for the demand
    the slates will bring), else with the rate chosen freely at the bound's multipliers.
    """

    name = "lagrangian"

    def __init__(
        self,
        params: SimParams,
        *,
        iterations: int = 30,
        grid: int = 16,
        max_states: int = 2048,
        planned_rates: bool = True,
        seed: int = 0,
    ) -> None:
        del seed  # decisions are deterministic given the state
        self.params = params
        dev = params.device
        with torch.no_grad():
            model = build_model(params.instance, grid=grid, max_states=max_states, device=dev)
            self.solution = solve_lagrangian(params.instance, iterations=iterations, model=model)
            alpha = torch.as_tensor(self.solution.alpha, device=dev)
            ref = torch.as_tensor(self.solution.demand, device=dev)
            self._plan(model, ref, None if planned_rates else alpha)

    @classmethod
    def for_rates(
        cls, params: SimParams, rates: np.ndarray | torch.Tensor, *, max_states: int = 2048
    ) -> LagrangianPolicy:
        """The decomposition policy's decisions around fixed reference rates ``(T,N)`` in place
        of the bound's: each product's program planned for its rate, slates re-chosen each
        period at the value of one more unit of rate (with the static-margin firm's rates: a
        one-step improvement of its slates on its own programs' values,
        benchmarks/teacher_headroom.py)."""
        self = cls.__new__(cls)
        self.params = params
        with torch.no_grad():
            ref = torch.as_tensor(rates, dtype=torch.float64, device=params.device)
            model = build_model(
                params.instance, grid=2, max_states=max_states, device=params.device, rates=ref
            )
            self._plan(model, ref, None)
        return self

    def _plan(self, model: LagrangianModel, ref: torch.Tensor, alpha: torch.Tensor | None) -> None:
        """Each group's order rule and rate values: planned for the reference rates ``ref``
        (``alpha`` None), else with the rate chosen freely at the multipliers ``alpha``."""
        self.model = model
        self.ref = ref
        self.tables = []
        planned = alpha is None  # each program plans for the reference rate
        plan = model
        if alpha is None:
            plan = dataclasses.replace(model, row_of=np.arange(ref.shape[0]), cache_rows=1)
            alpha = torch.full_like(ref, -1e6)
        for gr in model.groups:
            if planned:
                gr = dataclasses.replace(gr, umax=ref[:, gr.idx], kernels={}, grid=8)
            pol = _solve_group(plan, gr, alpha, ref_rate=ref[:, gr.idx])
            assert pol.values is not None
            self.tables.append((gr, torch.stack(pol.order), torch.stack(pol.values)))
        self.cd = model.cd
        self.expected = torch.cat([torch.zeros_like(ref[:1]), torch.cumsum(ref, dim=0)])

    def reset(self, batch_size: int) -> None:
        """Markov in the state: nothing to clear."""

    def act(self, state: SimState) -> Action:
        with torch.no_grad():
            return self._act(state)

    def _act(self, state: SimState) -> Action:
        p = self.params
        t = state.t
        h = self.cd.shape[0]
        batch, n_all = state.on_hand.shape
        dev = state.on_hand.device
        orders = torch.zeros(batch, n_all, dtype=torch.float64, device=dev)
        margin = torch.zeros(batch, n_all, dtype=torch.float64, device=dev)
        width = state.pipeline.shape[2]
        for gr, order_tab, value_tab in self.tables:
            n, big_h, big_q, lead = gr.n, gr.H, gr.Q, gr.lead
            x = state.on_hand[:, gr.idx].round().long()  # (B,n)
            pipe = state.pipeline[:, gr.idx, :].round().long().clamp(0, big_q)  # (B,n,W)
            d = gr.delay
            rows = torch.arange(n, device=dev)[None].expand(batch, n)
            q = _group_orders(gr, order_tab, self.expected, state)
            orders[:, gr.idx] = q.to(orders.dtype)
            # the value of one more unit of rate at the current post-decision state
            now = torch.full_like(x, t)
            arrive = pipe[..., 0] if width > 0 else torch.zeros_like(x)
            if lead == 0:
                a_now = (x + arrive + torch.where(d[None] == 0, q, 0)).clamp(max=big_h)
                p_now = torch.zeros_like(a_now)
            else:
                a_now = (x + arrive).clamp(max=big_h)
                p_now = torch.zeros_like(a_now)
                for j in range(1, lead):
                    p_now = p_now * (big_q + 1) + pipe[..., min(j, width - 1)]
                p_now = torch.where(d[None] == 0, p_now * (big_q + 1) + q, 0)
            margin[:, gr.idx] = value_tab[now, rows, a_now, p_now].to(margin.dtype)
        cd = self.cd
        rate = cd.rate[min(t, h - 1)][None].expand(batch, -1)
        choice = best_slates(margin, rate, cd.wr, cd.wn, cd.w0, cd.slate_size, False)
        k = max(p.slate_size, 1)
        slates = torch.full((batch, cd.shape[1], k), -1, dtype=torch.long, device=dev)
        slates[..., : choice.slates.shape[2]] = choice.slates[..., :k]
        return Action(orders=orders.to(p.dtype), slates=slates)


# --------------------------------------------------------------------------- fixed rates


@dataclass(eq=False)
class FixedRatePrograms:
    """Every product's program solved with its demand rate fixed per period (no rate
    decision, no multiplier): the exact optimal inventory policy of each product under the
    demand that fixed slates induce. ``values (N,)`` each product's optimal expected
    discounted profit from the start state (exact, up to the truncation credit (5) of at
    most a Poisson tail of ``TAIL``, except for postponed products, where it is the value of
    the relaxation (3), an upper bound); :meth:`orders` the order rule at any state."""

    model: LagrangianModel
    rates: torch.Tensor  # (T,N)
    tables: list[tuple[_Group, torch.Tensor]]  # (group, order rule stacked over periods)
    values: torch.Tensor  # (N,)
    expected: torch.Tensor  # (T+1,N) cumulative expected demand from period 0
    seconds: float

    @property
    def value(self) -> float:
        """Expected discounted profit of all products together (their sum)."""
        return float(self.values.sum())

    @property
    def postponed_products(self) -> int:
        """Products whose lead time is beyond the state budget (orders postponed, (3))."""
        return int(self.model.info["postponed_products"])

    def orders(self, state: SimState) -> torch.Tensor:
        """Orders ``(B,N)`` of every product's program at its own state (a few gathers)."""
        batch, n_all = state.on_hand.shape
        out = torch.zeros(batch, n_all, dtype=state.on_hand.dtype, device=state.on_hand.device)
        for gr, order_tab in self.tables:
            out[:, gr.idx] = _group_orders(gr, order_tab, self.expected, state).to(out.dtype)
        return out


def solve_fixed_rates(
    inst: Instance,
    rates: np.ndarray | torch.Tensor,
    *,
    max_states: int = 2048,
    device: str | torch.device = "cpu",
) -> FixedRatePrograms:
    """Each product's exact inventory program with demand Poisson(``rates[t, i]``), ``(T,N)``.

    The bound's own programs (:func:`build_model`, :func:`_solve_group`) with the rate grid
    reduced to ``{0, rate}`` and the rate priced at ``-A`` (a subsidy large enough that the
    full rate is taken in every state, as the check below confirms), then ``A sum_t g_t
    rate_t`` taken off the value again: backward induction with the rate fixed. ``rates``
    set the caps of :func:`build_model` in place of :func:`max_rates`."""
    began = time.perf_counter()
    with torch.no_grad(), _flush_denormals():
        ref = rates if isinstance(rates, torch.Tensor) else torch.tensor(np.array(rates, float))
        ref = ref.to(device=device, dtype=torch.float64)
        h, n = inst.horizon, inst.n_products
        if ref.shape != (h, n):
            raise ValueError(f"rates must have shape (T, N) = ({h}, {n}), got {tuple(ref.shape)}")
        if not bool(torch.isfinite(ref).all()) or bool((ref < 0).any()):
            raise ValueError("rates must be finite and non-negative")
        model = build_model(inst, grid=2, max_states=max_states, device=device, rates=ref)
        cd = model.cd
        unit_cost = -unit_values(inst)[Flow.ORDERED]
        money = (
            cd.price
            + cd.penalty
            + cd.holding
            + torch.tensor(unit_cost, dtype=cd.g.dtype, device=cd.g.device)
        )
        subsidy = 1e3 * h * max(float(money.max()), 1.0)
        alpha = torch.full_like(ref, -subsidy)
        plan = dataclasses.replace(model, row_of=np.arange(h), cache_rows=1)
        values = torch.zeros(n, dtype=ref.dtype, device=ref.device)
        tables = []
        for gr in model.groups:
            fixed = dataclasses.replace(gr, umax=ref[:, gr.idx], kernels={}, grid=2)
            pol = _solve_group(plan, fixed, alpha)
            took_all = all(
                bool(((r == 1) | (fixed.umax[t][:, None, None] <= 0)).all())
                for t, r in enumerate(pol.rate_idx)
            )
            if not took_all:  # the subsidy was not enough: the rate would not be fixed
                raise AssertionError("solve_fixed_rates: a program did not take the full rate")
            paid = subsidy * (cd.g[:, None] * fixed.umax).sum(dim=0)
            values[gr.idx] = pol.value - paid
            tables.append((gr, torch.stack(pol.order)))
        expected = torch.cat([torch.zeros_like(ref[:1]), torch.cumsum(ref, dim=0)])
    return FixedRatePrograms(
        model, ref, tables, values, expected, seconds=time.perf_counter() - began
    )


class StaticSlatePrograms:
    """Static slates and exact inventory programs: each segment's slate fixed for the season,
    the best at the margins ``p - cost_weight * c`` ignoring stock
    (:func:`~coordopt.choice.best_revenue_slates`), and, for the demand those slates induce,
    each product's exact inventory program (:func:`solve_fixed_rates`; the products are
    independent once the slates are fixed). Solved once at construction; each decision is a
    few gathers per product group. Two policies are made of it: the best siloed firm
    (:class:`BestSiloedPolicy`, revenue slates) and the static-margin firm
    (:class:`StaticMarginPolicy`).

    ``max_states`` bounds each product's ``(H+1)(Q+1)^L`` states (caps at a Poisson tail of
    ``TAIL`` of the fixed demand). A product beyond it is solved with its orders postponed
    (module docstring, (3): decided ``d`` periods later with lead time ``L - d``) and then
    orders by the heuristic of :func:`_group_orders` (its state ``d`` periods on, projected
    with expected demand): for that product the policy is no longer the exact optimum, and
    :attr:`value` is then an upper bound, not the policy's value. :meth:`report` counts them
    (``postponed_products``): with the default, 2 of 10 on ``small`` and 3 of 50 on
    ``medium`` (lead time 2, fast movers); ``max_states=4000000`` makes ``small`` exact.
    """

    name = "static"

    def __init__(self, params: SimParams, cost_weight: float, max_states: int) -> None:
        from coordopt.choice import best_revenue_slates, expected_demand
        from coordopt.policies import StaticSlatePolicy

        began = time.perf_counter()
        self.params = params
        inst = params.instance
        slates, self.margin_per_customer = best_revenue_slates(inst, cost_weight)
        self._slates = StaticSlatePolicy(params, slates)
        self.demand_rate = expected_demand(inst, slates)  # (T, N)
        try:
            self.programs = solve_fixed_rates(
                inst, self.demand_rate, max_states=max_states, device=params.device
            )
        except LagrangianError as exc:
            raise ValueError(
                f"policy '{self.name}': its per-product programs (shared with the stochastic "
                f"bound) do not cover this instance: {exc}"
            ) from exc
        self.setup_seconds = time.perf_counter() - began

    @property
    def value(self) -> float:
        """The programs' expected discounted profit from the start state: the policy's exact
        value when no product is postponed."""
        return self.programs.value

    def report(self) -> dict[str, Any]:
        """What ``coordopt evaluate --json`` reports: set-up seconds, the programs' value and
        how many products were solved with postponed orders (heuristic there)."""
        return {
            "setup_seconds": self.setup_seconds,
            "program_value": self.value,
            "postponed_products": self.programs.postponed_products,
            "program_states": int(self.programs.model.info["states"]),
        }

    def reset(self, batch_size: int) -> None:
        self._slates.reset(batch_size)

    def act(self, state: SimState) -> Action:
        with torch.no_grad():
            orders = self.programs.orders(state).to(self.params.dtype)
        return Action(orders=orders, slates=self._slates.batch_slates(state.batch_size))


class BestSiloedPolicy(StaticSlatePrograms):
    """docs/model.md's best siloed firm (``siloed:inventory=dp``): the siloed firm's slates
    (each segment's revenue-maximising slate, ignoring stock) and each product's exact
    inventory program for the demand they induce (:class:`StaticSlatePrograms`, whose
    docstring says what ``max_states`` does). Made through
    ``make_policy("siloed", params, inventory="dp")``."""

    name = "siloed:inventory=dp"

    def __init__(
        self,
        params: SimParams,
        *,
        season_end: bool = True,
        max_states: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        del seed  # decisions are deterministic given the state
        if not season_end:
            raise ValueError(
                f"policy '{self.name}': option season_end=false is the base-stock firm that "
                "orders past the season; the dynamic program orders optimally for the season "
                "it knows, so drop season_end (or use inventory=base-stock)"
            )
        super().__init__(params, 0.0, max_states)


class StaticMarginPolicy(StaticSlatePrograms):
    """The static-margin firm (``static``): the best siloed firm with marketing that knows the
    unit costs -- each segment's slate fixed for the season at the margins
    ``p - cost_weight * c`` (default 1: the gross margin), each product's exact inventory
    program for the demand they induce (:class:`StaticSlatePrograms`). Coordinated through
    the costs, blind to the stock: on ``large`` it beat the best siloed firm by 0.34%
    (benchmarks/teacher_headroom.py), the strongest optimiser policy measured there."""

    def __init__(
        self,
        params: SimParams,
        *,
        cost_weight: float = 1.0,
        max_states: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        del seed  # decisions are deterministic given the state
        self.name = "static" if cost_weight == 1.0 else f"static:cost_weight={cost_weight:g}"
        super().__init__(params, cost_weight, max_states)
