"""How much is there to gain near the strongest teacher? Probes around the best siloed firm.

Usage::

    .venv/bin/python benchmarks/teacher_headroom.py INSTANCE [--alphas 0,0.5,1,1.2]
        [--lookahead] [--episodes 32] [--seed 5] [--out results.jsonl]

The best siloed firm (``siloed:inventory=dp``: revenue-maximising static slates, each
product's exact inventory program for the demand they induce) is the strongest optimiser
policy measured on ``large`` and at 10,000 products. Its orders are already optimal for its
slates, so whatever the agents gain over it must come from the slates. Each probe is
simulated on the same customers (``--seed``, common random numbers) and paired with the best
siloed firm:

- ``stock-aware``: the best siloed firm's orders, and each period's slates re-chosen at
  bid-price control's stock-adjusted margins (a product that cannot be sold this period is
  scored at its lost sale): what coordinating the slates with the stock on hand adds;
- ``static:cost_weight=A``: the static-margin firm, static slates that maximise ``p - A c``
  per customer (``A = 0`` is the best siloed firm's revenue, ``A = 1`` the gross margin and
  the policy ``static``) and each product's exact program for the demand they induce; its
  ``program_value`` is that policy's exact expected profit where no product is postponed;
- ``static-lookahead`` (with ``--lookahead``): the static-margin firm's programs (4,096
  states), and each period's slates re-chosen at the value, to each product's program at its
  current state, of one more unit of demand rate (the decomposition policy's slates around
  the static firm's rates, :meth:`~coordopt.solvers.lagrangian.LagrangianPolicy.for_rates`):
  a one-step improvement of the strongest teacher's slates on its own values.

One JSON line per probe (machine and load included); figures are wall-clock on a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.case_studies.common import paired_ci
from coordopt.choice import best_revenue_slates, best_slates, expected_demand
from coordopt.commands.bench import machine
from coordopt.evaluation import ci_halfwidth, evaluate
from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.simulator import Action, SimParams, SimState
from coordopt.solvers.bidprice import BidPricePolicy, stock_margins
from coordopt.solvers.lagrangian import BestSiloedPolicy, LagrangianPolicy


class StockAwareSlates:
    """The best siloed firm's orders; slates at bid-price control's stock-adjusted margins."""

    name = "stock-aware"

    def __init__(self, params: SimParams, siloed: BestSiloedPolicy, bid: BidPricePolicy):
        self.params, self.siloed, self.bid = params, siloed, bid

    def reset(self, batch_size: int) -> None:
        self.siloed.reset(batch_size)

    def act(self, state: SimState) -> Action:
        orders = self.siloed.act(state).orders
        plan, p = self.bid.plan, self.params
        u = state.t - plan.t0
        margin = stock_margins(p, state, orders.double(), plan.margin[u], plan.lost[u])
        rate = self.bid.rate[state.t].expand(state.batch_size, -1)
        choice = best_slates(margin, rate, plan.wr, plan.wn, plan.w0, p.slate_size, p.hidden)
        return Action(orders=orders, slates=choice.slates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("instance")
    ap.add_argument("--alphas", default="0.5,1,1.2")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--lookahead", action="store_true", help="add the static-lookahead probe")
    args = ap.parse_args()
    inst = load_instance(args.instance)
    params = SimParams.from_instance(inst, dtype=torch.float32)

    def simulate(policy: Any) -> np.ndarray:
        ev = evaluate(params, policy, episodes=args.episodes, seed=args.seed, batch_size=16)
        return ev.profit.astype(np.float64)

    siloed = make_policy("siloed:inventory=dp", params)
    base = simulate(siloed)
    bid = make_policy("bidprice", params)
    probes: list[tuple[Any, dict[str, Any]]] = [(StockAwareSlates(params, siloed, bid), {})]
    for alpha in (float(a) for a in args.alphas.split(",") if a):
        probe = make_policy(f"static:cost_weight={alpha:g}", params)
        probes.append((probe, probe.report()))
    if args.lookahead:  # the rates the static firm's slates induce (its programs plan for them)
        rates = expected_demand(inst, best_revenue_slates(inst, cost_weight=1.0)[0])
        probe = LagrangianPolicy.for_rates(params, rates, max_states=4096)
        probe.name = "static-lookahead"
        probes.append((probe, {}))
    for probe, extra in probes:
        profit = simulate(probe)
        diff, diff_ci = paired_ci(profit, base)
        row = {
            "machine": machine(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "instance": inst.name,
            "episodes": args.episodes,
            "seed": args.seed,
            "probe": probe.name,
            "profit": float(profit.mean()),
            "profit_ci95": ci_halfwidth(profit),
            "best_siloed": float(base.mean()),
            "vs_best_siloed": diff,
            "vs_best_siloed_ci95": diff_ci,
            "vs_best_siloed_pct": 100 * diff / float(base.mean()),
        } | extra
        line = json.dumps(row, default=float)
        print(line, flush=True)
        if args.out is not None:
            with args.out.open("a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()
