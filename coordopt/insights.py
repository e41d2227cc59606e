"""Synchronised-adjustment insights: do recommendations and replenishment move together?

Every source -- the fluid plan, the DP policy, simulated trajectories of any policy -- is
put into ONE representation, :class:`InsightData`: per period ``t``, episode ``e``, segment
``k`` and product ``i`` a recommendation intensity (fluid: ``alpha / y``; a simulated
episode: 1 if i is on k's slate, so the mean over episodes is the fraction of episodes in
which i is recommended), the stock available after arrivals, its cover (available divided
by the product's mean demand per period with nothing recommended, so cover is measured in
periods and does not move mechanically with recommendations), orders and arrivals.

:func:`insight_metrics` measures the patterns of a coordinated firm, each with the sign it
should have (see :data:`PATTERNS`); simulated sources get a bootstrap 95% interval over
episodes. :func:`alignment_score` says how closely one source's intensities and orders
follow another's (an agent's against the optimiser's). :func:`plot_insights` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.choice import expected_demand
from coordopt.instance import Instance
from coordopt.io import atomic_write
from coordopt.solution import Plan, SolveError, SolveStatus

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


@dataclass(frozen=True, eq=False)
class InsightData:
    """One source in the common representation (episodes ``E``; ``E = 1`` for a plan).

    ``intensity (T,E,M,N)`` in [0,1]; ``available, orders, arrivals (T,E,N)`` units;
    ``base_demand (N,)`` mean demand per period with nothing recommended; ``weights (M,)``
    arrival rates (to average intensity over segments); ``simulated`` whether episodes are
    random draws (then metrics get bootstrap intervals).
    """

    source: str
    intensity: np.ndarray
    available: np.ndarray
    orders: np.ndarray
    arrivals: np.ndarray
    base_demand: np.ndarray
    weights: np.ndarray
    lead_time: np.ndarray
    similarity: np.ndarray  # (N, N) product similarity (cosine of demand profiles)
    simulated: bool

    @property
    def cover(self) -> np.ndarray:
        """Available stock in periods of unrecommended mean demand, ``(T,E,N)``."""
        return self.available / np.maximum(self.base_demand, 1e-9)

    @property
    def product_intensity(self) -> np.ndarray:
        """Share of arriving customers who see each product recommended, ``(T,E,N)``."""
        w = self.weights / self.weights.sum()
        return np.einsum("temn,m->ten", self.intensity, w)

    def take(self, episodes: np.ndarray) -> InsightData:
        """The same source restricted to (or resampled at) ``episodes``."""

        def sl(a: np.ndarray) -> np.ndarray:
            return a[:, episodes]

        return InsightData(
            self.source,
            sl(self.intensity),
            sl(self.available),
            sl(self.orders),
            sl(self.arrivals),
            self.base_demand,
            self.weights,
            self.lead_time,
            self.similarity,
            self.simulated,
        )


def product_similarity(inst: Instance) -> np.ndarray:
    """Cosine similarity of products' demand profiles across segments, ``(N,N)``, diagonal 0
    (the same measure the block decomposition uses to group substitutes)."""
    from coordopt.solvers.decompose import demand_profiles

    prof = np.sqrt(demand_profiles(inst))
    norm = np.linalg.norm(prof, axis=1)
    unit = prof / np.where(norm > 0, norm, 1.0)[:, None]
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    return sim


def _common(inst: Instance) -> dict[str, Any]:
    empty = np.full((inst.n_segments, 1), -1, dtype=np.int64)
    return {
        "base_demand": expected_demand(inst, empty),
        "weights": inst.arrival_rate,
        "lead_time": inst.lead_time.astype(int),
        "similarity": product_similarity(inst),
    }


def from_plan(inst: Instance, plan: Plan, source: str = "fluid") -> InsightData:
    """A plan (:class:`coordopt.solution.Plan`, from any solver's ``result().plan``) as one
    deterministic episode. Available stock is last period's end inventory plus the orders
    arriving now."""
    rec = np.asarray(plan.rec_frequency, dtype=float)
    orders = np.asarray(plan.orders, dtype=float)
    inv = np.asarray(plan.inventory, dtype=float)
    t_n, n = orders.shape
    arrivals = np.zeros((t_n, n))
    for i in range(n):
        lt = int(inst.lead_time[i])
        if lt < t_n:
            arrivals[lt:, i] = orders[: t_n - lt, i]
    start = np.vstack([inst.initial_inventory[None].astype(float), inv[:-1]])
    return InsightData(
        source,
        rec[:, None],
        (start + arrivals)[:, None],
        orders[:, None],
        arrivals[:, None],
        simulated=False,
        **_common(inst),
    )


def from_trajectory(inst: Instance, traj: Any, source: str) -> InsightData:
    """Recorded episodes (:class:`coordopt.evaluation.Trajectory`) as simulated data: the
    intensity of (t, e, k, i) is 1 when i is on k's slate in episode e at t."""
    slates = np.asarray(traj.slates)  # (T,B,M,K)
    t_n, b, m, _ = slates.shape
    n = inst.n_products
    rec = np.zeros((t_n, b, m, n + 1))
    idx = np.where(slates >= 0, slates, n)
    np.put_along_axis(rec, idx, 1.0, axis=3)
    arrivals = np.asarray(traj.available) - np.asarray(traj.on_hand)
    return InsightData(
        source,
        rec[..., :n],
        np.asarray(traj.available, dtype=float),
        np.asarray(traj.orders, dtype=float),
        np.maximum(arrivals, 0.0),
        simulated=True,
        **_common(inst),
    )


def simulate(
    inst: Instance, policy: str, episodes: int = 64, seed: int = 0, **options: Any
) -> InsightData:
    """Simulate ``policy`` (a registered name or a trained agent's directory) and record it."""
    import torch

    from coordopt.evaluation import rollout
    from coordopt.policies import make_policy
    from coordopt.simulator import SimParams

    if episodes < 2:
        raise ValueError(f"episodes must be >= 2 for bootstrap intervals, got {episodes}")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    pol = make_policy(policy, params, **options)
    stats = rollout(params, pol, episodes, seed=seed, record=True)
    assert stats.trajectory is not None
    return from_trajectory(inst, stats.trajectory, getattr(pol, "name", policy))


def fluid_plan(inst: Instance) -> InsightData:
    """The coordinated fluid optimum of ``inst`` as insight data."""
    from coordopt.solvers.fluid import solve_fluid

    sol = solve_fluid(inst, raise_on_failure=False).result()
    if sol.status is not SolveStatus.OPTIMAL or sol.plan is None:
        raise SolveError(sol.status, f"program of {inst.name!r} not solved: {sol.message}")
    return from_plan(inst, sol.plan, "fluid")


# --------------------------------------------------------------------------- the metrics


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


# --------------------------------------------------------------------------- output


def plot_insights(
    inst: Instance,
    sources: Sequence[InsightData],
    results: Sequence[dict[str, Any]],
    out_dir: str | Path,
) -> list[Path]:
    """Draw the insights into ``out_dir`` (PNG, Agg backend) and return the files:

    ``intensity_vs_cover.png`` (per product, time-averaged, one panel per source),
    ``timeline.png`` (intensity, cover and arrivals over time of the four best-selling
    products of the first source) and ``metrics.png`` (each pattern's value per source
    with its 95% interval).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    files: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        plt.close(fig)
        files.append(path)

    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 4), squeeze=False)
    for ax, d in zip(axes[0], sources, strict=True):
        r = d.product_intensity.mean(axis=(0, 1))
        c = d.cover.mean(axis=(0, 1))
        ax.scatter(c, r, s=18, alpha=0.7)
        ax.set_xlabel("mean stock cover (periods of base demand)")
        ax.set_ylabel("recommendation intensity (share of customers)")
        ax.set_title(f"{d.source}: intensity vs cover")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{inst.name}: recommendation intensity vs stock cover, per product")
    save(fig, "intensity_vs_cover.png")

    d = sources[0]
    r = d.product_intensity.mean(axis=1)
    c = d.cover.mean(axis=1)
    a = d.arrivals.mean(axis=1) / np.maximum(d.base_demand, 1e-9)
    top = np.argsort(-d.base_demand)[:4]
    fig, axes = plt.subplots(len(top), 1, figsize=(8, 2.2 * len(top)), sharex=True, squeeze=False)
    periods = np.arange(1, r.shape[0] + 1)
    for ax, i in zip(axes[:, 0], top, strict=True):
        ax.bar(periods, a[:, i], color="tab:gray", alpha=0.4, label="arrivals (periods of demand)")
        ax.plot(periods, c[:, i], color="tab:blue", label="cover (periods of demand)")
        ax.set_ylabel("periods")
        ax2 = ax.twinx()
        ax2.plot(periods, r[:, i], color="tab:red", marker=".", label="intensity")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("intensity")
        ax.set_title(f"{inst.product_names[i]}", fontsize=9)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("period")
    fig.suptitle(f"{inst.name}, {d.source}: intensity, stock cover and arrivals over time")
    save(fig, "timeline.png")

    names = list(PATTERNS)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(results), 1)
    for j, res in enumerate(results):
        vals = [res["metrics"][k]["value"] for k in names]
        err = np.array(
            [
                [0.0, 0.0]
                if res["metrics"][k]["ci"] is None or not math.isfinite(v)
                else [v - res["metrics"][k]["ci"][0], res["metrics"][k]["ci"][1] - v]
                for k, v in zip(names, vals, strict=True)
            ]
        ).T
        xs = np.arange(len(names)) + j * width
        ax.bar(
            xs,
            np.nan_to_num(np.array(vals, dtype=float)),
            width,
            yerr=err,
            capsize=3,
            label=res["source"],
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("metric value (expected > 0; see summary for units)")
    ax.set_title(f"{inst.name}: synchronised-adjustment patterns (95% bootstrap CI)")
    ax.legend()
    save(fig, "metrics.png")
    return files


def markdown_summary(
    inst: Instance,
    results: Sequence[dict[str, Any]],
    confirm: dict[str, Any] | None,
    alignment: dict[str, float] | None,
) -> str:
    """A Markdown report of the metrics of every source and the optimum's confirmations."""
    lines = [f"# Synchronised-adjustment insights: {inst.name}", "", inst.summary(), ""]
    head = "| pattern | expected | " + " | ".join(r["source"] for r in results) + " |"
    lines += [head, "|" + "---|" * (2 + len(results))]

    def cell(m: dict[str, Any]) -> str:
        v = m["value"]
        if not math.isfinite(v):
            return "n/a"
        s = f"{v:+.3f}"
        if m["ci"] is not None:
            s += f" [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"
        return s

    for k, (sign, _, _) in PATTERNS.items():
        lines.append(
            f"| {k} | {sign} | " + " | ".join(cell(r["metrics"][k]) for r in results) + " |"
        )
    lines += ["", "## Patterns", ""]
    lines += [f"- **{k}** ({unit}): {meaning}" for k, (_, meaning, unit) in PATTERNS.items()]
    if confirm is not None:
        lines += ["", "## Does the optimum confirm each pattern?", ""]
        for k, c in confirm.items():
            verdict = {True: "yes", False: "no", None: "undefined"}[c["optimal"]]
            agree = {True: "agrees", False: "disagrees", None: "n/a"}[c["agrees_with_optimal"]]
            lines.append(
                f"- {k}: optimum's sign matches the expected one: {verdict}; "
                f"measured source {agree} with the optimum"
            )
    if alignment is not None:
        lines += ["", "## Alignment with the fluid optimum", ""]
        lines += [f"- {k}: {v:.4f}" for k, v in alignment.items()]
    return "\n".join(lines) + "\n"
