"""Throughput of the native TorchRL environment against the PettingZoo adapter (random actions).

Prints environment steps per second (one environment-period = one step) for
:class:`coordopt.torchrl_env.CoordoptEnv` at batch size ``B`` and for
:class:`coordopt.pettingzoo_env.CoordoptParallelEnv` (one environment per step), on the same
instance. A figure, never a test: record ``uptime`` alongside.

    python benchmarks/bench_torchrl_env.py small --batch 64 --episodes 4
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torchrl.envs.utils import step_mdp

from coordopt.pettingzoo_env import CoordoptParallelEnv
from coordopt.torchrl_env import CoordoptEnv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instance", nargs="?", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--episodes", type=int, default=4, help="batched episodes per measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = CoordoptEnv(args.instance, batch_size=args.batch)
    env.set_seed(0)
    horizon, b = env.instance.horizon, args.batch
    n, m, k = env.params.n_products, env.params.n_segments, max(env.params.slate_size, 1)
    gen = torch.Generator().manual_seed(0)
    # uniform random actions drawn directly (the spec's own rand() is a Python loop over the batch)
    t0 = time.perf_counter()
    for _ in range(args.episodes):
        td = env.reset()
        for _ in range(horizon):
            td["replenishment", "action"] = (
                torch.rand(b, 1, n, generator=gen) * (env.order_caps + 1)
            ).long()
            td["recommendation", "action"] = torch.randint(0, n + 1, (b, 1, m, k), generator=gen)
            td = step_mdp(env.step(td))
    native = args.episodes * horizon * b / (time.perf_counter() - t0)

    pz = CoordoptParallelEnv(args.instance)
    t0 = time.perf_counter()
    steps = 0
    for ep in range(args.episodes):
        pz.reset(seed=ep)
        while pz.agents:
            pz.step({a: pz.action_space(a).sample() for a in pz.agents})
            steps += 1
    single = steps / (time.perf_counter() - t0)
    print(
        f"{args.instance}: TorchRL CoordoptEnv B={args.batch}: {native:,.0f} env-steps/s; "
        f"PettingZoo adapter: {single:,.0f} env-steps/s ({native / single:.1f}x); "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
