"""``coordopt bench``: throughput figures (printed, never asserted by tests)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from coordopt.commands.common import add_json_flag, emit_json, log
from coordopt.generator import generate_instance
from coordopt.guards import (
    add_force_flag,
    check_size,
    device_type,
    estimate,
    positive_int,
    threads_int,
)
from coordopt.machine import machine
from coordopt.policies import SiloedPolicy
from coordopt.simulator import SimParams, reset, step


def bench_sim(
    products: int,
    segments: int,
    batch: int,
    slate_size: int = 5,
    steps: int = 200,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Simulator steps per second under the siloed policy's actions (fixed slates, base-stock orders).

    The policy's ``act`` is inside the timed loop, as in a real rollout; instance generation
    and warm-up are not.
    """
    inst = generate_instance(
        seed=seed,
        n_products=products,
        n_segments=segments,
        horizon=max(steps, 5),  # the warm-up runs 5 periods
        slate_size=slate_size,
    )
    params = SimParams.from_instance(inst, device=device)
    policy = SiloedPolicy(params)
    gen = torch.Generator(device=params.device).manual_seed(seed)
    state = reset(params, batch)
    policy.reset(batch)
    for _ in range(5):  # warm-up
        state, _ = step(state, policy.act(state), params, gen)
    state = reset(params, batch)
    sync = torch.cuda.synchronize if params.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        state, _ = step(state, policy.act(state), params, gen)
    sync()
    secs = time.perf_counter() - t0
    return {
        "benchmark": "sim",
        "products": products,
        "segments": segments,
        "batch": batch,
        "slate_size": inst.effective_slate_size,
        "steps": steps,
        "seconds": secs,
        "env_steps_per_s": batch * steps / secs,
        "product_steps_per_s": batch * products * steps / secs,
        "device": str(params.device),
        "machine": machine(),
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput", description=__doc__)
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    s = what.add_parser("sim", help="simulator throughput (product-periods per second)")
    s.add_argument("--products", type=positive_int, default=1000)
    s.add_argument("--segments", type=positive_int, default=100)
    s.add_argument("--batch", type=positive_int, default=64)
    s.add_argument("--slate-size", type=positive_int, default=5)
    s.add_argument("--steps", type=positive_int, default=200, help="timed periods")
    s.add_argument("--device", type=device_type, default="cpu")
    s.add_argument(
        "--threads", type=threads_int, default=None, help="torch CPU threads (default: torch's)"
    )
    add_force_flag(s, "measure anyway")
    add_json_flag(s)
    s.set_defaults(func=run_sim)


def run_sim(args: argparse.Namespace) -> int:
    check_size(
        estimate(args.steps, args.segments, args.products, episodes=args.batch, batch=args.batch),
        force=args.force,
        what="to measure the simulator",
        way_out="use fewer --products, --segments, --batch or --steps",
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    out = bench_sim(
        args.products, args.segments, args.batch, args.slate_size, args.steps, args.device
    )
    if args.json:
        emit_json(out)
    else:
        log(
            f"simulator: N={out['products']} M={out['segments']} K={out['slate_size']} B={out['batch']} "
            f"on {out['device']} ({out['machine']['cores']} cores): "
            f"{out['product_steps_per_s'] / 1e6:.1f} M product-periods/s, "
            f"{out['env_steps_per_s']:,.0f} env-periods/s"
        )
    return 0
