"""Timing of the exact DP (prints figures; never a pass/fail test).

The issue target: a 2-product, 1-segment, lead-time-1, 12-period instance (``tiny`` with
horizon 12, max_order 6) solves in under a minute on 2 cores. Run::

    .venv/bin/python benchmarks/bench_dp.py            # all cases
    .venv/bin/python benchmarks/bench_dp.py --case tiny-T12 --repeat 3

Each line: case, states per period, joint slates, best wall and CPU seconds over ``--repeat``
runs (CPU time is less disturbed by other work on a shared machine), optimal value and status.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from coordopt.instance import Instance, instance_from_dict, load_instance
from coordopt.solvers.dp import enumerate_slates, solve_dp


def three_products() -> Instance:
    """3 products (lead times 1, 0, 0), 2 segments, slate size 1, 6 periods, orders <= 3."""
    prods = [
        {
            "name": "A",
            "price": 10.0,
            "unit_cost": 6.0,
            "holding_cost": 0.3,
            "lead_time": 1,
            "initial_inventory": 2,
            "salvage_value": 2.0,
            "max_order": 3,
            "lost_sale_penalty": 1.0,
        },
        {
            "name": "B",
            "price": 7.0,
            "unit_cost": 3.0,
            "holding_cost": 0.2,
            "max_order": 3,
            "salvage_value": 1.0,
            "lost_sale_penalty": 0.5,
        },
        {
            "name": "C",
            "price": 5.0,
            "unit_cost": 2.0,
            "holding_cost": 0.1,
            "max_order": 3,
            "initial_inventory": 1,
        },
    ]
    segs = [
        {
            "name": "bargain",
            "arrival_rate": 2.0,
            "base_attraction": [0.5, 0.8, 1.0],
            "rec_attraction": [1.5, 1.6, 1.4],
        },
        {
            "name": "premium",
            "arrival_rate": 1.0,
            "base_attraction": [1.0, 0.4, 0.2],
            "rec_attraction": [2.0, 1.0, 0.5],
        },
    ]
    return instance_from_dict({"name": "three", "horizon": 6, "product": prods, "segment": segs})


CASES: dict[str, Callable[[], Instance]] = {
    "tiny-T12": lambda: load_instance("tiny").replace(horizon=12, max_order=[6, 6]),
    "tiny-T12-hidden": lambda: load_instance("tiny").replace(horizon=12, stockout="hidden"),
    "tiny-T8-lead2": lambda: load_instance("tiny").replace(lead_time=[2, 0]),
    "tiny-T8-K2": lambda: load_instance("tiny").replace(slate_size=2),
    "three-T6": three_products,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case",
        choices=sorted(CASES),
        action="append",
        help="case to time (repeatable; default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is shown")
    args = parser.parse_args()
    print(f"cores visible: {os.cpu_count()}  (timings are wall seconds, noisy on a shared machine)")
    print(f"{'case':<18}{'states':>10}{'slates':>8}{'wall s':>9}{'cpu s':>8}{'value':>12}  status")
    for name in args.case or list(CASES):
        inst = CASES[name]()
        best, best_cpu = float("inf"), float("inf")
        sol = None
        for _ in range(max(args.repeat, 1)):
            t0, c0 = time.perf_counter(), time.process_time()
            sol = solve_dp(inst)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        assert sol is not None
        slates = len(enumerate_slates(inst.n_products, inst.n_segments, inst.slate_size))
        print(
            f"{name:<18}{sol.n_states:>10,}{slates:>8}{best:>9.2f}{best_cpu:>8.2f}"
            f"{sol.value:>12.4f}  {sol.status}"
        )


if __name__ == "__main__":
    main()
