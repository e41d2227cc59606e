"""Shared pieces of the sub-commands: output, tables, common flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.guards import check_size, estimate
from coordopt.policies import policy_spec
from coordopt.text import table

__all__ = [
    "_plain",
    "add_instance_arg",
    "add_json_flag",
    "emit_json",
    "log",
    "table",
]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object on stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_plain(obj)) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    """Progress and notes: stderr, so stdout stays clean for --json."""
    print(msg, file=sys.stderr, flush=True)


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def add_instance_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "instance", help="instance file (.toml/.npz) or bundled name: tiny, small, medium, large"
    )


def guard_size(
    args: argparse.Namespace,
    inst: Any,
    *,
    what: str,
    way_out: str,
    budget_seconds: float = 0.0,
    **work: Any,
) -> None:
    """Refuse (unless ``--force``) work on ``inst`` whose estimate is beyond the limits;
    ``work``: the workload keywords of :func:`coordopt.guards.estimate`; ``budget_seconds``
    (> 0): a budget that stops the work in time caps its time estimate."""
    est = estimate(inst.horizon, inst.n_segments, inst.n_products, **work)
    if budget_seconds > 0:
        est = dataclasses.replace(est, seconds=min(est.seconds, budget_seconds))
    check_size(est, force=getattr(args, "force", False), what=what, way_out=way_out)


def split_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:KEY=VALUE;...]`` -> ``(NAME, options)``; a run directory is taken whole (its
    path may hold a colon). What ``--policy`` means, for the policy and for its workload."""
    return (spec, {}) if Path(spec).is_dir() else policy_spec(spec)


def policy_work(spec: str, episodes: int, horizon: int) -> dict[str, int]:
    """What a policy (``NAME[:KEY=VALUE;...]`` or a run directory) adds to a simulation's
    workload: full fluid solves (fluid plan: one; MPC: one per period and episode), or a
    trained run's network width (its additive scorer)."""
    policy, _ = split_policy(spec)
    if policy == "mpc":
        return {"lp_solves": episodes * horizon}
    if policy == "fluid":
        return {"lp_solves": 1}
    try:  # a run directory: its saved training configuration
        saved = json.loads((Path(policy) / "config.json").read_text())
        if saved.get("scorer", "additive") == "additive":
            return {"agent_hidden": int(saved.get("hidden_size", 64))}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return {}
