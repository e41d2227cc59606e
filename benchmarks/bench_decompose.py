"""Time the block decomposition of the fluid program and report bound, plan value and gap.

Usage::

    .venv/bin/python benchmarks/bench_decompose.py [INSTANCE] [--max-block-size 40]
        [--iterations 3] [--seed 0] [--time-limit SECONDS] [--json]

Default instance: ``large`` (1,000 products, 100 segments, 52 periods), whose full program
(10 million choice variables) is too big to solve at once here. Timings are wall-clock on
whatever the machine is doing meanwhile; re-run to re-measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from coordopt.instance import load_instance
from coordopt.solvers.decompose import solve_decomposed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("instance", nargs="?", default="large")
    p.add_argument("--max-block-size", type=int, default=40)
    p.add_argument("--iterations", type=int, default=3, help="subgradient steps after the start")
    p.add_argument("--seed", type=int, default=0, help="community-detection seed")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    inst = load_instance(args.instance)
    load_s = time.perf_counter() - t0
    plan = solve_decomposed(
        inst,
        max_block_size=args.max_block_size,
        iterations=args.iterations,
        seed=args.seed,
        time_limit=args.time_limit,
        progress=not args.json,
    )
    out = {
        "instance": inst.name,
        "products": inst.n_products,
        "segments": inst.n_segments,
        "horizon": inst.horizon,
        "load_seconds": load_s,
        **plan.summary(),
    }
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    print(inst.summary())
    print(
        f"blocks: {out['blocks']} (sizes {out['block_size_min']}..{out['block_size_max']}, "
        f"mean {out['block_size_mean']:.1f})"
    )
    print(f"Lagrangian bound : {plan.bound:,.2f}")
    print(f"assembled plan   : {plan.value:,.2f}  (max constraint residual {plan.residual:.2e})")
    print(f"gap              : {100 * plan.gap:.3f}% of the bound")
    print(
        f"seconds          : {plan.seconds:.1f}  "
        + ", ".join(f"{k} {v:.1f}" for k, v in plan.timings.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
