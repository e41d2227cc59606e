"""``coordopt solve INSTANCE --method fluid|dp|decompose|lagrangian``: fluid bound and plan,
exact DP, the catalog-scale solver (a valid bound, an exactly feasible plan and their gap), or
the stochastic bound (Lagrangian relaxation with one dynamic program per product).

With ``--json`` one object on stdout: the fields of the shared solution contract
(:class:`coordopt.solution.Solution`): ``method``, ``status``, ``message``, ``objective``,
``bound``, ``plan_value``, ``gap``, ``seconds``, ``first_orders`` (one number per product,
period 1) and ``first_slates`` (per segment, the product indices recommended in period 1),
plus the method's ``details`` (fluid: ``variant``, ``path``, ``mip_gap``; decompose:
``iterations``, ``stop``, ``residual``; dp: ``n_states``, ``reachable_states``; lagrangian:
``fluid_bound``, ``first_bound``, ``iterations``, ``stop``, ``states``, ``postponed_products``). ``--out FILE.npz`` saves
the plan's arrays where the method has them, the first decisions and the values.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.commands.common import (
    FlagRule,
    add_instance_arg,
    add_json_flag,
    applies_with,
    command,
    declare_flag_rules,
    emit_json,
    guard_size,
    log,
    table,
)
from coordopt.guards import claim_out, device_type, nonneg_float, positive_int
from coordopt.instance import Instance, load_instance
from coordopt.io import atomic_write
from coordopt.policies import POLICY_ENTRIES
from coordopt.sizes import FULL_LP_CELLS
from coordopt.solution import Solution

FLAG_RULES = [
    *applies_with(
        "method",
        {
            "variant": ["fluid"],
            "path": ["fluid"],
            "integer_orders": ["fluid"],
            "integer_quantities": ["fluid"],
            "mip_gap": ["fluid"],
            "time_limit": ["fluid", "decompose", "lagrangian"],
            "gap": ["decompose"],
            "iterations": ["lagrangian"],
            "max_states": ["lagrangian"],
            "device": ["lagrangian"],
        },
    ),
    FlagRule(
        "mip_gap",
        lambda args: args.integer_orders or args.integer_quantities,
        "with --integer-orders or --integer-quantities (a MILP)",
    ),
]
"""Which flags apply to which ``--method`` (the others are refused, not ignored)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "solve",
        help="solve the fluid program (upper bound and plan) or the exact DP",
        description="Solve INSTANCE with the fluid linear program (Pyomo/HiGHS) or the exact "
        "dynamic program (tiny instances).",
    )
    add_instance_arg(p)
    p.add_argument(
        "--method",
        choices=("fluid", "dp", "decompose", "lagrangian"),
        default="fluid",
        help="fluid: sales-based LP bound and plan; dp: exact dynamic program; decompose: "
        "Lagrangian dual on stock values + feasible plan, for large catalogs; lagrangian: "
        "stochastic bound (one dynamic program per product, below the fluid bound)",
    )
    p.add_argument(
        "--iterations",
        type=positive_int,
        default=30,
        help="lagrangian: subgradient iterations on the multipliers (default 30)",
    )
    p.add_argument(
        "--max-states",
        type=positive_int,
        default=2048,
        help="lagrangian: largest (on hand, pipeline) state space of one product's program; "
        "longer lead times are decided later, which only loosens the bound (default 2048)",
    )
    p.add_argument(
        "--device",
        type=device_type,
        default="cpu",
        help="lagrangian: torch device (cpu, cuda; default cpu)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help=f"solve the full fluid program even above {FULL_LP_CELLS:,} period-segment-product "
        "cells (or the size guard's other limits), and replace an existing --out",
    )
    p.add_argument(
        "--variant",
        choices=("coordinated", "siloed-slates", "unlimited-stock"),
        default="coordinated",
        help="fluid program variant (default coordinated)",
    )
    p.add_argument(
        "--path",
        choices=("auto", "bulk", "pyomo"),
        default="auto",
        help="fluid solve path: bulk arrays into highspy, or the Pyomo model",
    )
    p.add_argument(
        "--integer-orders",
        action="store_true",
        help="binary order indicators (MILP) instead of their LP relaxation",
    )
    p.add_argument("--integer-quantities", action="store_true", help="integer order quantities")
    p.add_argument(
        "--time-limit", type=nonneg_float, default=None, help="solver time limit, seconds"
    )
    p.add_argument("--mip-gap", type=nonneg_float, default=None, help="relative MIP gap to stop at")
    p.add_argument(
        "--gap",
        type=nonneg_float,
        default=0.005,
        help="decompose: stop at this relative gap between bound and plan (default 0.005)",
    )
    p.add_argument("--out", type=Path, default=None, help="save the solution arrays (.npz)")
    add_json_flag(p)
    declare_flag_rules(p, FLAG_RULES)
    p.set_defaults(func=run)


@command
def run(args: argparse.Namespace) -> int:
    if args.out is not None and args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: expected a .npz file name")
    if args.out is not None:
        claim_out(args.out, folder=False, force=args.force)
    inst = load_instance(args.instance)
    guard_size(
        args,
        inst,
        what=f"to solve {inst.name}",
        way_out={
            "fluid": "use --method decompose for a bound and plan at this size",
            "lagrangian": "lower --max-states or --iterations (the scale study runs large with "
            "--iterations 10 --max-states 256), or set --time-limit",
        }.get(args.method, "use a smaller instance"),
        lp_solves=int(args.method == "fluid"),
        catalog_solve=args.method in ("decompose", "lagrangian"),
        **(_lagrangian_work(args, inst.horizon) if args.method == "lagrangian" else {}),
    )
    if args.method == "dp":
        sol = _solve_dp(inst)
        if sol is None:
            return 2
    elif args.method == "decompose":
        from coordopt.solvers.catalog import solve_catalog

        log(f"solving the fluid program of {inst.summary()} by its stock-value dual")
        sol = solve_catalog(
            inst, gap=args.gap, time_limit=args.time_limit, progress=not args.json
        ).result()
        log(sol.message)
    elif args.method == "lagrangian":
        sol = _solve_lagrangian(args, inst)
        if sol is None:
            return 2
    else:
        sol = _solve_fluid(args, inst)
    if args.out is not None and sol.has_solution:
        _save(args.out, _arrays(sol))
        log(f"wrote {args.out}")
    result = {
        "method": args.method,
        "instance": inst.name,
        **sol.details,
        "status": sol.status.value,
        "message": sol.message,
        "objective": sol.objective,
        "bound": sol.bound,
        "plan_value": sol.plan_value,
        "gap": sol.gap,
        "seconds": sol.seconds,
        "first_orders": sol.first_orders,
        "first_slates": sol.first_slates,
    }
    _report(args, result, inst.product_names, inst.segment_names)
    return 0 if sol.has_solution else 1


def _solve_fluid(args: argparse.Namespace, inst: Instance) -> Solution:
    from coordopt.solvers.fluid import solve_fluid

    log(f"solving the fluid program ({args.variant}) of {inst.summary()}")
    return solve_fluid(
        inst,
        method=args.path,
        variant=args.variant,
        time_limit=args.time_limit,
        mip_gap=args.mip_gap,
        integer_orders=args.integer_orders,
        integer_quantities=args.integer_quantities,
        raise_on_failure=False,
    ).result()


def _lagrangian_work(args: argparse.Namespace, horizon: int) -> dict[str, Any]:
    """The per-product programs of the bound, priced as the decomposition policy's."""
    options = {"iterations": args.iterations, "max_states": args.max_states}
    work = POLICY_ENTRIES["lagrangian"].workload(options).workload(0, horizon)
    return {**work, "budget_seconds": args.time_limit or 0.0}


def _solve_lagrangian(args: argparse.Namespace, inst: Instance) -> Solution | None:
    from coordopt.solvers.lagrangian import solve_lagrangian

    log(f"computing the stochastic bound of {inst.summary()}")
    sol = solve_lagrangian(  # an instance it does not cover is refused (LagrangianError: exit 2)
        inst,
        iterations=args.iterations,
        max_states=args.max_states,
        time_limit=args.time_limit,
        device=args.device,
        progress=not args.json,
    ).result()
    log(sol.message)
    return sol


def _solve_dp(inst: Instance) -> Solution | None:
    try:
        from coordopt.solvers.dp import solve_dp
    except ImportError as exc:
        log(
            f"coordopt solve: error: the exact DP is not available: coordopt.solvers.dp could not "
            f"be imported ({exc}); use --method fluid"
        )
        return None
    log(f"solving the exact dynamic program of {inst.summary()}")
    return solve_dp(inst).result()


def _arrays(sol: Solution) -> dict[str, np.ndarray]:
    """What ``--out`` saves: the plan arrays, the first decisions and the values."""
    width = max((len(s) for s in sol.first_slates), default=0)
    slates = np.full((len(sol.first_slates), width), -1, dtype=np.int64)
    for k, row in enumerate(sol.first_slates):
        slates[k, : len(row)] = row
    out = dict(sol.plan.arrays()) if sol.plan is not None else {}
    out |= {
        "objective": np.array(sol.objective),
        "first_orders": np.asarray(sol.first_orders),
        "first_slates": slates,
    }
    if sol.bound is not None:
        out["bound"] = np.array(sol.bound)
    if sol.plan_value is not None:
        out["value"] = np.array(sol.plan_value)
    return out


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the solution arrays atomically as ``.npz``."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, allow_pickle=False, **arrays)

    atomic_write(path, write)


def _report(
    args: argparse.Namespace,
    result: dict[str, Any],
    products: tuple[str, ...],
    segments: tuple[str, ...],
) -> None:
    if args.json:
        emit_json(result)
        return
    print(
        f"{result['method']} on {result['instance']}: status {result['status']}, "
        f"objective {result['objective']:,.4f}, {result['seconds']:.2f} s"
    )
    if result.get("plan_value") is not None and result.get("gap") is not None:
        print(f"  plan value {result['plan_value']:,.4f}, gap {result['gap']:.3%}")
    if result.get("message") and result["status"] != "optimal":
        print(f"  {result['message']}")
    orders = np.asarray(result["first_orders"], dtype=float)
    if np.isfinite(orders).all() and orders.size:
        shown = min(orders.size, 20)
        print(
            table(
                ["product", "period-1 order"],
                [[products[i], float(orders[i])] for i in range(shown)],
            )
        )
        if shown < orders.size:
            print(f"  ... {orders.size - shown} more products")
    for k, slate in enumerate(result["first_slates"][:20]):
        print(f"  segment {segments[k]}: recommend {', '.join(products[i] for i in slate) or '-'}")
