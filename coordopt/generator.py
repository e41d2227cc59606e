"""Synthetic instances with realistic structure, of any size.

Products sit in price tiers (budget / mid / premium) with tier-dependent margins; segment
tastes come from a low-rank latent-factor model, so products close in latent space are
real substitutes; the recommendation uplift varies by segment (some segments follow
recommendations, others ignore them) and a little by product. An optional seasonal profile
(``seasonality``, ``peak``) makes arrival rates swing over the horizon around their mean.
Optional planted categories (``clusters``) label the products and make every segment favour
one of them, so the substitution structure is known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from coordopt.guards import (
    Range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    unit_interval,
)
from coordopt.instance import Instance, make_instance
from coordopt.introspect import check_fields, ranged

_TIERS = np.array([[8.0, 0.45], [20.0, 0.35], [55.0, 0.28]])  # (median price, margin)


@dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of :func:`generate_instance`; each default gives a plausible retail catalog."""

    n_products: int = ranged(10, positive_int)
    """Catalog size N."""
    n_segments: int = ranged(5, positive_int)
    """Customer segments M."""
    horizon: int = ranged(26, positive_int)
    """Periods T (26 = half a year of weeks)."""
    slate_size: int = ranged(3, positive_int)
    """Recommendation slots per segment and period (capped at N)."""
    latent_dim: int = ranged(4, positive_int)
    """Rank of the taste model; lower means stronger substitution clusters."""
    max_lead_time: int = ranged(2, nonneg_int)
    """Lead times are drawn from 0..max_lead_time."""
    uplift: float = ranged(1.0, nonneg_float)
    """Mean recommendation uplift: rec_attraction ~ base * (1 + uplift * segment factor)."""
    purchase_share: float = ranged(0.6, Range(float, 0.0, 1.0, lo_open=True, hi_open=True))
    """Target share of customers who buy something with nothing recommended."""
    mean_arrivals: float = ranged(40.0, positive_float)
    """Mean customers per segment and period."""
    holding_rate: float = ranged(0.02, nonneg_float)
    """Holding cost per period as a fraction of unit cost."""
    penalty_rate: float = ranged(0.1, nonneg_float)
    """Lost-sale penalty as a fraction of price (goodwill)."""
    salvage_rate: float = ranged(0.3, unit_interval)
    """Salvage value as a fraction of unit cost (at most 1: above it, ordering to salvage pays
    without customers and the fluid program is unbounded)."""
    discount: float = ranged(1.0, Range(float, 0.0, 1.0, lo_open=True))
    """Per-period discount factor gamma."""
    stockout: Literal["lost", "hidden"] = "lost"
    """'lost' or 'hidden'."""
    initial_periods: float = ranged(1.0, nonneg_float)
    """Initial inventory covers this many periods of unrecommended mean demand."""
    seasonality: float = ranged(0.0, Range(float, 0.0, 1.0, hi_open=True))
    """Seasonal amplitude a in [0, 1): arrivals ~ mean * (1 + a cos(2 pi (t - peak) / T))."""
    peak: float = ranged(0.5, unit_interval)
    """Where the seasonal peak falls, as a fraction of the horizon (0 first, 1 last period)."""
    clusters: int = ranged(0, nonneg_int)
    """Planted product categories C (0: none): the i-th product (from 0) is in category
    'C<i mod C + 1>' and the k-th segment favours category 'C<k mod C + 1>' (C <= n_segments)."""
    cluster_affinity: float = ranged(4.0, nonneg_float)
    """Utility bonus of a segment's favoured category (0: category labels, no structure)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.clusters > self.n_segments:
            raise ValueError(
                f"--clusters {self.clusters} needs at least as many segments, got --n-segments "
                f"{self.n_segments}: each category is favoured by its own segments; use more "
                "segments or fewer clusters"
            )


def seasonal_profile(horizon: int, amplitude: float, peak: float) -> np.ndarray:
    """Multiplier of the mean arrival rate in each period, ``(T,)``: one cosine cycle over
    the horizon, highest at period ``peak * (T - 1)``; it averages 1 over the horizon."""
    t = np.arange(horizon)
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (t - peak * (horizon - 1)) / horizon)


def generate_instance(
    config: GeneratorConfig | None = None,
    *,
    seed: int = 0,
    name: str | None = None,
    **overrides: object,
) -> Instance:
    """Draw an instance from ``config`` (fields may be overridden by keyword)."""
    cfg = config or GeneratorConfig()
    if overrides:
        cfg = GeneratorConfig(**{**cfg.__dict__, **overrides})
    n, m, d = cfg.n_products, cfg.n_segments, cfg.latent_dim
    if n < 1 or m < 1:
        raise ValueError(f"n_products and n_segments must be >= 1, got {n} and {m}")
    if not (0.0 <= cfg.seasonality < 1.0 and 0.0 <= cfg.peak <= 1.0):
        raise ValueError(
            f"seasonality={cfg.seasonality} must lie in [0, 1) and peak={cfg.peak} in [0, 1]"
        )
    rng = np.random.default_rng(seed)

    tier = rng.choice(3, size=n, p=[0.45, 0.4, 0.15])
    price = np.round(_TIERS[tier, 0] * rng.lognormal(0.0, 0.25, n), 2)
    margin = np.clip(_TIERS[tier, 1] + rng.normal(0, 0.05, n), 0.1, 0.7)
    unit_cost = np.round(price * (1 - margin), 2)

    # Low-rank tastes: utility = <u_k, v_i> + quality_i - price sensitivity_k * log price_i.
    v = rng.normal(0, 1, (n, d)) / np.sqrt(d)
    u = rng.normal(0, 1, (m, d)) * 1.2
    quality = 0.6 * tier + rng.normal(0, 0.3, n)
    sensitivity = rng.uniform(0.3, 1.2, m)
    util = u @ v.T + quality[None, :] - sensitivity[:, None] * np.log(price)[None, :]
    category = np.arange(n) % max(cfg.clusters, 1)  # planted categories (no random draw)
    if cfg.clusters:
        favoured = (np.arange(m) % cfg.clusters)[:, None] == category[None, :]
        util += cfg.cluster_affinity * favoured
    util -= util.max(axis=1, keepdims=True)
    base = np.exp(util)
    # Scale so that, with nothing recommended, purchase_share of customers buy.
    share = cfg.purchase_share
    base *= (share / (1 - share)) / base.sum(axis=1, keepdims=True)
    seg_uplift = cfg.uplift * rng.gamma(2.0, 0.5, m)  # mean `uplift`, varies by segment
    prod_noise = rng.lognormal(0, 0.3, (m, n))
    rec = base * (1.0 + seg_uplift[:, None] * prod_noise)

    arrivals = np.round(cfg.mean_arrivals * rng.lognormal(0, 0.5, m), 2)
    arrivals = np.maximum(arrivals, 0.1)
    mean_demand = (arrivals[:, None] * base / (1.0 + base.sum(axis=1, keepdims=True))).sum(axis=0)
    lead = rng.integers(0, cfg.max_lead_time + 1, n)
    initial = np.round(mean_demand * (cfg.initial_periods + lead)).astype(np.int64)
    rates = arrivals
    if cfg.seasonality > 0:
        profile = seasonal_profile(cfg.horizon, cfg.seasonality, cfg.peak)
        rates = np.maximum(np.round(profile[:, None] * arrivals[None, :], 2), 0.01)

    return make_instance(
        name=name or f"synthetic-n{n}-m{m}-s{seed}",
        horizon=cfg.horizon,
        discount=cfg.discount,
        slate_size=min(cfg.slate_size, n),
        stockout=cfg.stockout,
        product_names=tuple(f"P{i + 1}" for i in range(n)),
        category=tuple(f"C{c + 1}" for c in category) if cfg.clusters else None,
        price=price,
        unit_cost=unit_cost,
        holding_cost=np.round(cfg.holding_rate * unit_cost, 4),
        lost_sale_penalty=np.round(cfg.penalty_rate * price, 4),
        lead_time=lead,
        initial_inventory=initial,
        salvage_value=np.round(cfg.salvage_rate * unit_cost, 4),
        segment_names=tuple(f"S{k + 1}" for k in range(m)),
        arrival_rate=rates,
        base_attraction=np.round(base, 6),
        rec_attraction=np.round(np.maximum(rec, np.round(base, 6)), 6),
    )  # fields left out (fixed order costs, order caps, warehouse...) take their defaults
