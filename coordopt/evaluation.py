"""Rollouts and evaluation with common random numbers.

Episodes come in batches; the demand draws of batch ``j``, period ``t`` come from a
generator seeded with ``step_seed(seed + j, t)``, so two policies evaluated with the same
``seed``, ``episodes`` and ``batch_size`` face the same random stream, period by period
(re-seeding every period keeps one period's differences from shifting the next period's
draws). Their difference is then estimated far more tightly than by independent runs:
:func:`compare` reports the paired confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from coordopt.economics import term_names
from coordopt.instance import Instance
from coordopt.policies import Policy, make_policy
from coordopt.simulator import SimParams, SimState, StepResult, reset, step, step_seed


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Per-period records of a batch of episodes, each ``(T, B, ...)`` (float64 numpy)."""

    on_hand: np.ndarray  # (T, B, N) start-of-period on-hand (before arrivals)
    available: np.ndarray  # (T, B, N)
    orders: np.ndarray  # (T, B, N)
    slates: np.ndarray  # (T, B, M, K) int
    demand: np.ndarray  # (T, B, N)
    sales: np.ndarray  # (T, B, N)
    lost: np.ndarray  # (T, B, N)
    reward: np.ndarray  # (T, B)


@dataclass
class EpisodeStats:
    """Per-episode totals of a batch, ``(B,)`` each (discounted money, raw units)."""

    profit: np.ndarray
    terms: dict[str, np.ndarray]
    demand: np.ndarray
    sales: np.ndarray
    lost: np.ndarray
    on_hand: np.ndarray  # mean end-of-period on-hand units (summed over products)
    trajectory: Trajectory | None = None


def rollout(
    params: SimParams,
    policy: Policy,
    batch_size: int,
    seed: int,
    record: bool = False,
    on_step: Callable[[SimState, StepResult], None] | None = None,
) -> EpisodeStats:
    """Run ``batch_size`` full episodes of ``policy`` on the demand stream ``seed``."""
    state = reset(params, batch_size)
    policy.reset(batch_size)
    gen = torch.Generator(device=params.device)
    disc = 1.0
    f64 = torch.float64
    profit = torch.zeros(batch_size, dtype=f64, device=params.device)
    terms = {k: torch.zeros_like(profit) for k in term_names()}
    units = {k: torch.zeros_like(profit) for k in ("demand", "sales", "lost", "on_hand")}
    rec: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for t in range(params.horizon):
            gen.manual_seed(step_seed(seed, t))
            action = policy.act(state)
            prev = state
            state, res = step(state, action, params, gen)
            profit += disc * res.reward.to(f64)
            for k, value in res.terms.items():
                terms[k] += disc * value.to(f64)
            units["demand"] += res.demand.sum(1).to(f64)
            units["sales"] += res.sales.sum(1).to(f64)
            units["lost"] += res.lost.sum(1).to(f64)
            units["on_hand"] += state.on_hand.sum(1).to(f64) / params.horizon
            disc *= params.discount
            if record:
                for name, val in (
                    ("on_hand", prev.on_hand),
                    ("available", res.available),
                    ("orders", res.orders),
                    ("slates", action.slates),
                    ("demand", res.demand),
                    ("sales", res.sales),
                    ("lost", res.lost),
                    ("reward", res.reward),
                ):
                    rec.setdefault(name, []).append(val.detach().cpu())
            if on_step is not None:
                on_step(state, res)
    traj = None
    if record:
        traj = Trajectory(
            **{
                k: torch.stack(v).numpy().astype(np.int64 if k == "slates" else np.float64)
                for k, v in rec.items()
            }
        )
    return EpisodeStats(
        profit=profit.cpu().numpy(),
        terms={k: v.cpu().numpy() for k, v in terms.items()},
        demand=units["demand"].cpu().numpy(),
        sales=units["sales"].cpu().numpy(),
        lost=units["lost"].cpu().numpy(),
        on_hand=units["on_hand"].cpu().numpy(),
        trajectory=traj,
    )


def ci_halfwidth(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean."""
    n = len(values)
    if n < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class Evaluation:
    """Summary of ``episodes`` episodes of one policy (per-episode arrays kept for pairing)."""

    policy: str
    instance: str
    episodes: int
    seed: int
    profit: np.ndarray
    terms: dict[str, np.ndarray]
    fill_rate: np.ndarray
    on_hand: np.ndarray
    lost: np.ndarray
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.profit.mean())

    @property
    def ci95(self) -> float:
        return ci_halfwidth(self.profit)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON summary: mean profit, its 95% half-width, service and per-term means."""
        return {
            "policy": self.policy,
            "instance": self.instance,
            "episodes": self.episodes,
            "seed": self.seed,
            "mean": self.mean,
            "ci95": self.ci95,
            "fill_rate": float(self.fill_rate.mean()),
            "avg_on_hand": float(self.on_hand.mean()),
            "lost_sales": float(self.lost.mean()),
            "terms": {k: float(v.mean()) for k, v in self.terms.items()},
            "seconds": self.seconds,
            **self.extra,
        }


def evaluate(
    instance: Instance | SimParams,
    policy: Policy | str,
    episodes: int = 100,
    seed: int = 0,
    batch_size: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    **policy_options: Any,
) -> Evaluation:
    """Mean discounted profit (95% CI), fill rate, on-hand, lost sales and per-term profit.

    ``seed`` fixes the customers: the same ``(seed, episodes, batch_size)`` gives every
    policy the same demand stream (common random numbers). Money is accounted in float64
    unless ``instance`` is already a :class:`SimParams` of another dtype.
    """
    import time

    from tqdm import tqdm

    params = (
        instance
        if isinstance(instance, SimParams)
        else SimParams.from_instance(instance, device, dtype=torch.float64)
    )
    pol = make_policy(policy, params, **policy_options) if isinstance(policy, str) else policy
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    bs = min(episodes, batch_size or 256)
    chunks = [min(bs, episodes - s) for s in range(0, episodes, bs)]
    t0 = time.perf_counter()
    parts: list[EpisodeStats] = []
    for j, b in enumerate(
        tqdm(chunks, desc=f"evaluate {pol.name}", disable=not progress, unit="batch", delay=1.0)
    ):
        parts.append(rollout(params, pol, b, seed=seed * 100_003 + j))
    cat = np.concatenate
    demand = cat([p.demand for p in parts])
    sales = cat([p.sales for p in parts])
    fill = np.where(demand > 0, sales / np.maximum(demand, 1e-12), 1.0)
    return Evaluation(
        policy=pol.name,
        instance=params.instance.name,
        episodes=episodes,
        seed=seed,
        profit=cat([p.profit for p in parts]),
        terms={k: cat([p.terms[k] for p in parts]) for k in term_names()},
        fill_rate=fill,
        on_hand=cat([p.on_hand for p in parts]),
        lost=cat([p.lost for p in parts]),
        seconds=time.perf_counter() - t0,
    )


def compare(a: Evaluation, b: Evaluation) -> dict[str, float]:
    """Paired difference ``a - b`` of two evaluations on the same demand stream."""
    if (a.seed, a.episodes) != (b.seed, b.episodes):
        raise ValueError(
            "compare needs evaluations with the same seed and episode count (common random numbers)"
        )
    diff = a.profit - b.profit
    return {
        "mean": float(diff.mean()),
        "ci95": ci_halfwidth(diff),
        "relative": float(diff.mean() / abs(b.mean)) if b.mean else math.nan,
    }
