"""``coordopt insights INSTANCE``: measure how recommendations and replenishment move together.

``--method fluid`` (default) measures the fluid optimum's plan; ``--method dp`` simulates
the exact DP policy (tiny instances); any other value is a policy name or a trained agent's
run directory, simulated for ``--episodes`` episodes. The siloed firm is always simulated
as the baseline of the run-down pattern, and the optimum (the reference of
:func:`coordopt.solvers.dp.reference_method`: the DP where it fits the instance, else the
fluid plan) says whether it confirms each pattern's expected sign. Writes PNG plots,
``insights.json`` and ``insights.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from coordopt.commands.common import (
    _plain,
    add_instance_arg,
    add_json_flag,
    emit_json,
    guard_size,
    log,
    policy_work,
    table,
)
from coordopt.guards import add_force_flag, check_out, positive_int, seed_int
from coordopt.insights import (
    PATTERNS,
    alignment_score,
    confirmations,
    fluid_plan,
    insight_metrics,
    markdown_summary,
    plot_insights,
    simulate,
)
from coordopt.insights.report import metric_cell
from coordopt.instance import load_instance
from coordopt.io import atomic_write
from coordopt.solvers.dp import reference_method


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "insights", help="synchronised-adjustment metrics and plots", description=__doc__
    )
    add_instance_arg(p)
    p.add_argument(
        "--method",
        default="fluid",
        metavar="fluid|dp|POLICY",
        help="fluid plan, DP policy, or any policy name / trained-agent directory",
    )
    p.add_argument(
        "--episodes",
        type=positive_int,
        default=64,
        help="simulated episodes per policy (default: 64)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="demand stream and bootstrap seed")
    p.add_argument(
        "--bootstrap", type=positive_int, default=200, help="bootstrap resamples (default 200)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/insights/INSTANCE-METHOD)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_force_flag(p, "write into a non-empty --out folder")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inst = load_instance(args.instance)
    method = str(args.method)
    out = args.out or Path("results") / "insights" / f"{inst.name}-{Path(method).name}"
    check_out(out, folder=True, force=args.force)
    simulated = 1 if method == "fluid" else 2
    work = {} if method == "fluid" else policy_work(method, args.episodes, inst.horizon)
    work["lp_solves"] = work.get("lp_solves", 0) + 1  # the fluid plan
    guard_size(
        args,
        inst,
        what=f"to measure insights of {method} on {inst.name}",
        way_out="use fewer --episodes or a smaller instance",
        episodes=simulated * args.episodes,
        batch=args.episodes,
        recorded=True,
        **work,
    )
    log(f"insights: {inst.summary()}; method {method}")
    baseline = simulate(inst, "siloed", args.episodes, args.seed)
    fluid = fluid_plan(inst)
    if method == "fluid":
        primary = fluid
    else:
        primary = simulate(inst, method, args.episodes, args.seed)
    opts: dict[str, Any] = {"baseline": baseline, "n_boot": args.bootstrap, "seed": args.seed}
    res_primary = insight_metrics(primary, **opts)
    res_fluid = res_primary if primary is fluid else insight_metrics(fluid, **opts)
    res_base = insight_metrics(baseline, **opts)
    reference = reference_method(inst)
    if reference == method:
        optimal = res_primary
    elif reference == "fluid":
        optimal = res_fluid
    else:
        optimal = insight_metrics(simulate(inst, reference, args.episodes, args.seed), **opts)
    confirm = confirmations(res_primary, optimal)
    alignment = None if primary is fluid else alignment_score(primary, fluid)
    sources = [primary] + ([fluid] if primary is not fluid else []) + [baseline]
    results = [res_primary] + ([res_fluid] if primary is not fluid else []) + [res_base]
    files = [] if args.no_plots else plot_insights(inst, sources, results, out)
    summary = {
        "instance": inst.name,
        "method": method,
        "episodes": args.episodes,
        "seed": args.seed,
        "optimal_reference": reference,
        "results": results,
        "confirmations": confirm,
        "alignment": alignment,
        "files": [str(f) for f in files],
    }
    json_path, md_path = out / "insights.json", out / "insights.md"
    atomic_write(json_path, lambda p: p.write_text(json.dumps(_plain(summary), indent=2)))
    atomic_write(
        md_path, lambda p: p.write_text(markdown_summary(inst, results, confirm, alignment))
    )
    summary["files"] += [str(json_path), str(md_path)]
    if args.json:
        emit_json(summary)
        return 0

    rows = [
        [k, sign]
        + [metric_cell(r["metrics"][k]) for r in results]
        + [{True: "yes", False: "no", None: "n/a"}[confirm[k]["optimal"]]]
        for k, (sign, _, _) in PATTERNS.items()
    ]
    print(
        table(
            ["pattern", "expected"]
            + [r["source"] for r in results]
            + [f"{summary['optimal_reference']} confirms"],
            rows,
        )
    )
    if alignment is not None:
        print("alignment with fluid: " + ", ".join(f"{k} {v:.3f}" for k, v in alignment.items()))
    log(f"wrote {', '.join(summary['files'])}")
    return 0
