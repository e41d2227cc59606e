"""Pieces the case studies share: method names -> evaluated profit, paired intervals, CSV.

The RL variants and their training (:mod:`coordopt.rl.runs`) live in the core, where the
``demo`` command uses them too."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.evaluation import Evaluation, ci_halfwidth, evaluate
from coordopt.instance import Instance
from coordopt.policies import make_policy
from coordopt.rl.runs import RL_METHODS, train_agents

__all__ = ["METHOD_LABELS", "RL_METHODS", "evaluate_method", "paired_ci", "to_csv", "train_agents"]
from coordopt.simulator import SimParams

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
    else:
        policy = make_policy(method, params, seed=seed)
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
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), ci_halfwidth(d)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: a column for every scalar field any row has (in order of first
    appearance; empty where a row lacks it), lists and dicts left out."""
    buf = io.StringIO()
    if rows:
        keys = list(
            dict.fromkeys(
                k for row in rows for k, v in row.items() if not isinstance(v, (list, dict))
            )
        )
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
