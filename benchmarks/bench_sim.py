"""Simulator throughput at the sizes the README reports (prints figures; never a test).

    .venv/bin/python benchmarks/bench_sim.py            # the issue's size and catalog scale
    .venv/bin/python benchmarks/bench_sim.py --device cuda

Each line is ``coordopt bench sim`` at one size: product-periods per second.
"""

from __future__ import annotations

import argparse
import json

from coordopt.commands.bench import bench_sim

SIZES = [  # (products, segments, batch, slate size)
    (1_000, 100, 64, 5),  # the target size: >= 20 M product-periods/s on 2 cores
    (1_000, 100, 256, 5),
    (10_000, 1_000, 16, 5),
    (100, 20, 1024, 4),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for n, m, b, k in SIZES:
        res = bench_sim(n, m, b, k, steps=args.steps, device=args.device)
        if args.json:
            print(json.dumps(res))
        else:
            print(
                f"N={n:>6} M={m:>5} K={k} B={b:>5} {args.device}: "
                f"{res['product_steps_per_s'] / 1e6:7.1f} M product-periods/s "
                f"({res['env_steps_per_s']:,.0f} env-periods/s)"
            )


if __name__ == "__main__":
    main()
