"""Learning speeds of the agents and the critic, and the annealed imitation weight.

Two-timescale stochastic approximation (Borkar) needs step sizes with
``sum_n a_n = inf``, ``sum_n a_n^2 < inf`` for every learner, and ``b_n / a_n -> 0`` for a
slow learner ``b`` against a fast one ``a``: the fast learner then sees the slow one as
frozen, and the slow one sees the fast one as converged. ``a_n = a0 / (1 + n / n0)^p`` meets
the first two for ``1/2 < p <= 1``, and the ratio of two such sequences tends to zero when
the slow exponent is larger. The critic runs on the fastest scale.

Modes (``timescales``): ``multi`` (critic fastest, then the fast agent, then the slow agent;
the slow agent may also be updated every ``k`` iterations with fewer epochs), ``single``
(everyone on the same step sizes, epochs and update period) and ``independent`` (like
``multi`` in speeds, but each agent has its own critic and departmental reward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LEARNERS = ("critic", "replenishment", "recommendation")


@dataclass(frozen=True)
class PowerSchedule:
    """``a_n = a0 / (1 + n / n0) ** exponent`` (``exponent = 0``: constant ``a0``)."""

    a0: float
    exponent: float
    n0: float = 1.0

    def __call__(self, n: int) -> float:
        return self.a0 / (1.0 + n / self.n0) ** self.exponent

    @property
    def diverges(self) -> bool:
        """``sum_n a_n = inf`` (true for ``exponent <= 1``)."""
        return self.a0 > 0 and self.exponent <= 1.0

    @property
    def square_summable(self) -> bool:
        """``sum_n a_n^2 < inf`` (true for ``exponent > 1/2``)."""
        return self.exponent > 0.5


@dataclass(frozen=True)
class Timescale:
    """How one learner is updated: step-size schedule, update period and epochs."""

    lr: PowerSchedule
    update_every: int
    epochs: int

    def active(self, iteration: int) -> bool:
        """Whether the learner is updated at this iteration."""
        return iteration % self.update_every == 0


def slower(slow: PowerSchedule, fast: PowerSchedule) -> bool:
    """``b_n / a_n -> 0``: exponents strictly ordered (equal-``n0`` power schedules)."""
    return slow.exponent > fast.exponent


def check_two_timescale(
    fast: PowerSchedule, slow: PowerSchedule, horizon: int = 10**6
) -> dict[str, Any]:
    """Analytic and numerical evidence that ``(fast, slow)`` form a two-timescale pair.

    Returns the analytic flags, the ratio ``b_n / a_n`` at a few ``n`` (it must decrease to 0),
    and partial sums of ``a_n`` and ``a_n^2`` up to ``horizon`` and ``horizon / 2`` (the first
    keeps growing, the second levels off).
    """
    points = [0, 10, 100, 1_000, 10_000, horizon]
    ratios = [slow(n) / fast(n) for n in points]
    partial = {}
    for name, sched in (("fast", fast), ("slow", slow)):
        s1 = s2 = 0.0
        half1 = half2 = 0.0
        for n in range(horizon):
            a = sched(n)
            s1 += a
            s2 += a * a
            if n == horizon // 2:
                half1, half2 = s1, s2
        partial[name] = {"sum": s1, "sum_half": half1, "sum_sq": s2, "sum_sq_half": half2}
    return {
        "conditions": fast.diverges
        and slow.diverges
        and fast.square_summable
        and slow.square_summable
        and slower(slow, fast),
        "ratios": ratios,
        "points": points,
        "partial_sums": partial,
    }


def make_timescales(config: Any) -> dict[str, Timescale]:
    """Per-learner schedules (``critic``, ``replenishment``, ``recommendation``) of a config.

    ``schedule = "power"`` uses decaying steps; ``"constant"`` keeps each learner's base rate
    (exponent 0), so the ratio between agents stays fixed (``lr_slow / lr_fast``). After a
    warm start the agents' (not the critic's) base rates are multiplied by ``warm_lr_scale``:
    the cloned actors are already good, and full-size PPO steps drift them away.
    """
    mode = config.timescales
    power = config.schedule == "power"
    n0 = float(config.decay_iters)
    warm = getattr(config, "warm_start", "none") != "none"
    scale = getattr(config, "warm_lr_scale", 1.0) if warm else 1.0
    lr_fast, lr_slow = scale * config.lr_fast, scale * config.lr_slow

    def sched(a0: float, exponent: float) -> PowerSchedule:
        return PowerSchedule(a0, exponent if power else 0.0, n0)

    if mode == "single":
        same = Timescale(sched(lr_fast, config.exponent_fast), 1, config.epochs_fast)
        return {name: same for name in LEARNERS}
    if mode not in ("multi", "independent"):
        raise ValueError(f"timescales must be multi, single or independent, got {mode!r}")
    fast_name = "recommendation" if config.slow_agent == "replenishment" else "replenishment"
    out = {
        "critic": Timescale(
            sched(config.lr_critic, config.exponent_critic),
            1,
            max(config.epochs_critic, config.epochs_fast),
        ),
        fast_name: Timescale(
            sched(lr_fast, config.exponent_fast), config.update_every_fast, config.epochs_fast
        ),
        config.slow_agent: Timescale(
            sched(lr_slow, config.exponent_slow), config.update_every_slow, config.epochs_slow
        ),
    }
    if power:
        ok = config.exponent_critic <= config.exponent_fast < config.exponent_slow and all(
            0.5 < e <= 1.0
            for e in (config.exponent_critic, config.exponent_fast, config.exponent_slow)
        )
        if not ok:
            raise ValueError(
                "multi-timescale power schedules need 0.5 < exponent_critic <= exponent_fast < "
                f"exponent_slow <= 1; got {config.exponent_critic}, {config.exponent_fast}, "
                f"{config.exponent_slow}. Fix the exponents or use --schedule constant."
            )
    return out


@dataclass(frozen=True)
class LinearAnneal:
    """``w_n = w0 * max(0, 1 - n / span)``: the imitation weight, zero from ``span`` on."""

    w0: float
    span: int

    def __call__(self, n: int) -> float:
        if self.span <= 0:
            return 0.0
        return self.w0 * max(0.0, 1.0 - n / self.span)


def effective_ratio(fast: PowerSchedule, slow: PowerSchedule, n: int) -> float:
    """``b_n / a_n`` at iteration ``n`` (logged to show the separation of speeds)."""
    a = fast(n)
    return slow(n) / a if a > 0 else math.inf
