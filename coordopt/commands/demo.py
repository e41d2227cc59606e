"""``coordopt demo``: the main job on one instance, end to end, in a few minutes.

Solves the exact benchmark (fluid upper bound; exact DP optimum where the instance is small
enough), trains the multi-timescale agents warm-started from the optimiser for a short
budget, then simulates every policy on the same customers and prints the comparison.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from coordopt.commands.common import add_json_flag, command, emit_json, log, table
from coordopt.evaluation import Evaluation, compare, evaluate
from coordopt.guards import claim_out, nonneg_int, positive_int, seed_int
from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.simulator import SimParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="exact benchmark + warm-started agents + comparison table", description=__doc__
    )
    p.add_argument(
        "instance", nargs="?", default="tiny", help="instance (default: the bundled tiny)"
    )
    p.add_argument(
        "--episodes", type=positive_int, default=1000, help="evaluation episodes per policy"
    )
    p.add_argument(
        "--iterations", type=nonneg_int, default=30, help="PPO iterations after the warm start"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="training seed and demand stream")
    p.add_argument(
        "--out",
        default="results/demo",
        help="folder for the training runs (one per instance and seed, reused when they match)",
    )
    add_json_flag(p)
    p.set_defaults(func=run)


@command
def run(args: argparse.Namespace) -> int:
    from coordopt.instance import content_hash
    from coordopt.rl.runs import study_teacher, train_agents
    from coordopt.solvers.dp import DPError, solve_dp
    from coordopt.solvers.fluid import solve_fluid

    # before any work, and locked for the whole run: its runs are reused, not refused
    claim_out(args.out, folder=True, force=False, reuse=True)
    inst = load_instance(args.instance)
    log(inst.summary())
    t0 = time.perf_counter()
    bound = solve_fluid(inst).result().bound
    log(f"fluid upper bound {bound:,.3f}")
    try:
        optimum: float | None = solve_dp(inst).result().objective
        log(f"exact DP optimum {optimum:,.3f}")
    except DPError as exc:
        optimum = None
        log(f"no exact DP here ({exc}); the fluid bound is the reference")
    # the teacher train_agents warm-starts rl-multi-warm from
    log(f"training the multi-timescale agents, warm-started from {study_teacher(inst)} ...")
    # one run per instance (by content, not only name) and seed: another instance never
    # reuses these agents, and train_agents refuses a run whose identity does not match
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in inst.name)
    workdir = Path(args.out) / f"{label}-{content_hash(inst)[:10]}" / f"seed{args.seed}"
    run_dir, info = train_agents(inst, "rl-multi-warm", args.seed, args.iterations, workdir)
    info["run_dir"] = str(run_dir)
    params = SimParams.from_instance(inst, dtype=torch.float64)
    names = [
        "null",
        "siloed",
        "fluid",
        "mpc",
        *(["dp"] if optimum is not None else []),
        str(run_dir),
    ]
    evals: dict[str, Evaluation] = {}
    for name in names:
        label = "rl-multi-warm" if name == str(run_dir) else name
        log(f"simulating {label} ({args.episodes} episodes) ...")
        evals[label] = evaluate(
            params,
            make_policy(name, params, seed=args.seed),
            episodes=args.episodes,
            seed=args.seed,
            progress=True,
        )
    ref = optimum if optimum is not None else bound
    rows, out = [], []
    for label, ev in evals.items():
        diff = compare(ev, evals["siloed"])
        rec = {
            "policy": label,
            "mean": ev.mean,
            "ci95": ev.ci95,
            "pct_of_reference": 100 * ev.mean / ref,
            "vs_siloed": diff["mean"],
            "vs_siloed_ci95": diff["ci95"],
            "fill_rate": float(ev.fill_rate.mean()),
        }
        out.append(rec)
        rows.append(
            [
                label,
                ev.mean,
                ev.ci95,
                f"{rec['pct_of_reference']:.1f}%",
                f"{diff['mean']:+,.2f} ± {diff['ci95']:,.2f}",
                f"{100 * ev.fill_rate.mean():.1f}%",
            ]
        )
    secs = time.perf_counter() - t0
    if args.json:
        emit_json(
            {
                "instance": inst.name,
                "fluid_bound": bound,
                "dp_optimum": optimum,
                "episodes": args.episodes,
                "seed": args.seed,
                "training": info,
                "results": out,
                "seconds": secs,
            }
        )
        return 0
    ref_name = "DP optimum" if optimum is not None else "fluid bound"
    print(f"\n{inst.summary()}")
    print(
        f"fluid upper bound: {bound:,.3f}"
        + (f"   exact DP optimum: {optimum:,.3f}" if optimum is not None else "")
    )
    print(
        f"agents: {info['iterations']} PPO iterations, {info['env_steps']:,} env steps "
        f"(warm start included), trained on {inst.name} in {run_dir}\n"
    )
    print(
        table(
            [
                "policy",
                "mean profit",
                "±95%",
                f"% of {ref_name}",
                "vs siloed (paired)",
                "fill rate",
            ],
            rows,
        )
    )
    print(
        f"\n{args.episodes} episodes per policy on the same customers (seed {args.seed}); {secs:.0f} s in all."
    )
    return 0
