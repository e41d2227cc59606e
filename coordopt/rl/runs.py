"""The RL variants compared by the case studies and the demo, and training one by name.

A variant is (timescales, information, warm start?); :func:`train_agents` trains (or
resumes) it in ``workdir/<name>`` with the study settings (no TensorBoard, one thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coordopt.instance import Instance
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train
from coordopt.rl.rundir import AGENTS_RUN, RunDir
from coordopt.solvers.dp import reference_method

__all__ = ["RL_METHODS", "train_agents"]

# RL variants: (timescales, information, warm start?)
RL_METHODS: dict[str, tuple[Any, Any, bool]] = {
    "rl-independent": ("independent", "siloed", False),
    "rl-single-cold": ("single", "coordinated", False),
    "rl-single-warm": ("single", "coordinated", True),
    "rl-multi-cold": ("multi", "coordinated", False),
    "rl-multi-warm": ("multi", "coordinated", True),
}


def study_teacher(inst: Instance) -> str:
    """The teacher of the studies' warm-started variants: the exact DP where it fits, else
    bid-price control -- the teacher every committed study result was trained with, named
    rather than ``auto`` (whose teacher trial may pick another), so the results reproduce."""
    return "dp" if reference_method(inst) == "dp" else "bidprice"


STUDY_CREDIT = "joint"
"""PPO's credit in the studies' and the demo's runs: the one every committed study result was
trained with (``TrainConfig.credit`` defaults to credit per decision since December 2026),
named so the results reproduce and earlier run folders are reused."""


def train_agents(
    inst: Instance, method: str, seed: int, iterations: int, workdir: Path, **overrides: Any
) -> tuple[Path, dict[str, Any]]:
    """Train (or resume) one RL variant in ``workdir``; returns the run dir and its summary.

    A run already in ``workdir/method`` is resumed (or, finished, reused) only when it was
    trained on the same instance (content hash) with the same settings; otherwise this
    refuses, naming what differs, rather than report another run's agents.
    """
    timescales, information, warm = RL_METHODS[method]
    overrides.setdefault("warm_start", study_teacher(inst) if warm else "none")
    overrides.setdefault("credit", STUDY_CREDIT)
    config = TrainConfig(
        iterations=iterations,
        seed=seed,
        timescales=timescales,
        information=information,
        tensorboard=False,
        threads=1,
        **overrides,
    )
    run = workdir / method
    result = train(inst, config, run, resume=RunDir(run, AGENTS_RUN).resumable, progress=False)
    return run, {
        "iterations": result.iterations,
        "env_steps": result.env_steps,
        "train_seconds": result.seconds,
        "steps_per_second": result.steps_per_second,
    }
