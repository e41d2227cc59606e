"""The RL result experiments: warm-started agents against the DP, MPC and siloed baselines.

Prints a table per experiment and writes every figure (configs, seeds, budgets, wall time,
machine load, means with 95% CIs, paired differences) to ``OUT/rl_results.json``. Evaluation
uses common random numbers: every policy of an experiment is simulated on the same demand
stream (``--eval-seed``, ``--eval-episodes``, one batch size), and differences are paired.
Decides nothing; the targets are checked by reading the numbers. Reproduce with::

    .venv/bin/python benchmarks/rl_results.py tiny      --out results/rl   # 98% of the DP optimum
    .venv/bin/python benchmarks/rl_results.py small     --out results/rl   # vs siloed, independent, MPC
    .venv/bin/python benchmarks/rl_results.py speedup --instance tiny --eval-every 2 --out results/rl
    .venv/bin/python benchmarks/rl_results.py speedup --instance small --cold-iterations 150 --out results/rl

Experiments:

- ``tiny``: warm start from the exact DP (``--warm-start auto``), PPO fine-tuning; the
  greedy and sampling agents against the DP optimum (61.9692), MPC and siloed.
- ``small``: warm start from MPC (``auto``), against siloed, MPC, fluid and the cold siloed
  independent learners (``--timescales independent --information siloed --warm-start none``)
  trained with the same number of environment steps.
- ``speedup``: environment steps (warm start's simulations included) until the greedy
  evaluation first reaches 95% of the final profit, warm against cold, on one instance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from coordopt.evaluation import Evaluation, compare, evaluate
from coordopt.instance import load_instance
from coordopt.machine import machine as bench_machine
from coordopt.rl.config import TrainConfig
from coordopt.rl.networks import choose_scorer
from coordopt.rl.policy import load_policy
from coordopt.rl.ppo import TrainResult, train
from coordopt.rl.rundir import AGENTS_RUN, BEST, CONFIG, FINAL, RunDir
from coordopt.simulator import SimParams

EXPERIMENT = "experiment.json"  # the wall time of a run, beside the summary training writes
CURVE = "curve.json"  # its learning curve, beside the log training writes
DP_OPTIMUM_TINY = 61.9692  # exact DP value of `tiny` (solvers/dp.py)

# The budgets of the experiments (every other field: the TrainConfig default).
TINY = TrainConfig(iterations=60, eval_every=5, eval_episodes=256, tensorboard=False)
SMALL = TrainConfig(iterations=60, eval_every=10, eval_episodes=128, tensorboard=False)
COLD_SMALL = replace(SMALL, warm_start="none", timescales="independent", information="siloed")


def machine() -> dict[str, Any]:
    """Where and under which load the figures were measured."""
    return {**bench_machine(), "load_average": os.getloadavg(), "platform": platform.platform()}


def run_training(instance: str, config: TrainConfig, out: Path) -> dict[str, Any]:
    """Train (or reuse a finished run in ``out``) and return its budget and curve.

    A finished run is reused only when the ``config.json`` that training wrote there equals
    ``config`` (with ``scorer="auto"`` resolved for the instance, as training saves it).
    """
    run = RunDir(out, AGENTS_RUN)
    if run.file(FINAL).is_file():
        inst = load_instance(instance)
        wanted = replace(
            config, scorer=choose_scorer(config.scorer, inst.n_products, inst.n_segments)
        )
        try:
            saved = TrainConfig.from_dict(run.read_config())
        except (OSError, ValueError, TypeError) as exc:
            raise SystemExit(f"{run.file(CONFIG)}: unreadable ({exc}); remove {out}") from None
        if saved != wanted:
            diff = sorted(k for k, v in wanted.to_dict().items() if saved.to_dict()[k] != v)
            raise SystemExit(
                f"{out} holds a run with another config ({', '.join(diff)} differ); "
                "remove it or pick --out"
            )
        summary = TrainResult.read(out).as_dict()
        extra = json.loads((out / EXPERIMENT).read_text()) if (out / EXPERIMENT).is_file() else {}
        curve = json.loads((out / CURVE).read_text())
        return {**summary, **extra, "out_dir": str(out), "curve": curve, "reused": True}
    t0 = time.perf_counter()
    res: TrainResult = train(load_instance(instance), config, out, progress=False)
    wall = time.perf_counter() - t0
    # the agents before any PPO update (after the warm start, if any) open the curve
    first = res.initial_eval
    curve = (
        [
            {
                "iteration": -1,
                "env_steps": int(first["env_steps"]),
                "eval_profit": first["mean"],
                "eval_ci95": first["ci95"],
            }
        ]
        if first
        else []
    )
    curve += [
        {
            "iteration": int(r["iteration"]),
            "env_steps": int(r["env_steps"]),
            "eval_profit": r["eval_profit"],
            "eval_ci95": r["eval_ci95"],
        }
        for r in res.history
        if "eval_profit" in r
    ]
    (out / CURVE).write_text(json.dumps(curve))
    extra = {"wall_seconds": wall}
    (out / EXPERIMENT).write_text(json.dumps(extra))
    return {**res.as_dict(), **extra, "curve": curve, "reused": False}


def run_dir(args: argparse.Namespace, name: str) -> Path:
    """``OUT/NAME_sSEED``, suffixed with the scorer when ``--scorer`` is not ``auto``."""
    return args.out / (
        f"{name}_s{args.seed}" + ("" if args.scorer == "auto" else f"_{args.scorer}")
    )


def evaluate_all(
    instance: str, policies: dict[str, Any], episodes: int, seed: int, batch_size: int
) -> dict[str, Evaluation]:
    """Every policy on the same demand stream (names or run directories)."""
    params = SimParams.from_instance(load_instance(instance), dtype=torch.float64)
    out = {}
    for name, spec in policies.items():
        if isinstance(spec, tuple):  # (run directory, deterministic, checkpoint file)
            pol = load_policy(
                Path(spec[0]), params, deterministic=spec[1], seed=seed, checkpoint=spec[2]
            )
        else:
            pol = spec
        out[name] = evaluate(params, pol, episodes, seed=seed, batch_size=batch_size)
    return out


def agent_specs(directory: str) -> dict[str, tuple[str, bool, str]]:
    """The run's selected agents (``best.pt``, chosen on the training evaluation stream, which
    differs from the final one) greedy and sampling, and its last agents (``final.pt``)."""
    return {
        "rl greedy": (directory, True, BEST),
        "rl sampling": (directory, False, BEST),
        "rl greedy (last iteration)": (directory, True, FINAL),
    }


def figures(evals: dict[str, Evaluation], against: list[str]) -> dict[str, Any]:
    """Mean and 95% CI of every policy; paired differences of the agents against baselines."""
    table = {n: {"mean": e.mean, "ci95": e.ci95, "seconds": e.seconds} for n, e in evals.items()}
    paired = {}
    for name in evals:
        if not name.startswith("rl"):
            continue
        for base in against:
            if base in evals:
                paired[f"{name} - {base}"] = compare(evals[name], evals[base])
    return {"policies": table, "paired": paired}


def steps_to_fraction(curve: list[dict[str, Any]], target: float) -> int | None:
    """Environment steps at the first evaluation whose mean reaches ``target``."""
    for row in curve:
        if row["eval_profit"] >= target:
            return int(row["env_steps"])
    return None


def print_table(title: str, fig: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for name, v in fig["policies"].items():
        print(f"  {name:28s} {v['mean']:12.3f} +- {v['ci95']:.3f}")
    for name, v in fig["paired"].items():
        print(f"  {name:28s} {v['mean']:+12.3f} +- {v['ci95']:.3f}  ({100 * v['relative']:+.2f}%)")


def experiment_tiny(args: argparse.Namespace) -> dict[str, Any]:
    cfg = replace(TINY, seed=args.seed, threads=args.threads, scorer=args.scorer)
    run = run_training("tiny", cfg, run_dir(args, "tiny_warm"))
    evals = evaluate_all(
        "tiny",
        {**agent_specs(run["out_dir"]), "dp": "dp", "mpc": "mpc", "siloed": "siloed"},
        args.eval_episodes,
        args.eval_seed,
        args.batch_size,
    )
    fig = figures(evals, ["dp", "mpc", "siloed"])
    fig["fraction_of_dp_optimum"] = {
        n: evals[n].mean / DP_OPTIMUM_TINY for n in evals if n.startswith("rl")
    }
    print_table(
        f"tiny (seed {args.seed}, {run['env_steps']} env steps, "
        f"{run.get('wall_seconds', float('nan')):.0f} s)",
        fig,
    )
    print(
        "  fraction of DP optimum 61.9692: "
        + ", ".join(f"{n} {v:.4f}" for n, v in fig["fraction_of_dp_optimum"].items())
    )
    return {
        "training": {k: v for k, v in run.items() if k != "curve"},
        "curve": run["curve"],
        **fig,
    }


def experiment_small(args: argparse.Namespace) -> dict[str, Any]:
    warm = run_training(
        "small",
        replace(SMALL, seed=args.seed, threads=args.threads, scorer=args.scorer),
        run_dir(args, "small_warm"),
    )
    cold_cfg = replace(
        COLD_SMALL,
        seed=args.seed,
        threads=args.threads,
        scorer=args.scorer,
        iterations=SMALL.iterations + -(-warm["warm_start"]["env_steps"] // (SMALL.num_envs * 26)),
    )
    cold = run_training("small", cold_cfg, run_dir(args, "small_indep_cold"))
    evals = evaluate_all(
        "small",
        {
            **agent_specs(warm["out_dir"]),
            "independent (cold, siloed)": (cold["out_dir"], True, None),
            "mpc": "mpc",
            "fluid": "fluid",
            "siloed": "siloed",
        },
        args.eval_episodes,
        args.eval_seed,
        args.batch_size,
    )
    fig = figures(evals, ["mpc", "siloed", "independent (cold, siloed)", "fluid"])
    print_table(
        f"small (seed {args.seed}; warm {warm['env_steps']} env steps, "
        f"{warm.get('wall_seconds', float('nan')):.0f} s; cold independent "
        f"{cold['env_steps']} env steps)",
        fig,
    )
    return {
        "training": {
            "warm": {k: v for k, v in warm.items() if k != "curve"},
            "independent_cold": {k: v for k, v in cold.items() if k != "curve"},
        },
        "curves": {"warm": warm["curve"], "independent_cold": cold["curve"]},
        **fig,
    }


def experiment_speedup(args: argparse.Namespace) -> dict[str, Any]:
    base = TINY if args.instance == "tiny" else SMALL
    tag = "warm"
    if args.eval_every and args.eval_every != base.eval_every:
        base, tag = replace(base, eval_every=args.eval_every), "curve_warm"
    base = replace(base, seed=args.seed, threads=args.threads, scorer=args.scorer)
    warm = run_training(args.instance, base, run_dir(args, f"{args.instance}_{tag}"))
    cold_cfg = replace(base, warm_start="none", iterations=args.cold_iterations)
    cold = run_training(
        args.instance,
        cold_cfg,
        run_dir(args, f"{args.instance}_{tag.replace('warm', 'cold')}"),
    )
    out: dict[str, Any] = {
        "curves": {"warm": warm["curve"], "cold": cold["curve"]},
        "budgets": {"warm": warm["env_steps"], "cold": cold["env_steps"]},
        "train_wall_seconds": {"warm": warm.get("wall_seconds"), "cold": cold.get("wall_seconds")},
    }
    # 95% of each run's own final profit, and 95% of the better of the two final profits
    finals = {k: r["final_eval"]["mean"] for k, r in (("warm", warm), ("cold", cold))}
    common = 0.95 * max(finals.values())
    steps: dict[str, dict[str, Any]] = {}
    for k, r in (("warm", warm), ("cold", cold)):
        steps[k] = {
            "own_final": finals[k],
            "steps_to_95pct_own_final": steps_to_fraction(r["curve"], 0.95 * finals[k]),
            "steps_to_95pct_best_final": steps_to_fraction(r["curve"], common),
        }
    out["steps"] = steps
    for key in ("steps_to_95pct_own_final", "steps_to_95pct_best_final"):
        w, c = steps["warm"][key], steps["cold"][key]
        # never reached by the cold run: its whole budget is a lower bound on the ratio
        out[f"ratio_{key}"] = (c / w if c else f">= {cold['env_steps'] / w:.1f}") if w else None
    print(f"\n== speedup on {args.instance} (seed {args.seed}; env steps include the warm start)")
    for k, v in steps.items():
        print(
            f"  {k:5s} final {v['own_final']:.3f}; steps to 95% own final "
            f"{v['steps_to_95pct_own_final']}, to 95% of best final {v['steps_to_95pct_best_final']}"
        )
    print(
        f"  cold/warm ratio: own {out['ratio_steps_to_95pct_own_final']}, "
        f"best {out['ratio_steps_to_95pct_best_final']}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("experiment", choices=["tiny", "small", "speedup"])
    ap.add_argument("--out", type=Path, default=Path("results/rl"))
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--scorer",
        default="auto",
        choices=["auto", "factorised", "additive"],
        help="slate scorer of the trained agents (TrainConfig.scorer)",
    )
    ap.add_argument("--eval-episodes", type=int, default=2000)
    ap.add_argument(
        "--eval-seed", type=int, default=777, help="demand stream of the final evaluations"
    )
    ap.add_argument(
        "--batch-size", type=int, default=250, help="evaluation batch size (same for all)"
    )
    ap.add_argument("--instance", default="tiny", help="speedup: the instance")
    ap.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="speedup: evaluation period (0: the experiment's own)",
    )
    ap.add_argument("--cold-iterations", type=int, default=300, help="speedup: cold budget")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {
        "experiment": args.experiment,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine_before": machine(),
    }
    result.update(
        {"tiny": experiment_tiny, "small": experiment_small, "speedup": experiment_speedup}[
            args.experiment
        ](args)
    )
    result["machine_after"] = machine()
    result["wall_seconds"] = time.perf_counter() - t0
    name = args.experiment + (f"_{args.instance}" if args.experiment == "speedup" else "")
    path = args.out / f"rl_results_{name}_s{args.seed}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
