"""Throughput of RL training: environment steps per second of rollouts and of full iterations.

Prints figures, decides nothing. Timings are noisy on shared machines; re-measure with::

    .venv/bin/python benchmarks/bench_rl.py --instance small --iterations 5 --num-envs 64
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from coordopt.instance import load_instance
from coordopt.rl.agents import build_agents
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context
from coordopt.rl.ppo import resolve_device, train
from coordopt.rl.rollout import collect_rollout
from coordopt.simulator import SimParams


def bench_rollout(instance: str, num_envs: int, device: str, repeats: int = 3) -> float:
    """Env steps per second of sampling rollouts alone (no learning)."""
    cfg = TrainConfig(num_envs=num_envs, device=device)
    params = SimParams.from_instance(load_instance(instance), resolve_device(device))
    ctx = build_context(params, cfg.order_bins)
    agents = build_agents(cfg).to(params.device)
    gen = torch.Generator(device=params.device).manual_seed(0)
    collect_rollout(agents, ctx, num_envs, gen, gen)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        collect_rollout(agents, ctx, num_envs, gen, gen)
    return repeats * num_envs * params.horizon / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instance", default="small")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rollout_sps = bench_rollout(args.instance, args.num_envs, args.device)
    print(f"{args.instance}: rollout only, {args.num_envs} envs: {rollout_sps:,.0f} env steps/s")
    cfg = TrainConfig(
        iterations=args.iterations,
        num_envs=args.num_envs,
        device=args.device,
        warm_start="none",
        eval_every=0,
        tensorboard=False,
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train(load_instance(args.instance), cfg, tmp, progress=False)
    print(
        f"{args.instance}: training (rollout + PPO update), {args.num_envs} envs, "
        f"{args.iterations} iterations: {res.steps_per_second:,.0f} env steps/s"
    )


if __name__ == "__main__":
    main()
