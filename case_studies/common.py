"""Pieces the case studies share: method names -> evaluated profit, training runs, tables."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.evaluation import Evaluation, evaluate
from coordopt.instance import Instance
from coordopt.policies import make_policy
from coordopt.simulator import SimParams

# RL variants: (timescales, information, warm start?)
RL_METHODS: dict[str, tuple[Any, Any, bool]] = {
    "rl-independent": ("independent", "siloed", False),
    "rl-single-cold": ("single", "coordinated", False),
    "rl-single-warm": ("single", "coordinated", True),
    "rl-multi-cold": ("multi", "coordinated", False),
    "rl-multi-warm": ("multi", "coordinated", True),
}
METHOD_LABELS = {
    "dp": "exact DP (optimal policy)",
    "fluid": "fluid plan, open loop",
    "mpc": "fluid MPC",
    "siloed": "siloed (MNL slates + base stock)",
    "rl-independent": "RL: independent learners, siloed info",
    "rl-single-cold": "RL: single timescale, cold",
    "rl-single-warm": "RL: single timescale, warm",
    "rl-multi-cold": "RL: multi-timescale, cold",
    "rl-multi-warm": "RL: multi-timescale, warm",
}


def train_agents(
    inst: Instance, method: str, seed: int, iterations: int, workdir: Path, **overrides: Any
) -> tuple[Path, dict[str, Any]]:
    """Train (or resume) one RL variant in ``workdir``; returns the run dir and its summary.

    A run already in ``workdir/method`` is resumed (or, finished, reused) only when it was
    trained on the same instance (content hash) with the same settings; otherwise this
    refuses, naming what differs, rather than report another run's agents.
    """
    from coordopt.rl.checkpoint import CHECKPOINT
    from coordopt.rl.config import TrainConfig
    from coordopt.rl.ppo import train

    timescales, information, warm = RL_METHODS[method]
    config = TrainConfig(
        iterations=iterations,
        seed=seed,
        timescales=timescales,
        information=information,
        warm_start="auto" if warm else "none",
        tensorboard=False,
        threads=1,
        **overrides,
    )
    run = workdir / method
    result = train(inst, config, run, resume=(run / CHECKPOINT).exists(), progress=False)
    return run, {
        "iterations": result.iterations,
        "env_steps": result.env_steps,
        "train_seconds": result.seconds,
        "steps_per_second": result.steps_per_second,
    }


def evaluate_method(
    inst: Instance,
    method: str,
    seed: int,
    episodes: int,
    eval_seed: int,
    workdir: Path,
    iterations: int = 0,
    **train_overrides: Any,
) -> dict[str, Any]:
    """Mean profit (95% CI) of one method on the common evaluation stream ``eval_seed``."""
    params = SimParams.from_instance(inst, dtype=torch.float64)
    info: dict[str, Any] = {}
    if method in RL_METHODS:
        run, info = train_agents(inst, method, seed, iterations, workdir, **train_overrides)
        policy = make_policy(str(run), params)
    elif method == "mpc" or method == "fluid":
        policy = make_policy(method, params, seed=seed)
    else:
        policy = make_policy(method, params)
    ev: Evaluation = evaluate(params, policy, episodes=episodes, seed=eval_seed)
    return {
        "mean": ev.mean,
        "ci95": ev.ci95,
        "fill_rate": float(ev.fill_rate.mean()),
        "profits": ev.profit.tolist(),
        **info,
    }


def paired_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width of ``a - b`` (same customers)."""
    from coordopt.evaluation import ci_halfwidth

    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), ci_halfwidth(d)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
