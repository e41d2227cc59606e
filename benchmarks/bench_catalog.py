"""Measure the catalog-scale solver and the bid-price policy.

Usage::

    .venv/bin/python benchmarks/bench_catalog.py solve INSTANCE... [--gap 0.005]
        [--time-limit S] [--exact] [--device cpu|cuda] [--out results.jsonl]
    .venv/bin/python benchmarks/bench_catalog.py curve results.jsonl --plot curve.png
    .venv/bin/python benchmarks/bench_catalog.py bidprice INSTANCE --against mpc,siloed
        [--episodes 32] [--out results.jsonl]   (options: siloed:season_end=true)
    .venv/bin/python benchmarks/bench_catalog.py lagrangian INSTANCE [--iterations 8]
        [--max-states 64] [--envs 32] [--out results.jsonl]

``solve`` reports bound, plan value, gap, seconds, iterations, seconds per dual iteration,
iterations (and seconds) to reach 1% and 0.5% gap, and peak resident memory; ``--exact``
also solves the full LP where ``coordopt solve`` would (at most 2 M cells) and reports the
bound's and plan's distance to its optimum.
``curve`` turns ``solve`` lines into the cost-curve table (and a plot). ``bidprice``
evaluates the policy against others on common random numbers and reports paired
differences with 95% confidence intervals and the time per decision; an ``--against`` entry
``NAME:KEY=VALUE;...`` passes options to that policy (``siloed:season_end=true``). Every line records
the machine and its load (``uptime``); figures are wall-clock on a shared machine.
``lagrangian`` solves the stochastic bound (seconds, CPU seconds, peak resident memory: one
instance per call, since the peak is the process's) and, with ``--envs``, times the
decomposition policy's decisions for that many environments over one episode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.commands.bench import machine
from coordopt.instance import load_instance
from coordopt.sizes import FULL_LP_CELLS, plan_cells


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _emit(row: dict[str, Any], out: Path | None) -> None:
    row = {"load": _load(), "machine": machine()} | row
    line = json.dumps(row, default=float)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.write(line + "\n")


def _first_reach(history: list[tuple[float, float, float]], gap: float) -> tuple[int, float]:
    """``(iterations, seconds)`` when the gap first fell to ``gap`` (-1 if never)."""
    for j, (sec, bound, value) in enumerate(history):
        if (bound - value) / max(abs(bound), 1e-12) <= gap:
            return j + 1, sec
    return -1, float("nan")


def bench_solve(args: argparse.Namespace) -> None:
    from coordopt.solvers.catalog import solve_catalog

    for spec in args.instances:
        inst = load_instance(spec)
        cpu_began = time.process_time()
        sol = solve_catalog(
            inst,
            gap=args.gap,
            time_limit=args.time_limit,
            device=args.device,
            progress=True,
            final_exact=not args.no_final_lp,
        )
        row: dict[str, Any] = {
            "kind": "solve",
            "instance": inst.name,
            "products": inst.n_products,
            "segments": inst.n_segments,
            "horizon": inst.horizon,
            "device": args.device,
            "bound": sol.bound,
            "plan_value": sol.plan_value,
            "gap": sol.gap,
            "stop": sol.stop,
            "seconds": sol.seconds,
            "iterations": sol.iterations,
            "seconds_per_iteration": sol.timings["dual"] / sol.iterations,
            "plan_seconds": sol.timings["plan"],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "cpu_seconds": time.process_time() - cpu_began,
        }
        for target in (0.01, 0.005):
            its, sec = _first_reach(sol.history, target)
            row[f"iterations_to_{target:g}"] = its
            row[f"seconds_to_{target:g}"] = sec
        if args.exact and plan_cells(inst) <= FULL_LP_CELLS:
            from coordopt.solvers.fluid import solve_fluid

            began = time.perf_counter()
            exact = solve_fluid(inst).require().objective
            row |= {
                "exact": exact,
                "exact_seconds": time.perf_counter() - began,
                "bound_over_exact": (sol.bound - exact) / abs(exact),
                "plan_below_exact": (exact - sol.plan_value) / abs(exact),
            }
        _emit(row, args.out)


def bench_curve(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    rows = sorted(
        (r for r in rows if r.get("kind") == "solve" and r["segments"] == 100),
        key=lambda r: r["products"],
    )
    print(
        "| products | wall s / iteration | CPU s / iteration | iterations to 1% | to 0.5% "
        "| gap | wall s | CPU s | peak RSS GiB | load |"
    )
    print("|" + "---|" * 10)
    for r in rows:
        cpu = r.get("cpu_seconds")
        per = "–" if cpu is None else f"{cpu / r['iterations']:.2f}"
        print(
            f"| {r['products']:,} | {r['seconds_per_iteration']:.2f} | {per} | "
            f"{r['iterations_to_0.01']} | {r['iterations_to_0.005']} | {r['gap']:.3%} | "
            f"{r['seconds']:.0f} | {'–' if cpu is None else f'{cpu:.1f}'} | "
            f"{r['peak_rss_gib']:.1f} | {r['load']} |"
        )
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cpu = [r for r in rows if r["device"] == "cpu" and r.get("cpu_seconds") is not None]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        n = [r["products"] for r in cpu]
        ax[0].loglog(n, [r["cpu_seconds"] / r["iterations"] for r in cpu], "o-")
        ax[0].set_xlabel("products")
        ax[0].set_ylabel("CPU seconds per iteration")
        for target in ("0.01", "0.005"):
            its = [r[f"iterations_to_{target}"] for r in cpu]
            shown = [i if i > 0 else np.nan for i in its]  # -1: not reached
            ax[1].semilogx(n, shown, "o-", label=target)
        ax[1].set_title("missing point: gap not reached", fontsize=8)
        ax[1].set_xlabel("products")
        ax[1].set_ylabel("iterations to gap")
        ax[1].legend(title="gap")
        fig.suptitle("catalog solver cost curve (M = 100 segments, T = 52)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


def bench_bidprice(args: argparse.Namespace) -> None:
    from coordopt.evaluation import compare, evaluate
    from coordopt.policies import make_policy
    from coordopt.simulator import SimParams

    inst = load_instance(args.instance)
    params = SimParams.from_instance(inst, dtype=torch.float64)
    began = time.perf_counter()
    policy = make_policy("bidprice", params, reoptimize_every=args.reoptimize_every)
    build = time.perf_counter() - began
    bp = evaluate(params, policy, episodes=args.episodes, seed=args.seed, batch_size=args.batch)
    dec = np.asarray(policy.decision_seconds)  # type: ignore[attr-defined]
    row: dict[str, Any] = {
        "kind": "bidprice",
        "instance": inst.name,
        "episodes": args.episodes,
        "reoptimize_every": args.reoptimize_every,
        "bidprice": bp.summary(),
        "build_seconds": build,
        "decision_seconds_mean": float(dec.mean()),
        "decision_seconds_max": float(dec.max()),
        "decision_seconds_without_reopt_max": float(
            np.max(dec[np.arange(dec.size) % inst.horizon % args.reoptimize_every != 0])
            if args.reoptimize_every > 0
            else dec.max()
        ),
    }
    for other in args.against.split(","):
        against = make_policy(other, params)
        ev = evaluate(
            params, against, episodes=args.episodes, seed=args.seed, batch_size=args.batch
        )
        row[other] = ev.summary() | {"bidprice_minus": compare(bp, ev)}
    _emit(row, args.out)


def bench_lagrangian(args: argparse.Namespace) -> None:
    from coordopt.simulator import SimParams, reset, step
    from coordopt.solvers.lagrangian import LagrangianPolicy

    inst = load_instance(args.instance)
    params = SimParams.from_instance(inst)
    cpu_began, began = time.process_time(), time.perf_counter()
    policy = LagrangianPolicy(params, iterations=args.iterations, max_states=args.max_states)
    sol = policy.solution
    row: dict[str, Any] = {
        "kind": "lagrangian",
        "instance": inst.name,
        "products": inst.n_products,
        "segments": inst.n_segments,
        "horizon": inst.horizon,
        "iterations": sol.iterations,
        "max_states": args.max_states,
        "bound": sol.bound,
        "fluid_bound": sol.fluid_bound,
        "bound_seconds": sol.seconds,
        "policy_setup_seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu_began,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if args.envs:
        gen = torch.Generator().manual_seed(0)
        state = reset(params, args.envs)
        policy.reset(args.envs)
        seconds = []
        for _ in range(inst.horizon):
            t0 = time.perf_counter()
            action = policy.act(state)
            seconds.append(time.perf_counter() - t0)
            state, _ = step(state, action, params, gen)
        row |= {
            "envs": args.envs,
            "decision_seconds_mean": float(np.mean(seconds)),
            "decision_seconds_max": float(np.max(seconds)),
        }
    _emit(row, args.out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("solve")
    s.add_argument("instances", nargs="+")
    s.add_argument("--gap", type=float, default=0.005)
    s.add_argument("--time-limit", type=float, default=None)
    s.add_argument("--exact", action="store_true")
    s.add_argument(
        "--no-final-lp", action="store_true", help="greedy flows for the last plan too (10,000)"
    )
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", type=Path, default=None)
    s.set_defaults(func=bench_solve)
    c = sub.add_parser("curve")
    c.add_argument("results", type=Path)
    c.add_argument("--plot", type=Path, default=None)
    c.set_defaults(func=bench_curve)
    b = sub.add_parser("bidprice")
    b.add_argument("instance")
    b.add_argument("--against", default="mpc,siloed")
    b.add_argument("--episodes", type=int, default=32)
    b.add_argument("--batch", type=int, default=None)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--reoptimize-every", type=int, default=4)
    b.add_argument("--out", type=Path, default=None)
    b.set_defaults(func=bench_bidprice)
    lg = sub.add_parser("lagrangian")
    lg.add_argument("instance")
    lg.add_argument("--iterations", type=int, default=8)
    lg.add_argument("--max-states", type=int, default=64)
    lg.add_argument("--envs", type=int, default=32)
    lg.add_argument("--out", type=Path, default=None)
    lg.set_defaults(func=bench_lagrangian)
    args = p.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
