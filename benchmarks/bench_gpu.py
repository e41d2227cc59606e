"""Agent training on a GPU: checks that it runs on CUDA and measures env-periods per second.

One prepared script for a machine with a CUDA GPU (nothing else in coordopt needs one). In
order, each part reported on its own so that one failure does not hide the rest:

1. the device, torch and CUDA versions;
2. the same agents on the same observations give the same scores, order logits and values on
   the CPU and on the GPU (float32, tolerance 1e-4 relative);
3. ``train()`` runs two iterations on ``tiny`` on the GPU with finite losses;
4. rollouts alone and whole training iterations (rollout + PPO update, the learning rates at
   zero as in ``bench_rl.py``) on ``large`` for several numbers of environments;
5. ``train()`` itself on ``large`` for a few iterations (its logged steps per second).

Run::

    python benchmarks/bench_gpu.py --out results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from bench_rl import Iterations, bench_rollout  # the script's own folder

from coordopt.instance import load_instance
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import build_context, observe
from coordopt.rl.networks import build_agents
from coordopt.rl.ppo import train
from coordopt.simulator import SimParams, empty_slates, reset

REPORT: dict[str, Any] = {}


def part(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a part, record its result or its error under ``name``, and go on."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                REPORT[name] = fn(*args, **kwargs)
            except Exception as exc:  # reported; the next part still runs
                traceback.print_exc()
                REPORT[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[{name}] {time.perf_counter() - began:.1f} s: {REPORT[name]}", flush=True)

        return run

    return wrap


DEVICE = "cuda"


def config(**kw: Any) -> TrainConfig:
    base = {"warm_start": "none", "eval_every": 0, "tensorboard": False, "device": DEVICE}
    return TrainConfig(**(base | kw))


@part("device")
def device() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
    }


@part("cpu_vs_cuda")
def cpu_vs_cuda(instance: str) -> dict[str, float]:
    """Largest relative difference between CPU and GPU outputs of the same agents."""
    cfg = config(num_envs=4)
    out = {}
    results = []
    torch.manual_seed(0)
    agents = build_agents(cfg, SimParams.from_instance(load_instance(instance)))
    for dev in ("cpu", DEVICE):
        params = SimParams.from_instance(load_instance(instance), torch.device(dev))
        ctx = build_context(params, cfg.order_bins)
        net = agents.to(dev)
        state = reset(params, 4)
        obs = observe(ctx, state, empty_slates(params, 4), net.information)
        obs = obs.map(lambda x: x.unsqueeze(0))
        hidden = net.initial_hidden(4, params.device)
        with torch.no_grad():
            logits = net.replenishment(obs, ctx, hidden["replenishment"])[0]
            scores = net.recommendation(obs, ctx, hidden["recommendation"])[0]
            values = net.values(obs, ctx)["firm"]
        results.append([x.double().cpu() for x in (logits, scores, values)])
    for name, a, b in zip(("order_logits", "slate_scores", "values"), *results, strict=True):
        finite = torch.isfinite(a) & torch.isfinite(b)
        scale = a[finite].abs().max().clamp(min=1.0)
        out[name] = float((a[finite] - b[finite]).abs().max() / scale)
        if out[name] > 1e-4:
            raise AssertionError(f"{name}: CPU and CUDA differ by {out[name]:.2e} (relative)")
    return out


@part("train_tiny")
def train_tiny() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        res = train(load_instance("tiny"), config(iterations=2, num_envs=16), tmp, progress=False)
    losses = {k: v for k, v in res.history[-1].items() if "loss" in k}
    if not all(torch.isfinite(torch.tensor(float(v))) for v in losses.values()):
        raise AssertionError(f"non-finite losses: {losses}")
    return {"iterations": len(res.history), "steps_per_second": res.steps_per_second} | losses


@part("throughput")
def throughput(instance: str, envs: list[int], iterations: int) -> dict[str, Any]:
    rows = {}
    for b in envs:
        cfg = config(num_envs=b, minibatch_envs=min(b, 64), scorer="factorised")
        rollout = bench_rollout(cfg, instance, repeats=2)
        its = Iterations(cfg, instance)
        its.run()  # warm-up (kernels, allocator)
        rates = [its.timed()[0] for _ in range(iterations)]
        peak = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rows[b] = {
            "rollout_env_periods_per_s": round(rollout, 1),
            "training_env_periods_per_s": [round(r, 1) for r in rates],
            "peak_gpu_gib": round(peak, 2),
        }
        print(f"  {instance}, {b} envs: {rows[b]}", flush=True)
        del its
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    return rows


@part("train_large")
def train_large(instance: str, envs: int, iterations: int) -> dict[str, Any]:
    cfg = config(iterations=iterations, num_envs=envs, minibatch_envs=min(envs, 64))
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        res = train(load_instance(instance), cfg, tmp, progress=False)
        wall = time.perf_counter() - began
    return {
        "num_envs": envs,
        "iterations": len(res.history),
        "steps_per_second": round(res.steps_per_second, 1),
        "per_iteration": [round(r["steps_per_second"], 1) for r in res.history],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instance", default="large")
    ap.add_argument("--envs", default="8,64,256,1024", help="environment counts to time")
    ap.add_argument("--iterations", type=int, default=2, help="timed iterations per count")
    ap.add_argument("--train-envs", type=int, default=256)
    ap.add_argument("--train-iterations", type=int, default=4)
    ap.add_argument("--out", default=None, help="JSON file for the report")
    ap.add_argument("--cpu", action="store_true", help="rehearse the script on the CPU")
    args = ap.parse_args()
    global DEVICE
    if args.cpu:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    else:
        device()
    cpu_vs_cuda("small")
    train_tiny()
    throughput(args.instance, [int(b) for b in args.envs.split(",")], args.iterations)
    train_large(args.instance, args.train_envs, args.train_iterations)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(REPORT, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
