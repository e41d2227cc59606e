"""Multinomial-logit choice: probabilities and exact revenue-maximising slates.

A slate S (|S| <= K) raises the weight of its products from ``base_attraction`` to
``rec_attraction``. The expected revenue per customer of segment k is
``R(S) = sum_i p_i w_i(S) / (w_0 + sum_i w_i(S))``. For a target rate R,
``max_S sum_i (p_i - R) w_i(S) - R w_0`` is solved by the K largest positive gains
``(p_i - R)(w^R_i - w^N_i)``; Dinkelbach's iteration ``R <- R(S*(R))`` then reaches the exact
optimum in finitely many steps (the classical parametric argument for MNL assortment).
"""

from __future__ import annotations

import numpy as np

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


def best_revenue_slates(
    inst: Instance, prices: np.ndarray | None = None, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Exact revenue-maximising slate per segment, ignoring stock.

    Returns ``(slates (M, K) with -1 padding, revenue per customer (M,))``. ``prices`` may
    replace the product prices (e.g. margins) as the value of a sale.
    """
    p = inst.price if prices is None else np.asarray(prices, dtype=float)
    k_max = inst.effective_slate_size
    gain_w = inst.rec_attraction - inst.base_attraction  # (M, N)
    m = inst.n_segments
    slates = np.full((m, k_max), -1, dtype=np.int64)
    rate = revenue_rate(inst, slates, p)
    for _ in range(max_iter):
        gains = (p[None, :] - rate[:, None]) * gain_w
        order = np.argsort(-gains, axis=1, kind="stable")[:, :k_max]
        top = np.take_along_axis(gains, order, axis=1)
        candidate = np.where(top > 1e-12, order, -1)
        cand_rate = revenue_rate(inst, candidate, p)
        better = cand_rate > rate + 1e-12
        if not better.any():
            break
        slates[better], rate[better] = candidate[better], cand_rate[better]
    return slates, rate


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
