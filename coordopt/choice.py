"""Multinomial-logit choice: probabilities and exact revenue-maximising slates.

A slate S (|S| <= K) raises the weight of its products from ``base_attraction`` to
``rec_attraction``. The expected revenue per customer of segment k is
``R(S) = sum_i p_i w_i(S) / (w_0 + sum_i w_i(S))``. For a target rate R,
``max_S sum_i (p_i - R) w_i(S) - R w_0`` is solved by the K largest positive gains
``(p_i - R)(w^R_i - w^N_i)``; Dinkelbach's iteration ``R <- R(S*(R))`` then reaches the exact
optimum in finitely many steps (the classical parametric argument for MNL assortment).
:func:`best_slates` runs it in torch for every (period, segment) pair at once, at any margins;
it is the one best-revenue slate algorithm: the siloed firm's slates
(:func:`best_revenue_slates`), the catalog solver's choice programs and bid-price control's
slates all come from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from coordopt.instance import Instance


def choice_probabilities(weights: np.ndarray, no_purchase: np.ndarray) -> np.ndarray:
    """``P[..., k, i] = w[..., k, i] / (w0_k + sum_j w[..., k, j])``."""
    return weights / (no_purchase[..., :, None] + weights.sum(axis=-1, keepdims=True))


def slate_weights(inst: Instance, slates: np.ndarray) -> np.ndarray:
    """Attraction weights ``(M, N)`` when segment k is shown ``slates[k]`` (-1 = empty slot)."""
    w = inst.base_attraction.copy()
    for k, row in enumerate(np.asarray(slates).reshape(inst.n_segments, -1)):
        idx = row[row >= 0]
        w[k, idx] = inst.rec_attraction[k, idx]
    return w


def expected_demand(
    inst: Instance, slates: np.ndarray, available: np.ndarray | None = None
) -> np.ndarray:
    """Mean demand per period and product ``sum_k lambda_kt P_ki`` under static slates,
    ``(T, N)`` (rows equal unless arrivals are seasonal)."""
    w = slate_weights(inst, slates)
    if available is not None:
        w = w * (np.asarray(available) > 0)[None, :]
    prob = choice_probabilities(w, inst.no_purchase)
    return (inst.arrival_rate[:, :, None] * prob[None]).sum(axis=1)


def revenue_rate(
    inst: Instance, slates: np.ndarray, prices: np.ndarray | None = None
) -> np.ndarray:
    """Expected revenue per customer of each segment under ``slates``, ``(M,)``."""
    p = inst.price if prices is None else prices
    return choice_probabilities(slate_weights(inst, slates), inst.no_purchase) @ p


@dataclass(frozen=True, eq=False)
class SlateChoice:
    """Best slates of all (period, segment) pairs at given margins.

    ``slates (H,M,K)`` product indices (-1 = empty slot); ``offered (H,M,N)`` bool (None
    in "lost" mode: every product is offered); ``rate (H,M)`` the attained revenue per
    customer; ``upper (H,M)`` a certified upper bound on the best rate (equal to ``rate``
    once Dinkelbach has converged); ``y (H,M)`` the no-purchase mass
    ``lambda / (w0 + sum offered w)``.
    """

    slates: torch.Tensor
    offered: torch.Tensor | None
    rate: torch.Tensor
    upper: torch.Tensor
    y: torch.Tensor


def best_slates(
    margin: torch.Tensor,
    rate: torch.Tensor,
    wr: torch.Tensor,
    wn: torch.Tensor,
    w0: torch.Tensor,
    slate_size: int,
    hidden: bool,
    start: torch.Tensor | None = None,
    max_iter: int = 60,
) -> SlateChoice:
    """Exact best-revenue slate for every (period, segment) at margins ``margin (H,N)``.

    For a target rate R the parametric problem ``F(R) = max sum_i (m_i - R) w_i - R w0``
    picks, per product, the best of "not offered" (hidden mode only, 0), "offered"
    ``(m - R) w^N`` and "recommended" ``(m - R) w^R`` with at most K recommended: the K
    largest positive gains of recommending over the best other option. Dinkelbach's
    iteration ``R <- N(S_R) / D(S_R)`` increases R to the optimum in finitely many steps.
    At any R, ``F(R) >= N(S) - R D(S)`` for every choice S gives ``N/D <= R + F(R)^+ /
    D_min`` with ``D_min`` the smallest denominator (``w0``, plus ``sum w^N`` in "lost"
    mode): a certified upper bound even before convergence. ``start`` warm-starts R.
    """
    h, n = margin.shape
    k = min(slate_size, n)
    up = (wr - wn)[None].expand(h, -1, -1)  # (H,M,N) view
    m = margin[:, None, :].expand(-1, wr.shape[0], -1)  # (H,M,N) view
    d_min = w0 + (0.0 if hidden else wn.sum(dim=1))  # (M,)
    base_num = margin @ wn.T  # (H,M): every product offered, nothing recommended
    scale = margin.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    if start is not None:
        r = start.clone()
    elif hidden:
        r = torch.zeros(rate.shape, dtype=margin.dtype, device=margin.device)
    else:
        r = base_num / d_min[None]
    offered: torch.Tensor | None = None
    for _ in range(max_iter):
        diff = m - r[..., None]  # (H,M,N)
        if hidden:
            base = (diff * wn[None]).clamp(min=0.0)
            top, idx = torch.topk(diff * wr[None] - base, k, dim=2)
            f = base.sum(dim=2)
        else:
            top, idx = torch.topk(diff * up, k, dim=2)
            f = base_num - r * wn.sum(dim=1)[None]
        pick = top > 0
        f = f + (top * pick).sum(dim=2) - r * w0[None]
        slates = torch.where(pick, idx, -1)
        if hidden:
            rec = torch.zeros_like(diff)
            rec.scatter_(2, idx, pick.to(diff.dtype))
            offered = (diff > 0) | (rec > 0)
            w = torch.where(offered, wn[None] + rec * up, 0.0)
            num = (w * m).sum(dim=2)
            den = w0[None] + w.sum(dim=2)
        else:
            u_top = torch.gather(up, 2, idx) * pick
            num = base_num + (u_top * torch.gather(m, 2, idx)).sum(dim=2)
            den = d_min[None] + u_top.sum(dim=2)
        new = num / den
        upper = r + f.clamp(min=0.0) / d_min[None]
        done = bool(((upper - new) <= 1e-12 * scale).all())
        r = new
        if done:
            break
    return SlateChoice(slates, offered, new, torch.maximum(upper, new), rate / den)


def best_revenue_slates(inst: Instance, cost_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact best slate per segment, ignoring stock: :func:`best_slates` at the margins
    ``p - cost_weight * c`` with every product offered (``cost_weight = 0``, the default: the
    revenue-maximising slates of the siloed firm's marketing; ``1``: the gross margin).

    Returns ``(slates (M, K) with -1 padding, that margin per customer (M,))``.
    """

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(x, dtype=float))

    choice = best_slates(
        t(inst.price - cost_weight * inst.unit_cost)[None],
        torch.ones(1, inst.n_segments, dtype=torch.float64),  # arrivals: only scale y
        t(inst.rec_attraction),
        t(inst.base_attraction),
        t(inst.no_purchase),
        inst.slate_size,
        hidden=False,
    )
    return choice.slates[0].numpy(), choice.rate[0].numpy()


def demand_profiles(inst: Instance) -> np.ndarray:
    """Demand-share profile of every product across segments, ``(N, M)``.

    Entry ``(i, k)`` is ``lambda_k w^R_ki / (w_k0 + sum_j w^N_kj)``: the mean demand product i
    would draw from segment k if it alone were recommended. Two products with parallel
    profiles sell to the same customers, so under the multinomial logit each takes demand
    from the other (close substitutes).
    """
    denom = inst.no_purchase + inst.base_attraction.sum(axis=1)
    return (inst.mean_arrival_rate[:, None] * inst.rec_attraction / denom[:, None]).T


def product_similarity(inst: Instance) -> np.ndarray:
    """Cosine similarity of the products' :func:`demand_profiles` (square-root scaled, so a
    big segment does not drown the rest), ``(N, N)`` with a zero diagonal; a product with a
    zero profile is similar to nothing. The one measure of "close substitutes": the insights' substitution pattern
    reads it."""
    prof = np.sqrt(demand_profiles(inst))
    norm = np.linalg.norm(prof, axis=1)
    unit = prof / np.where(norm > 0, norm, 1.0)[:, None]
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    return sim
