"""``coordopt evaluate``: simulate policies with common random numbers and compare them."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from coordopt.commands.common import (
    add_instance_arg,
    add_json_flag,
    check_policy,
    emit_json,
    guard_size,
    log,
    policy_work,
    table,
)
from coordopt.evaluation import compare, evaluate
from coordopt.guards import add_force_flag, device_type, positive_int, seed_int, total_workload
from coordopt.instance import load_instance
from coordopt.policies import (
    PolicyOptionError,
    PolicySpec,
    make_policy,
    parse_options,
    policy_names,
)
from coordopt.simulator import SimParams


def check_policy_options(spec: PolicySpec, options: dict[str, Any]) -> None:
    """Refuse before any work an option of ``--policy spec`` that it does not take or that
    breaks its rule; one given by ``--option`` (beneath the spec's own) is named by the flag."""
    try:
        spec.checked(options)
    except PolicyOptionError as exc:
        if exc.option in options and exc.option not in spec.options:
            raise ValueError(f"--option {exc.option}: {exc}") from None
        raise


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate policies on an instance (common random numbers)",
        description=__doc__,
    )
    add_instance_arg(p)
    p.add_argument(
        "--policy",
        action="append",
        default=None,
        metavar="NAME[:KEY=VALUE;...]|DIR",
        help=f"policy to evaluate, repeatable ({', '.join(policy_names())}, or a trained "
        "agent's run directory), with its own options after a colon, e.g. "
        "bidprice:reoptimize_every=0; default: siloed",
    )
    p.add_argument(
        "--episodes", type=positive_int, default=100, help="episodes per policy (default: 100)"
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="demand stream seed, shared by all policies"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=256, help="episodes simulated at once"
    )
    p.add_argument("--device", type=device_type, default="cpu", help="torch device (cpu, cuda)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to every policy's constructor, repeatable",
    )
    add_force_flag(p, "evaluate anyway")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = parse_options(args.option)
    names = args.policy or ["siloed"]
    specs = [check_policy(name, "--policy") for name in names]
    for spec in specs:
        check_policy_options(spec, options)
    inst = load_instance(args.instance)
    guard_size(
        args,
        inst,
        what=f"to evaluate {len(names)} policies on {inst.name}",
        way_out="use fewer --episodes or a smaller instance",
        episodes=args.episodes * len(names),
        batch=args.batch_size,
        **total_workload(policy_work(s, args.episodes, inst.horizon, options) for s in specs),
    )
    params = SimParams.from_instance(inst, device=args.device, dtype=torch.float64)
    # every policy is built (its options checked) before the first is simulated
    policies = [make_policy(spec, params, **options) for spec in specs]
    results = []
    for policy in policies:
        result = evaluate(
            params,
            policy,
            episodes=args.episodes,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=True,
        )
        report = getattr(policy, "report", None)  # a solving policy's account of its solves
        if callable(report):
            result.extra |= report()
            if result.extra.get("time_limited_solves"):
                log(
                    f"{result.policy}: a time limit stopped {result.extra['time_limited_solves']} "
                    f"of {result.extra['solves']} solves; its numbers depend on the machine's "
                    "speed (leave the time limits unset to have the seed fix them)"
                )
        results.append(result)
    summaries = [r.summary() for r in results]
    base = results[0]
    for r, s in zip(results[1:], summaries[1:], strict=True):
        s["vs_first"] = compare(r, base)
    if len(results) > 1:  # every paired difference (JSON): this policy minus each other one
        for r, s in zip(results, summaries, strict=True):
            s["vs"] = {o.policy: compare(r, o) for o in results if o is not r}
    if args.json:
        emit_json(
            summaries[0]
            if len(summaries) == 1
            else {
                "instance": inst.name,
                "episodes": args.episodes,
                "seed": args.seed,
                "results": summaries,
            }
        )
        return 0
    log(inst.summary())
    rows = []
    for s in summaries:
        diff = s.get("vs_first")
        rows.append(
            [
                s["policy"],
                s["mean"],
                s["ci95"],
                f"{100 * s['fill_rate']:.1f}%",
                s["avg_on_hand"],
                s["lost_sales"],
                "" if diff is None else f"{diff['mean']:+,.2f} ± {diff['ci95']:,.2f}",
            ]
        )
    print(
        table(
            [
                "policy",
                "mean profit",
                "±95%",
                "fill rate",
                "avg on-hand",
                "lost units",
                f"vs {summaries[0]['policy']} (paired)",
            ],
            rows,
        )
    )
    return 0
