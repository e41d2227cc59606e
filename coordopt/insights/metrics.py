"""The synchronised-adjustment patterns (:data:`PATTERNS`), measured on :class:`InsightData`.

:func:`insight_metrics` measures each pattern with the sign it should have under
coordination; simulated sources get a percentile-bootstrap 95% interval over episodes.
:func:`alignment_score` says how closely one source's intensities and orders follow
another's (an agent's against the optimiser's); :func:`confirmations` whether the optimum
confirms each expected sign.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from coordopt.insights.data import InsightData, from_plan, from_trajectory
from coordopt.instance import Instance

# name -> (expected sign, one-line meaning, unit)
PATTERNS: dict[str, tuple[str, str, str]] = {
    "intensity_cover_corr": (
        ">0",
        "across products, recommendation intensity rises with stock cover (push what you have)",
        "correlation",
    ),
    "intensity_orders_corr": (
        ">0",
        "across products, intensity when an order arrives rises with the order's "
        "size in periods of demand (order what you will promote)",
        "correlation",
    ),
    "post_arrival_lift": (
        ">0",
        "intensity in the 2 periods from a large arrival minus the 2 periods before",
        "intensity",
    ),
    "end_cover_vs_siloed": (
        ">0",
        "in the run-down (last periods), intensity-weighted stock cover divided by the "
        "plain mean cover (>1: recommendations sit on stocked products), minus the siloed "
        "firm's ratio",
        "ratio",
    ),
    "end_order_drop": (
        ">0",
        "1 - (orders per period in the last L_max+1 periods / orders per period overall):"
        " orders fall toward the horizon",
        "fraction",
    ),
    "substitute_excess": (
        ">0",
        "share of the intensity a scarce product loses that goes to its closest "
        "substitutes, minus the share they would get at random",
        "share",
    ),
}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    a, b = np.ravel(a), np.ravel(b)
    sa, sb = a.std(), b.std()
    if len(a) < 3 or sa < 1e-12 or sb < 1e-12:
        return math.nan
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _mean_over_periods(vals: list[float]) -> float:
    finite = [v for v in vals if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def intensity_cover_corr(d: InsightData) -> float:
    """Across products, per period: correlation of mean intensity and mean cover; the
    average over periods (periods where either is constant are skipped)."""
    r = d.product_intensity.mean(axis=1)
    c = d.cover.mean(axis=1)
    return _mean_over_periods([_corr(r[t], c[t]) for t in range(r.shape[0])])


def intensity_orders_corr(d: InsightData) -> float:
    """Across products, per order period t: correlation of the order size (in periods of
    demand) with the intensity when it arrives (period ``t + L_i``); averaged over t."""
    r = d.product_intensity.mean(axis=1)
    q = d.orders.mean(axis=1) / np.maximum(d.base_demand, 1e-9)
    t_n = q.shape[0]
    vals = []
    for t in range(t_n):
        arrive = t + d.lead_time
        ok = arrive < t_n
        if ok.sum() >= 3:
            vals.append(_corr(q[t, ok], r[arrive[ok], np.flatnonzero(ok)]))
    return _mean_over_periods(vals)


def post_arrival_lift(d: InsightData, window: int = 2) -> float:
    """Event study: for every (episode, product) arrival at least the product's 75th
    percentile of positive arrivals, mean intensity over ``[t, t+w)`` minus over
    ``[t-w, t)``; averaged over events (NaN without events)."""
    r = d.product_intensity  # (T,E,N)
    a = d.arrivals
    t_n = r.shape[0]
    diffs = []
    for i in range(r.shape[2]):
        pos = a[:, :, i][a[:, :, i] > 1e-9]
        if pos.size == 0:
            continue
        cut = np.quantile(pos, 0.75)
        for t in range(window, t_n - window + 1):
            hit = a[t, :, i] >= max(cut, 1e-9)
            if hit.any():
                after = r[t : t + window, hit, i].mean(axis=0)
                before = r[t - window : t, hit, i].mean(axis=0)
                diffs.append(after - before)
    return float(np.concatenate(diffs).mean()) if diffs else math.nan


def end_weighted_cover(d: InsightData, tail: int | None = None) -> float:
    """Intensity-weighted cover ``sum_i r_ti c_ti / sum_i r_ti`` over plain mean cover
    ``mean_i c_ti``, averaged over the last ``tail`` periods (default ``max(2, T // 6)``)
    and episodes: above 1 when recommendations favour the products with stock, whatever
    the overall stock level."""
    r, c = d.product_intensity, d.cover
    t_n = r.shape[0]
    tail = tail or max(2, t_n // 6)
    rr, cc = r[t_n - tail :], c[t_n - tail :]
    tot = rr.sum(axis=2)
    plain = cc.mean(axis=2)
    w = np.divide(
        (rr * cc).sum(axis=2),
        tot * plain,
        out=np.full_like(tot, np.nan),
        where=(tot > 1e-12) & (plain > 1e-12),
    )
    return float(np.nanmean(w)) if np.isfinite(w).any() else math.nan


def end_order_drop(d: InsightData) -> float:
    """``1 - (mean orders per period over the last L_max+1 periods) / (mean overall)``."""
    q = d.orders.sum(axis=2).mean(axis=1)
    last = int(d.lead_time.max()) + 1
    overall = q.mean()
    if overall <= 1e-12:
        return math.nan
    return float(1.0 - q[-last:].mean() / overall)


def substitute_excess(
    d: InsightData, n_substitutes: int = 3, scarce_cover: float = 1.0
) -> tuple[float, float]:
    """Where a scarce product's recommendations go.

    An event is (t, e, j) with cover below ``scarce_cover`` periods while j's usual
    intensity (mean over everything) is positive. Per segment, every other product's
    intensity gain over its own usual level (positive parts) is the mass moved; returns
    ``(share moved to j's n closest substitutes, that share minus n / (N - 1))``.
    """
    n = d.intensity.shape[3]
    if n < n_substitutes + 2:
        return math.nan, math.nan
    s = min(n_substitutes, n - 1)
    usual = d.intensity.mean(axis=(0, 1))  # (M,N)
    near = np.argsort(-d.similarity, axis=1)[:, :s]
    gain_sub = gain_all = 0.0
    scarce = d.cover < scarce_cover
    for j in range(n):
        if usual[:, j].max() <= 1e-9:
            continue
        tt, ee = np.nonzero(scarce[:, :, j])
        if tt.size == 0:
            continue
        delta = np.maximum(d.intensity[tt, ee] - usual[None], 0.0)  # (events,M,N)
        delta[:, :, j] = 0.0
        delta *= (usual[None, :, j] > 1e-9)[..., None]
        gain_all += float(delta.sum())
        gain_sub += float(delta[:, :, near[j]].sum())
    if gain_all <= 1e-12:
        return math.nan, math.nan
    share = gain_sub / gain_all
    return share, share - s / (n - 1)


def _point_metrics(d: InsightData, base_end_cover: float | None) -> dict[str, float]:
    share, excess = substitute_excess(d)
    end_cover = end_weighted_cover(d)
    return {
        "intensity_cover_corr": intensity_cover_corr(d),
        "intensity_orders_corr": intensity_orders_corr(d),
        "post_arrival_lift": post_arrival_lift(d),
        "end_cover_vs_siloed": (
            end_cover - base_end_cover if base_end_cover is not None else math.nan
        ),
        "end_order_drop": end_order_drop(d),
        "substitute_excess": excess,
        "_end_cover": end_cover,
        "_substitute_share": share,
    }


def insight_metrics(
    data: InsightData, *, baseline: InsightData | None = None, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Every pattern of :data:`PATTERNS` measured on ``data``.

    ``baseline`` is the siloed firm (simulated), needed for ``end_cover_vs_siloed``. For
    simulated data each metric carries a percentile-bootstrap 95% interval over episodes
    (baseline episodes resampled too). Returns ``{"source", "episodes", "metrics": {name:
    {value, expected, ci, sign_ok, meaning, unit}}, "end_cover", "substitute_share"}``;
    ``sign_ok`` is None when the value is undefined (NaN).
    """
    base_cover = end_weighted_cover(baseline) if baseline is not None else None
    point = _point_metrics(data, base_cover)
    cis: dict[str, tuple[float, float] | None] = {k: None for k in PATTERNS}
    if data.simulated and n_boot > 0 and data.intensity.shape[1] >= 2:
        rng = np.random.default_rng(seed)
        e = data.intensity.shape[1]
        samples: dict[str, list[float]] = {k: [] for k in PATTERNS}
        for _ in range(n_boot):
            bc = None
            if baseline is not None:
                eb = baseline.intensity.shape[1]
                bc = end_weighted_cover(baseline.take(np.asarray(rng.integers(0, eb, size=eb))))
            vals = _point_metrics(data.take(np.asarray(rng.integers(0, e, size=e))), bc)
            for k in PATTERNS:
                samples[k].append(vals[k])
        for k, draws in samples.items():
            arr = np.array(draws)
            arr = arr[np.isfinite(arr)]
            if arr.size >= max(10, n_boot // 2):
                cis[k] = (float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975)))
    metrics = {}
    for k, (sign, meaning, unit) in PATTERNS.items():
        value = point[k]
        metrics[k] = {
            "value": value,
            "expected": sign,
            "ci": cis[k],
            "sign_ok": None if not math.isfinite(value) else bool(value > 0),
            "meaning": meaning,
            "unit": unit,
        }
    return {
        "source": data.source,
        "episodes": int(data.intensity.shape[1]),
        "simulated": data.simulated,
        "metrics": metrics,
        "end_cover": point["_end_cover"],
        "substitute_share": point["_substitute_share"],
    }


def alignment_score(
    policy_traj: Any, reference: Any, inst: Instance | None = None
) -> dict[str, float]:
    """How closely a policy's recommendations and orders follow a reference's (the optimiser).

    Both sides may be :class:`InsightData`; ``policy_traj`` may be a recorded
    ``Trajectory`` and ``reference`` a :class:`~coordopt.solution.Plan` (then ``inst`` is
    needed to convert).
    Returns the correlation of the mean intensity tensors ``(T,M,N)``, their mean absolute
    difference, the correlation of mean orders ``(T,N)`` and their relative L1 distance
    ``sum |q - q_ref| / sum q_ref``.
    """

    def as_data(obj: Any, source: str, plan: bool) -> InsightData:
        if isinstance(obj, InsightData):
            return obj
        if inst is None:
            raise ValueError("alignment_score needs inst= to convert a trajectory or a plan")
        return from_plan(inst, obj, source) if plan else from_trajectory(inst, obj, source)

    p = as_data(policy_traj, "policy", plan=False)
    r = as_data(reference, "reference", plan=True)
    if (
        p.intensity.shape[0] != r.intensity.shape[0]
        or p.intensity.shape[2:] != r.intensity.shape[2:]
    ):
        raise ValueError("policy and reference have different horizons, segments or products")
    ip, ir = p.intensity.mean(axis=1), r.intensity.mean(axis=1)
    qp, qr = p.orders.mean(axis=1), r.orders.mean(axis=1)
    return {
        "intensity_corr": _corr(ip, ir),
        "intensity_mae": float(np.abs(ip - ir).mean()),
        "orders_corr": _corr(qp, qr),
        "orders_rel_l1": float(np.abs(qp - qr).sum() / max(float(np.abs(qr).sum()), 1e-12)),
    }


def confirmations(result: dict[str, Any], optimal: dict[str, Any]) -> dict[str, Any]:
    """Per pattern: the measured sign, the optimum's sign, and whether they agree with the
    expected sign (``None`` where either is undefined)."""
    out = {}
    for k in PATTERNS:
        a = result["metrics"][k]["sign_ok"]
        b = optimal["metrics"][k]["sign_ok"]
        out[k] = {
            "measured": a,
            "optimal": b,
            "optimal_confirms_expected": b,
            "agrees_with_optimal": None if a is None or b is None else a == b,
        }
    return out
