"""timescales: does learning on multiple timescales make coordination learning more stable?

Three learning set-ups of the same two agents and centralised critic, over several seeds:
one shared step size (single timescale), and two-timescale schedules with either the
recommendation or the replenishment agent on the fast scale (the other slow, the critic
fastest). Learning curves are the greedy policy's profit on a fixed evaluation set (common
random numbers), logged every few iterations; the study reports the curves with bands, the
final profit, its variance across seeds, and how much the curves oscillate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordopt.case_studies.common import to_csv
from coordopt.instance import load_instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train
from coordopt.rl.rundir import AGENTS_RUN, RunDir
from coordopt.text import table

CONFIGS: dict[str, dict[str, Any]] = {
    "single": {"timescales": "single"},
    "multi-fast-recommendation": {"timescales": "multi", "slow_agent": "replenishment"},
    "multi-fast-replenishment": {"timescales": "multi", "slow_agent": "recommendation"},
}


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    keys = (
        "instance",
        "iterations",
        "eval_every",
        "eval_episodes",
        "num_envs",
        "warm_start",
        "eval_seed",
        "credit",
    )
    return [
        {"config": c, "seed": s, **{k: config[k] for k in keys}}
        for c in config["configs"]
        for s in config["seeds"]
    ]


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:

    if p["config"] not in CONFIGS:
        raise ValueError(f"unknown timescale config '{p['config']}'; known: {', '.join(CONFIGS)}")
    cfg = TrainConfig(
        iterations=p["iterations"],
        seed=p["seed"],
        eval_every=p["eval_every"],
        eval_episodes=p["eval_episodes"],
        eval_seed=p["eval_seed"],
        num_envs=p["num_envs"],
        warm_start=p["warm_start"],
        credit=p["credit"],
        tensorboard=False,
        threads=1,
        **CONFIGS[p["config"]],
    )
    run = RunDir(workdir / "run", AGENTS_RUN)
    res = train(load_instance(p["instance"]), cfg, run.path, resume=run.resumable, progress=False)
    log = [r for r in run.read_log() if r.get("eval_profit")]
    return {
        "curve_steps": [float(r["env_steps"]) for r in log],
        "curve_profit": [float(r["eval_profit"]) for r in log],
        "final": res.final_eval.get("mean", float(log[-1]["eval_profit"]) if log else float("nan")),
        "siloed": res.baselines.get("siloed", float("nan")),
        "seconds": res.seconds,
        "env_steps": res.env_steps,
    }


def _oscillation(curve: list[float]) -> float:
    """Mean absolute change between successive evaluations (lower = steadier learning)."""
    return float(np.mean(np.abs(np.diff(curve)))) if len(curve) > 1 else 0.0


def steps_to_most(steps: list[float], curve: list[float], share: float = 0.9) -> float:
    """Environment steps until the curve first closes ``share`` of the way from its first
    evaluation to its best (how fast a run learns what it will learn)."""
    c = np.asarray(curve, dtype=float)
    reached = np.flatnonzero(c >= c[0] + share * (c.max() - c[0]))
    return float(np.asarray(steps, dtype=float)[reached[0]])


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows, lines = [], []
    siloed = float(np.nanmean([r["result"]["siloed"] for r in results]))
    for ci, name in enumerate(config["configs"]):
        runs = [r["result"] for r in results if r["params"]["config"] == name]
        n = min(len(r["curve_profit"]) for r in runs)
        curves = np.array([r["curve_profit"][:n] for r in runs])
        steps = np.array(runs[0]["curve_steps"][:n])
        mean, sd = curves.mean(0), curves.std(0, ddof=1) if len(runs) > 1 else np.zeros(n)
        color = plt.cm.tab10(ci)
        ax.plot(steps, mean, color=color, label=f"{name} (mean of {len(runs)} seeds)")
        ax.fill_between(steps, mean - sd, mean + sd, color=color, alpha=0.2)
        finals = np.array([r["final"] for r in runs])
        row = {
            "config": name,
            "seeds": len(runs),
            "final_mean": float(finals.mean()),
            "final_sd": float(finals.std(ddof=1)) if len(runs) > 1 else 0.0,
            "oscillation": float(np.mean([_oscillation(r["curve_profit"]) for r in runs])),
            "steps_to_90pct": float(
                np.mean([steps_to_most(r["curve_steps"], r["curve_profit"]) for r in runs])
            ),
            "train_seconds": float(np.mean([r["seconds"] for r in runs])),
        }
        rows.append(row)
        lines.append(
            [
                name,
                row["seeds"],
                row["final_mean"],
                row["final_sd"],
                row["oscillation"],
                row["steps_to_90pct"],
                row["train_seconds"],
            ]
        )
    if np.isfinite(siloed):
        ax.axhline(siloed, color="grey", ls="--", lw=1, label="siloed baseline")
    ax.set_xlabel("environment steps (episodes x periods)")
    ax.set_ylabel("greedy profit per episode (evaluation set)")
    ax.set_title(f"Learning curves on {config['instance']}: mean ± 1 sd over seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "timescales.png")
    atomic_write_text(out / "timescales.csv", to_csv(rows))
    best = min(rows, key=lambda r: r["final_sd"])
    body = [
        "# Case study: timescales",
        "",
        f"Instance `{config['instance']}`, {config['iterations']} iterations x {config['num_envs']} "
        f"environments per run, warm start `{config['warm_start']}`, credit `{config['credit']}`, "
        f"seeds {config['seeds']}; greedy "
        f"profit on {config['eval_episodes']} fixed evaluation episodes every {config['eval_every']} "
        "iterations.",
        "",
        "```",
        table(
            [
                "set-up",
                "seeds",
                "final profit",
                "sd over seeds",
                "oscillation",
                "steps to 90%",
                "train s",
            ],
            lines,
        ),
        "```",
        "",
        "Oscillation = mean absolute change of the evaluation profit between successive evaluations;"
        " steps to 90% = environment steps until a run's curve first closes 90% of the way from its"
        " first evaluation to its best (mean over seeds).",
        "",
        f"Lowest variance across seeds: **{best['config']}** (sd {best['final_sd']:.2f}).",
        "",
        "![learning curves](timescales.png)",
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")
