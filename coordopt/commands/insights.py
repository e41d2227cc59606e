"""``coordopt insights INSTANCE``: measure how recommendations and replenishment move together.

``--method fluid`` (default) measures the fluid optimum's plan; ``--method dp`` simulates
the exact DP policy (tiny instances); any other value is a policy name or a trained agent's
run directory, simulated for ``--episodes`` episodes. The siloed firm is always simulated
as the baseline of the run-down pattern, and the optimum (the reference of
:func:`coordopt.solvers.dp.reference_method`: the DP where it fits the instance, else the
fluid plan) says whether it confirms each pattern's expected sign. Writes PNG plots,
``insights.json`` and ``insights.md`` into ``--out``.

``--network`` measures the substitution network instead: for every product, the demand the
optimiser moves to every other product when that product runs short (``--method fluid``:
the exact DP or MPC where they fit, the catalog solver's stock values beyond; or ``dp``,
``mpc``, ``bidprice``), its communities, the products that back up the most demand, the
communities' agreement with the instance's categories and, with ``--agents RUNDIR``, how much
of the shift trained agents reproduce. Writes ``network.graphml``, ``network_nodes.csv``,
``network_edges.csv``, ``network.png`` and ``network.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from coordopt.commands.common import (
    FlagRule,
    _plain,
    add_instance_arg,
    add_json_flag,
    applies_with,
    check_policy,
    command,
    declare_flag_rules,
    emit_json,
    guard_size,
    log,
    policy_work,
    table,
)
from coordopt.guards import (
    Range,
    add_force_flag,
    claim_out,
    positive_float,
    positive_int,
    seed_int,
)
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

FLAG_RULES = [
    *applies_with(
        "network",
        {"bootstrap": [False], "no_plots": [False]},
        label=lambda network: "with --network" if network else "without --network",
    ),
    FlagRule(
        "episodes",
        lambda args: not args.network or args.agents is not None,
        "without --network, or with --network --agents (the agents' episodes)",
        lambda args: "with --network and no --agents",
    ),
]
"""Flags that apply only in one of the two measurements (refused, not ignored, in the other)."""


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
        default=None,
        help="simulated episodes per policy (default: 64; with --network, of the agents: 4)",
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
    net = p.add_argument_group("substitution network (--network)")
    net.add_argument(
        "--network",
        action="store_true",
        help="the substitution network: where the optimiser moves demand when a product runs short",
    )
    net.add_argument(
        "--agents",
        metavar="RUNDIR",
        default=None,
        help="a trained agents' run directory: measure how much of the shift they reproduce",
    )
    net.add_argument(
        "--period",
        type=Range(int, lo=1),
        default=None,
        help="the representative period, 1..T (default: the middle of the horizon)",
    )
    net.add_argument(
        "--resolution",
        type=positive_float,
        default=None,
        help="Louvain resolution of the communities (default: 0.5; modularity's own is 1)",
    )
    add_force_flag(p, "write into a non-empty --out folder")
    add_json_flag(p)
    declare_flag_rules(p, FLAG_RULES)
    p.set_defaults(func=run)


@command
def run(args: argparse.Namespace) -> int:
    if args.network:
        return run_network(args)
    for flag in ("agents", "period", "resolution"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag} belongs to --network; add --network or leave it out")
    args.episodes = args.episodes or 64
    if args.episodes < 2:
        raise ValueError(f"--episodes {args.episodes}: must be >= 2 (bootstrap intervals)")
    method = str(args.method)
    if method != "fluid":
        check_policy(method, "--method", options=False)
    inst = load_instance(args.instance)
    out = args.out or Path("results") / "insights" / f"{inst.name}-{Path(method).name}"
    claim_out(out, folder=True, force=args.force)
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


def run_network(args: argparse.Namespace) -> int:
    """``--network``: the substitution network of the optimiser (module docstring)."""
    from coordopt.insights.network import (
        METHODS,
        RESOLUTION,
        agents_agreement,
        analyse_network,
        build_network,
        network_method,
        optimiser_response,
        simulated_response,
        write_network,
    )

    inst = load_instance(args.instance)
    method = str(args.method)
    if method not in METHODS:
        raise ValueError(
            f"--method {method}: the network takes the optimiser's decisions ({', '.join(METHODS)}); "
            "a trained agents' run directory goes in --agents"
        )
    if args.agents is not None:
        check_policy(args.agents, "--agents", options=False)
    if args.period is not None and args.period > inst.horizon:
        raise ValueError(f"--period {args.period}: the horizon of {inst.name} is {inst.horizon}")
    period = None if args.period is None else args.period - 1
    episodes = args.episodes or 4
    resolution = args.resolution or RESOLUTION
    out = args.out or Path("results") / "insights" / f"{inst.name}-network"
    claim_out(out, folder=True, force=args.force)
    chosen = network_method(inst) if method == "fluid" else method
    work: dict[str, Any] = (
        {"catalog_solve": True} if chosen == "bidprice" else {"lp_solves": inst.n_products + 1}
    )
    if args.agents is not None:
        work.update(policy_work(args.agents, episodes, inst.horizon))
        work.update(episodes=episodes * (inst.n_products + 1), batch=256)
    guard_size(
        args,
        inst,
        what=f"to measure the substitution network of {inst.name}",
        way_out="use a smaller instance" + (" or fewer --episodes" if args.agents else ""),
        **work,
    )
    log(f"insights --network: {inst.summary()}; method {chosen}")
    began = time.perf_counter()
    response = optimiser_response(inst, chosen, period=period, seed=args.seed)
    graph = build_network(inst, response)
    agreement = None
    if args.agents is not None:
        agents = simulated_response(
            inst,
            args.agents,
            sorted(set(response.edge_source.tolist())),
            response.period,
            episodes=episodes,
            seed=args.seed,
        )
        agreement = agents_agreement(response, agents)
    summary = analyse_network(graph, seed=args.seed, resolution=resolution, agreement=agreement)
    summary["agents"] = args.agents
    summary["seconds"] = time.perf_counter() - began
    files = write_network(graph, summary, out)
    summary["files"] = [str(f) for f in files]
    if args.json:
        emit_json(summary)
        return 0
    print(
        table(
            ["backs up", "category", "demand/period", "from products", "pagerank"],
            [
                [b["product"], b.get("category", ""), b["demand"], b["sources"], b["pagerank"]]
                for b in summary["backups"][:10]
            ],
        )
    )
    sizes = ", ".join(str(len(c)) for c in summary["communities"][:12])
    ari = summary["category_ari"]
    print(
        f"{len(summary['communities'])} communities (sizes {sizes or 'none'}); "
        f"{summary['covered']} of {summary['n_products']} products move or take demand; "
        f"category ARI {'n/a' if ari is None else f'{ari:.3f}'}; agents agreement "
        f"{'n/a' if agreement is None else f'{agreement:.3f}'}"
    )
    log(f"wrote {', '.join(summary['files'])} in {summary['seconds']:.1f} s")
    return 0
