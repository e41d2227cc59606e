"""Step-size schedules meet the two-timescale conditions; modes are what they claim."""

from __future__ import annotations

import itertools

import pytest

from coordopt.rl.config import TrainConfig
from coordopt.rl.schedules import (
    LinearAnneal,
    PowerSchedule,
    check_two_timescale,
    make_timescales,
)


def test_default_multi_timescale_meets_conditions() -> None:
    cfg = TrainConfig()
    ts = make_timescales(cfg)
    fast, slow, critic = ts["recommendation"].lr, ts["replenishment"].lr, ts["critic"].lr
    for a, b in ((fast, slow), (critic, fast), (critic, slow)):
        report = check_two_timescale(a, b, horizon=200_000)
        assert report["conditions"]
        ratios = report["ratios"]
        assert all(x > y for x, y in itertools.pairwise(ratios))  # strictly falling
        # heading to zero at the analytic rate (1 + n / n0)^-(p_slow - p_fast)
        decay = (1 + report["points"][-1] / a.n0) ** -(b.exponent - a.exponent)
        assert ratios[-1] / ratios[0] == pytest.approx(decay, rel=1e-9)
        assert ratios[-1] < 0.5 * ratios[0]
        for ps in report["partial_sums"].values():
            growth = (ps["sum"] - ps["sum_half"]) / ps["sum_half"]
            growth_sq = (ps["sum_sq"] - ps["sum_sq_half"]) / ps["sum_sq_half"]
            assert growth > 0.05 and growth_sq < 0.1 and growth > 3 * growth_sq
    assert ts["replenishment"].update_every == 2 and ts["replenishment"].epochs == 2
    assert [ts["replenishment"].active(i) for i in range(4)] == [True, False, True, False]
    assert ts["critic"].active(1) and ts["critic"].epochs >= ts["recommendation"].epochs


def test_conditions_fail_for_bad_exponents() -> None:
    assert not check_two_timescale(PowerSchedule(1, 0.7), PowerSchedule(1, 0.7), 1000)["conditions"]
    assert not check_two_timescale(PowerSchedule(1, 0.4), PowerSchedule(1, 0.9), 1000)["conditions"]
    assert not PowerSchedule(1, 1.2).diverges
    with pytest.raises(ValueError, match="exponent"):
        make_timescales(TrainConfig(exponent_fast=0.95, exponent_slow=0.9))


def test_single_and_constant_modes() -> None:
    single = make_timescales(TrainConfig(timescales="single"))
    assert len({(t.lr, t.update_every, t.epochs) for t in single.values()}) == 1
    const = make_timescales(TrainConfig(schedule="constant", lr_fast=1e-3, lr_slow=2.5e-4))
    assert const["replenishment"].lr(1000) / const["recommendation"].lr(1000) == pytest.approx(0.25)
    swapped = make_timescales(TrainConfig(slow_agent="recommendation"))
    assert swapped["recommendation"].lr.exponent > swapped["replenishment"].lr.exponent


def test_imitation_weight_anneals_to_zero() -> None:
    w = LinearAnneal(0.5, 10)
    assert w(0) == 0.5 and w(5) == pytest.approx(0.25) and w(10) == 0 and w(50) == 0
    assert LinearAnneal(0.5, 0)(0) == 0


def test_warm_start_scales_the_agents_learning_rates_only() -> None:
    cold = make_timescales(TrainConfig(warm_start="none"))
    warm = make_timescales(TrainConfig(warm_start="dp", warm_lr_scale=0.3))
    for agent in ("replenishment", "recommendation"):
        assert warm[agent].lr(7) == pytest.approx(0.3 * cold[agent].lr(7))
    assert warm["critic"].lr(7) == cold["critic"].lr(7)
    with pytest.raises(ValueError, match="--warm-lr-scale"):
        TrainConfig(warm_lr_scale=0.0)
