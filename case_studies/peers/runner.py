"""peers: coordopt's agents against a standard library's multi-agent PPO at equal budgets.

On ``tiny`` and ``small``, four learners get the same number of environment steps:
coordopt's multi-timescale agents trained cold and warm-started from the optimiser that
``--warm-start auto`` picks (the DP on ``tiny``, bid-price control on ``small``; the warm
start's simulations count against the budget), and
TorchRL's MAPPO (centralised critic) and IPPO (independent critics) on the native batched
environment (:mod:`coordopt.rl.peers`). Each learner logs its greedy profit on a fixed stream
during training (learning curves against environment steps and against wall time); its
selected policy is then simulated on a separate stream with common random numbers next to
the reference (the DP policy and its exact optimum on ``tiny``, MPC on ``small``) and the
siloed firm.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.case_studies.common import (
    METHOD_LABELS,
    evaluate_method,
    paired_ci,
    to_csv,
    train_agents,
)
from coordopt.instance import load_instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.machine import machine
from coordopt.rl.config import TrainConfig
from coordopt.rl.peers import PeerConfig, train_peer
from coordopt.rl.rundir import AGENTS_RUN, BEST, RunDir
from coordopt.rl.warmstart import expert_name
from coordopt.solvers.dp import solve_dp
from coordopt.text import table

PEERS = ("mappo", "ippo")
COORDOPT = ("rl-multi-cold", "rl-multi-warm")
REFERENCE = {"tiny": "dp", "small": "mpc"}
LABELS = {
    **METHOD_LABELS,
    "mappo": "TorchRL MAPPO (centralised critic)",
    "ippo": "TorchRL IPPO (independent critics)",
}


def _per_instance(value: Any, instance: str, key: str) -> Any:
    if isinstance(value, dict):
        if instance not in value:
            raise ValueError(f"peers config: '{key}' has no entry for instance '{instance}'")
        return value[instance]
    return value


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inst in config["instances"]:
        if inst not in REFERENCE:
            raise ValueError(f"peers: no reference policy for '{inst}'; use {', '.join(REFERENCE)}")
        common = {
            "instance": inst,
            "final_episodes": _per_instance(config["final_episodes"], inst, "final_episodes"),
            "final_seed": config["final_seed"],
        }
        for ref in (REFERENCE[inst], "siloed"):
            out.append({**common, "method": ref, "seed": 0})
        for method in config["methods"]:
            if method not in (*COORDOPT, *PEERS):
                raise ValueError(f"peers: unknown method '{method}'; use {COORDOPT + PEERS}")
            for seed in config["seeds"]:
                out.append(
                    {
                        **common,
                        "method": method,
                        "seed": seed,
                        "iterations": _per_instance(config["iterations"], inst, "iterations"),
                        "num_envs": config["num_envs"],
                        "eval_every": config["eval_every"],
                        "eval_episodes": config["eval_episodes"],
                        "eval_seed": config["eval_seed"],
                    }
                )
    return out


def warm_start_budget(num_envs: int) -> tuple[int, dict[str, int]]:
    """PPO iterations the warm start's simulations (DAgger rounds + critic rollout) use up, and
    the warm-start sizes (at most ``num_envs`` environments per round)."""
    c = TrainConfig()
    envs = min(c.bc_envs, num_envs)
    sizes = {"bc_envs": envs, "bc_label_envs": min(c.bc_label_envs, envs)}
    return math.ceil((c.bc_rounds + 1) * envs / num_envs), sizes


def _curve(run: Path, initial: dict[str, Any]) -> dict[str, list[float]]:
    """Greedy-profit learning curve: (env steps, training seconds, profit) per evaluation."""
    rows = [r for r in RunDir.at(run).read_log() if r.get("eval_profit")]
    steps = [float(initial.get("env_steps", 0))] if initial else []
    secs = [float(initial.get("seconds", 0.0))] if initial else []
    profit = [float(initial["mean"])] if initial else []
    for r in rows:
        steps.append(float(r["env_steps"]))
        secs.append(float(r["seconds"]))
        profit.append(float(r["eval_profit"]))
    return {"steps": steps, "seconds": secs, "profit": profit}


def _train(p: dict[str, Any], workdir: Path) -> tuple[Path, dict[str, Any]]:
    inst = load_instance(p["instance"])
    common = {
        "seed": p["seed"],
        "num_envs": p["num_envs"],
        "eval_every": p["eval_every"],
        "eval_episodes": p["eval_episodes"],
        "eval_seed": p["eval_seed"],
    }
    if p["method"] in PEERS:
        run = workdir / p["method"]
        if run.exists():  # an interrupted peer run starts over (peers do not resume)
            import shutil

            shutil.rmtree(run)
        res = train_peer(
            inst,
            PeerConfig(algorithm=p["method"], iterations=p["iterations"], threads=1, **common),
            run,
            progress=False,
        )
        initial = {**res.initial_eval, "seconds": 0.0}
        info = {"env_steps": res.env_steps, "train_seconds": res.seconds}
    else:
        iterations = p["iterations"]
        if p["method"] == "rl-multi-warm":
            used, sizes = warm_start_budget(p["num_envs"])
            if used >= iterations:
                raise ValueError(
                    f"peers: the warm start alone uses {used} iterations' worth of environment "
                    f"steps, the budget is {iterations}; raise 'iterations' in config.toml"
                )
            iterations -= used
            common.update(sizes)
        common.pop("seed")
        run, info = train_agents(inst, p["method"], p["seed"], iterations, workdir, **common)
        run_dir = RunDir(run, AGENTS_RUN)
        summary = run_dir.read_summary()
        warm = summary.get("warm_start") or {}
        initial = dict(summary.get("initial_eval") or {})
        # the warm start's wall time: the first logged row's seconds minus its own iteration's
        first = next(iter(run_dir.read_log()), None)
        if initial and first is not None:
            first_steps = float(first["env_steps"]) - float(initial.get("env_steps", 0))
            first_dt = first_steps / max(float(first["steps_per_second"]), 1e-9)
            initial["seconds"] = max(0.0, float(first["seconds"]) - first_dt)
        info["warm_start_steps"] = int(warm.get("env_steps", 0))
    return run, {**info, "curve": _curve(run, initial)}


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    inst = load_instance(p["instance"])
    args = (p["seed"], p["final_episodes"], p["final_seed"], workdir)
    if p["method"] in (*COORDOPT, *PEERS):
        run, info = _train(p, workdir)
        res = evaluate_method(inst, str(run), *args)
        res.update(info, budget=p["iterations"] * p["num_envs"] * inst.horizon)
        return res
    res = evaluate_method(inst, p["method"], *args)
    if p["method"] == "dp":
        res["dp_value"] = solve_dp(inst).result().objective
    return res


def _reference_value(inst: str, ref: dict[str, Any]) -> tuple[float, str]:
    if inst == "tiny":
        return float(ref["dp_value"]), "exact DP optimum"
    return float(ref["mean"]), "MPC (simulated)"


def _mean_curve(runs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    n = min(len(r["curve"]["profit"]) for r in runs)
    arr = {k: np.array([r["curve"][k][:n] for r in runs]) for k in ("steps", "seconds", "profit")}
    sd = arr["profit"].std(0, ddof=1) if len(runs) > 1 else np.zeros(n)
    return {
        "steps": arr["steps"].mean(0),
        "seconds": arr["seconds"].mean(0),
        "mean": arr["profit"].mean(0),
        "sd": sd,
    }


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    sections: list[str] = []
    for inst in config["instances"]:
        mine = [r for r in results if r["params"]["instance"] == inst]
        by_method: dict[str, list[dict[str, Any]]] = {}
        for r in mine:
            by_method.setdefault(r["params"]["method"], []).append(r)
        ref = by_method[REFERENCE[inst]][0]["result"]
        siloed = by_method["siloed"][0]["result"]
        ref_value, ref_label = _reference_value(inst, ref)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        tails: list[float] = []
        highs: list[float] = []
        lines = []
        for method in (REFERENCE[inst], "siloed", *config["methods"]):
            runs = by_method.get(method, [])
            if not runs:
                continue
            res = [r["result"] for r in runs]
            means = np.array([x["mean"] for x in res])
            vs_ref = [paired_ci(x["profits"], ref["profits"]) for x in res]
            vs_sil = [paired_ci(x["profits"], siloed["profits"]) for x in res]
            trained = "curve" in res[0]
            row = {
                "instance": inst,
                "method": method,
                "seeds": len(res),
                "budget": float(np.mean([x.get("budget", 0) for x in res])),
                "env_steps": float(np.mean([x.get("env_steps", 0) for x in res])),
                "train_seconds": float(np.mean([x.get("train_seconds", 0.0) for x in res])),
                "mean": float(means.mean()),
                "ci95": float(np.mean([x["ci95"] for x in res])),
                "seed_sd": float(means.std(ddof=1)) if len(res) > 1 else 0.0,
                "pct_of_reference": 100 * float(means.mean()) / ref_value,
                "vs_reference": float(np.mean([d[0] for d in vs_ref])),
                "vs_reference_ci95": float(np.mean([d[1] for d in vs_ref])),
                "vs_siloed": float(np.mean([d[0] for d in vs_sil])),
                "vs_siloed_ci95": float(np.mean([d[1] for d in vs_sil])),
            }
            row["steps_per_second"] = row["env_steps"] / max(row["train_seconds"], 1e-9)
            rows.append(row)
            lines.append(
                [
                    LABELS.get(method, method),
                    row["seeds"],
                    f"{row['env_steps']:,.0f}" if trained else "-",
                    f"{row['train_seconds']:.0f}" if trained else "-",
                    f"{row['steps_per_second']:,.0f}" if trained else "-",
                    f"{row['mean']:,.2f} ± {row['ci95']:,.2f}",
                    f"{row['seed_sd']:,.2f}",
                    f"{row['pct_of_reference']:.1f}%",
                    f"{row['vs_reference']:+,.2f} ± {row['vs_reference_ci95']:,.2f}",
                    f"{row['vs_siloed']:+,.2f} ± {row['vs_siloed_ci95']:,.2f}",
                ]
            )
            if not trained:
                continue
            for x, p in zip(res, (r["params"] for r in runs), strict=True):
                c = x["curve"]
                for s, sec, prof in zip(c["steps"], c["seconds"], c["profit"], strict=True):
                    curve_rows.append(
                        {
                            "instance": inst,
                            "method": method,
                            "seed": p["seed"],
                            "env_steps": s,
                            "seconds": sec,
                            "profit": prof,
                        }
                    )
            curve = _mean_curve(res)
            tails.append(float(curve["mean"][len(curve["mean"]) // 2 :].min()))
            highs.append(float(curve["mean"].max()))
            color = plt.cm.tab10(config["methods"].index(method))
            for ax, xs in zip(axes, (curve["steps"], curve["seconds"]), strict=True):
                ax.plot(xs, curve["mean"], color=color, marker=".", label=LABELS[method])
                ax.fill_between(
                    xs,
                    curve["mean"] - curve["sd"],
                    curve["mean"] + curve["sd"],
                    color=color,
                    alpha=0.2,
                )
        for ax, xlabel in zip(
            axes, ("environment steps", "training wall time (s, evaluations excluded)"), strict=True
        ):
            ax.axhline(ref_value, color="k", ls="--", lw=1, label=ref_label)
            ax.axhline(siloed["mean"], color="grey", ls=":", lw=1, label="siloed firm")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("greedy profit per episode (curve stream)")
        # the frame holds every curve's second half; the early, far-negative points are cut off
        low = min(siloed["mean"], *tails) if tails else siloed["mean"]
        top = max(ref_value, *highs) if highs else ref_value
        span = abs(top - low) + 1e-9
        axes[0].set_ylim(low - 0.15 * span, top + 0.1 * span)
        axes[1].legend(fontsize=8, loc="lower right")
        fig.suptitle(f"{inst}: learning curves, mean ± 1 sd over seeds (early points cut off)")
        save_figure(fig, out / f"peers_{inst}.png")
        sections += [
            f"### {inst}",
            "",
            f"Reference: {ref_label} **{ref_value:,.3f}**; siloed firm {siloed['mean']:,.2f} ± "
            f"{siloed['ci95']:,.2f}. Budget per learner "
            f"{_per_instance(config['iterations'], inst, 'iterations')} iterations x "
            f"{config['num_envs']} environments = "
            f"{_per_instance(config['iterations'], inst, 'iterations') * config['num_envs'] * load_instance(inst).horizon:,} "
            "environment steps.",
            "",
            "```",
            table(
                [
                    "method",
                    "seeds",
                    "env steps",
                    "train s",
                    "steps/s",
                    "final profit ±95%",
                    "sd over seeds",
                    "% of reference",
                    "vs reference (paired)",
                    "vs siloed (paired)",
                ],
                lines,
            ),
            "```",
            "",
            *(
                [f"**Not finished** (no cells yet): {', '.join(missing)}.", ""]
                if (
                    missing := [
                        m
                        for m in config["methods"]
                        if len(by_method.get(m, [])) < len(config["seeds"])
                    ]
                )
                else []
            ),
            f"![learning curves on {inst}](peers_{inst}.png)",
            "",
        ]
    atomic_write_text(out / "peers.csv", to_csv(rows))
    atomic_write_text(out / "peers_curves.csv", to_csv(curve_rows))
    m = machine()
    final_eps = config["final_episodes"]
    if isinstance(final_eps, dict):
        final_eps = ", ".join(f"{v:,} on `{k}`" for k, v in final_eps.items())
    body = [
        "# Case study: peers",
        "",
        "coordopt's multi-timescale agents (cold, and warm-started by `--warm-start auto`: "
        + ", ".join(
            f"{expert_name('auto', load_instance(i))} on `{i}`" for i in config["instances"]
        )
        + ") against TorchRL's MAPPO and IPPO (`coordopt train --algorithm mappo|ippo`, the "
        f"native batched TorchRL environment) at equal environment-step budgets, seeds {config['seeds']}. "
        "Env steps count the warm start's simulations. Learning curves: greedy profit on "
        f"{config['eval_episodes']} fixed episodes (seed {config['eval_seed']}) every "
        f"{config['eval_every']} iterations. Final evaluation: each run's selected policy ({BEST}) "
        f"on a separate stream (seed {config['final_seed']}, episodes {final_eps}) with common "
        "random numbers; `% of reference` is the mean over seeds divided by the exact DP optimum "
        "(`tiny`) or MPC's simulated profit (`small`); paired differences are means over seeds of "
        "per-seed paired differences with their 95% half-widths.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU), one thread per run.",
        "",
        *sections,
    ]
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")
