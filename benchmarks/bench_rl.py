"""Throughput of RL training: env-periods per second of rollouts and of full iterations, the
cost of each part of an iteration, and its arithmetic floor.

Prints figures, decides nothing. Timings are noisy on shared machines: the load average is
printed with every figure, CPU time (``process_time``, all threads) beside wall time. Re-measure::

    .venv/bin/python benchmarks/bench_rl.py --instance small --iterations 5 --num-envs 64
    .venv/bin/python benchmarks/bench_rl.py --instance large --num-envs 8 --iterations 2 \\
        --repeats 2 --breakdown
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_rl.py --instance large \\
        --num-envs 8 --iterations 2 --threads 2

Iterations alternate in cost (the slow replenishment agent updates every other one), so
``--iterations 2`` covers both. With more threads than free cores, OpenMP's default active
wait burns CPU time spinning: on a shared machine pass ``OMP_WAIT_POLICY=PASSIVE``.

``--breakdown`` times every part of one PPO minibatch (a chunk of ``seq_len`` periods x
``num_envs`` environments) forward and forward+backward, counts the matmul floating-point
operations of one whole training iteration (``torch.utils.flop_counter``), and divides them by
the matmul rate the cores reach on the networks' shapes: the floor of one env-period.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from coordopt.instance import load_instance
from coordopt.rl import distributions as D
from coordopt.rl.allocator import keep_freed_memory
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context, observe
from coordopt.rl.networks import build_agents
from coordopt.rl.ppo import _optimisers, ppo_update, resolve_device, train
from coordopt.rl.rollout import collect_rollout, gae
from coordopt.rl.schedules import make_timescales
from coordopt.simulator import SimParams, empty_slates, reset


def load() -> str:
    """The 1-minute load average (other processes share the cores)."""
    return f"load {os.getloadavg()[0]:.1f}"


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that wall time covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` over ``repeats`` calls (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def matmul_rate(repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of float32 matmuls: a square one and the networks' shape (many rows x 64 x 64)."""
    out = {}
    for name, (m, k, n) in {"1024^3": (1024, 1024, 1024), "64000x64x64": (64000, 64, 64)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        wall, _ = timed(functools.partial(torch.matmul, a, b), repeats)
        out[name] = 2 * m * k * n / wall / 1e9
    return out


def bench_rollout(config: TrainConfig, instance: str, repeats: int = 3) -> float:
    """Env-periods per second of sampling rollouts alone (no learning)."""
    params = SimParams.from_instance(load_instance(instance), resolve_device(config.device))
    ctx = build_context(params, config.order_bins)
    agents = build_agents(config, params).to(params.device)
    gen = torch.Generator(device=params.device).manual_seed(0)
    wall, _ = timed(
        lambda: (collect_rollout(agents, ctx, config.num_envs, gen, gen), sync(params.device)),
        repeats,
    )
    return config.num_envs * params.horizon / wall


class Iterations:
    """Training iterations (rollout, GAE, PPO update) of fresh agents, run by hand so that each
    can be timed in CPU as well as wall seconds and its matmuls counted.

    The learning rates are zero: every operation of the update runs (forward, backward,
    clipping, Adam), but the policy stays put, so the cost is that of training while a fresh
    network's PPO ratios on a large catalog cannot blow up and stop the measurement.
    """

    def __init__(self, config: TrainConfig, instance: str) -> None:
        self.config = config
        params = SimParams.from_instance(load_instance(instance), resolve_device(config.device))
        self.ctx = build_context(params, config.order_bins)
        torch.manual_seed(config.seed)
        self.agents = build_agents(config, params).to(params.device)
        self.optimisers = _optimisers(self.agents)
        for opt in self.optimisers.values():
            for group in opt.param_groups:
                group["lr"] = 0.0
        self.timescales = make_timescales(config)
        self.gen = torch.Generator(device=params.device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.done = 0

    def run(self) -> int:
        """One iteration; returns its env-periods."""
        ro = collect_rollout(self.agents, self.ctx, self.config.num_envs, self.gen, self.gen)
        # every critic stream's (the firm's, and per product and segment with credit per decision)
        lam = self.config.gae_lambda
        est = {name: gae(ro.rewards[name], v, 1.0, lam) for name, v in ro.values.items()}
        ppo_update(
            self.agents,
            self.ctx,
            self.config,
            ro,
            {name: adv for name, (adv, _) in est.items()},
            {name: ret for name, (_, ret) in est.items()},
            self.timescales,
            self.optimisers,
            0.0,
            self.done,
            self.rng,
        )
        self.done += 1
        return ro.horizon * ro.batch_size

    def flops(self) -> float:
        """Matmul FLOPs per env-period of the next iteration."""
        with FlopCounterMode(display=False) as counter:
            periods = self.run()
        return counter.get_total_flops() / periods

    def timed(self) -> tuple[float, float]:
        """Env-periods per wall second and per CPU second (all threads) of the next iteration."""
        w, c = time.perf_counter(), time.process_time()
        periods = self.run()
        sync(self.ctx.params.device)
        return periods / (time.perf_counter() - w), periods / (time.process_time() - c)


def breakdown(config: TrainConfig, instance: str, repeats: int) -> None:
    """Time every part of one PPO minibatch and print the arithmetic floor of an env-period."""
    params = SimParams.from_instance(load_instance(instance))
    ctx = build_context(params, config.order_bins)
    torch.manual_seed(0)
    agents = build_agents(config, params)
    gen = torch.Generator().manual_seed(0)
    ro = collect_rollout(agents, ctx, config.num_envs, gen, gen)
    t = min(config.seq_len, ro.horizon)
    periods = t * ro.batch_size
    obs = ro.obs.map(lambda x: x[:t])
    hidden = {a: h[0] for a, h in ro.hidden.items()}
    bins, slates = ro.order_bins[:t], ro.slates[:t]
    with torch.no_grad():
        scores, stop, _ = agents.recommendation(obs, ctx, hidden["recommendation"])
    state = reset(params, ro.batch_size)
    last = empty_slates(params, ro.batch_size)

    def backward(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            agents.zero_grad(set_to_none=True)
            out = fn()
            sum(x.float().sum() for x in (out if isinstance(out, tuple) else (out,))).backward()

        return run

    def slate_lp() -> tuple[torch.Tensor, torch.Tensor]:
        s = scores.detach().requires_grad_()
        st = stop.detach().requires_grad_() if stop is not None else None
        return D.slate_log_prob(s, st, slates)

    parts: dict[str, Callable[[], Any]] = {
        "features (observe)": lambda: observe(ctx, state, last, agents.information),
        "replenishment actor": lambda: agents.replenishment(obs, ctx, hidden["replenishment"])[0],
        "recommendation actor (scores)": lambda: agents.recommendation(
            obs, ctx, hidden["recommendation"]
        )[0],
        "Plackett-Luce log-prob + entropy": slate_lp,
        "critic": lambda: agents.values(obs, ctx)["firm"],
        "both actors + log-probs (PPO evaluate)": lambda: tuple(
            agents.evaluate(obs, ctx, hidden, bins, slates).logp.values()
        ),
    }
    print(f"breakdown, one minibatch of {t} periods x {ro.batch_size} envs ({load()}):")
    print(f"  {'part':40s} {'fwd ms':>7s} {'fwd+bwd ms':>10s} {'MFLOP':>7s}  (per env-period)")
    for name, fn in parts.items():
        per = ro.batch_size if name.startswith("features") else periods
        fwd, _ = timed(functools.partial(_no_grad, fn), repeats)
        both, count = "", ""
        if not name.startswith("features"):
            both = f"{timed(backward(fn), repeats)[0] * 1e3 / per:10.2f}"
            with FlopCounterMode(display=False) as counter:
                backward(fn)()
            count = f"{counter.get_total_flops() / per / 1e6:7.1f}"
        print(f"  {name:40s} {fwd * 1e3 / per:7.2f} {both:>10s} {count:>7s}")
    sample, _ = timed(
        lambda: D.sample_slates(scores, stop, max(params.slate_size, 1), gen), repeats
    )
    print(f"  {'Plackett-Luce sampling (Gumbel top-k)':40s} {sample * 1e3 / periods:7.2f}")
    its = Iterations(config, instance)
    flops = [its.flops() for _ in range(2)]  # the slow agent updates every other iteration
    print(
        "matmul FLOPs per env-period of training (rollout + update), iterations 0 and 1: "
        + ", ".join(f"{f / 1e6:,.0f}" for f in flops)
        + f" MFLOP (mean {sum(flops) / len(flops) / 1e6:,.0f})"
    )
    rates = matmul_rate()
    print(
        "matmul rate of this machine (float32, "
        f"{torch.get_num_threads()} threads, {load()}): "
        + ", ".join(f"{k}: {v:.1f} GFLOP/s" for k, v in rates.items())
    )


def _no_grad(fn: Callable[[], Any]) -> Any:
    with torch.no_grad():
        return fn()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instance", default="small")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scorer", default="auto", choices=["auto", "additive", "factorised"])
    ap.add_argument("--credit", default="auto", choices=["auto", "joint", "decision"])
    ap.add_argument("--repeats", type=int, default=1, help="training measurements to take")
    ap.add_argument("--breakdown", action="store_true", help="time the parts; FLOP floor")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as training does
    cfg = TrainConfig(
        iterations=args.iterations,
        num_envs=args.num_envs,
        device=args.device,
        warm_start="none",
        eval_every=0,
        tensorboard=False,
        threads=args.threads,
        scorer=args.scorer,
        credit=args.credit,
    )
    print(
        f"{args.instance}, scorer {args.scorer}, credit {args.credit}, {args.threads} thread(s), "
        f"{load()}"
    )
    if args.breakdown:
        breakdown(cfg, args.instance, repeats=3)
    rollout_sps = bench_rollout(cfg, args.instance)
    print(f"rollout only, {args.num_envs} envs: {rollout_sps:,.1f} env-periods/s ({load()})")
    its = Iterations(cfg, args.instance)
    its.run()  # warm-up
    for _ in range(args.repeats):
        rates = [its.timed() for _ in range(args.iterations)]
        print(
            f"training iterations by hand, {args.num_envs} envs: "
            + ", ".join(f"{w:.1f} (CPU time: {c:.1f})" for w, c in rates)
            + f" env-periods/s ({load()})"
        )
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            res = train(load_instance(args.instance), cfg, tmp, progress=False)
        per_iter = ", ".join(f"{row['steps_per_second']:.1f}" for row in res.history)
        print(
            f"training (rollout + PPO update), {args.num_envs} envs, {args.iterations} iterations: "
            f"{res.steps_per_second:,.1f} env-periods/s (per iteration: {per_iter}; {load()})"
        )


if __name__ == "__main__":
    main()
