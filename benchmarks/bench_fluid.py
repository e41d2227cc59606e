"""Time the fluid program and fluid MPC; prints figures (never pass/fail).

    .venv/bin/python benchmarks/bench_fluid.py                  # medium, all paths
    .venv/bin/python benchmarks/bench_fluid.py --instance small --quick

Rows: Pyomo build alone; Pyomo's standard-form compiler alone (the alternative route to
matrices); build+solve on each path with each HiGHS algorithm; MPC construction (cold solve)
and per-decision re-solve time from perturbed states. Timings on a shared machine are noisy:
repeat and compare medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from coordopt.instance import load_instance
from coordopt.models.fluid import build_fluid_model, fluid_data
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.fluid import solve_fluid
from coordopt.solvers.highs_bulk import assemble_fluid_lp
from coordopt.solvers.mpc import MPCPolicy


def timed(fn):
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default="medium")
    ap.add_argument("--quick", action="store_true", help="skip the slow simplex and PDLP rows")
    ap.add_argument("--mpc-steps", type=int, default=5)
    args = ap.parse_args()
    inst = load_instance(args.instance)
    print(inst.summary())

    d = fluid_data(inst)
    arrays, t_asm = timed(lambda: assemble_fluid_lp(d))
    print(
        f"size: {arrays.layout.n_rows} rows x {arrays.layout.n_cols} cols, "
        f"{arrays.matrix.nnz} nonzeros"
    )
    model, t_build = timed(lambda: build_fluid_model(inst))
    print(f"{'numpy assembly of the matrices':48s} {t_asm:7.2f} s")
    print(f"{'Pyomo build_fluid_model':48s} {t_build:7.2f} s")
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    _, t_sf = timed(lambda: LinearStandardFormCompiler().write(model, mixed_form=True))
    print(f"{'Pyomo standard-form compiler (after build)':48s} {t_sf:7.2f} s")

    algorithms = ["ipm", "pdlp", "simplex"] if not args.quick else ["ipm"]
    ref = None
    for method in ("bulk", "pyomo"):
        for alg in algorithms:
            if method == "pyomo" and alg != "ipm":
                continue  # same solver underneath; the path cost is build + transfer
            sol, t = timed(lambda m=method, a=alg: solve_fluid(inst, method=m, algorithm=a))
            ref = sol.objective if ref is None else ref
            print(
                f"{f'build+solve {method:5s} {alg:8s}':48s} {t:7.2f} s   "
                f"objective {sol.objective:,.4f} (diff {sol.objective - ref:+.2e})"
            )

    params = SimParams.from_instance(inst, dtype=torch.float64)
    policy, t_init = timed(lambda: MPCPolicy(params, seed=0))
    print(f"{'MPC construction (build + cold ipm solve)':48s} {t_init:7.2f} s")
    state = reset(params, 1)
    gen = torch.Generator().manual_seed(0)
    decisions = []
    for _ in range(min(args.mpc_steps, inst.horizon)):
        action, t = timed(lambda s=state: policy.act(s))
        decisions.append(t)
        state, _ = step(state, action, params, gen)
    print(
        f"{'MPC decision (one state), median of ' + str(len(decisions)):48s} "
        f"{statistics.median(decisions):7.3f} s   all: {np.round(decisions, 3).tolist()}"
    )


if __name__ == "__main__":
    main()
