"""Peak memory of each phase of a training run at catalog scale (Linux).

Runs ``coordopt.rl.ppo.train`` with the instance's size defaults, a short warm start and a
few PPO iterations, and around every call of the phases below resets the process's peak
resident set (``/proc/self/clear_refs``) and reads it back (``VmHWM``): the teacher's build,
the rollouts (DAgger rounds, the critic's fit, PPO), every cloning step, the critic's fit and
every PPO update. One line per call on stderr; a JSON summary (each phase's largest peak) on
stdout. Freed memory stays in the process (coordopt keeps it, see ``coordopt.rl.allocator``),
so ``before`` grows; the peak of a phase is what it adds on top.

Run::

    python benchmarks/bench_memory.py syn10k.npz --bc-rounds 2 --out results/mem10k
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordopt.instance import load_instance
from coordopt.rl import ppo, warmstart
from coordopt.rl.config import TrainConfig, size_defaults


def _gb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measured(peaks: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its peak resident set reported under ``label`` (kept in ``peaks``)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before, began = _gb("VmRSS"), time.perf_counter()
        _reset_peak()
        out = fn(*args, **kwargs)
        peak = _gb("VmHWM")
        peaks[label] = max(peaks.get(label, 0.0), peak)
        print(
            f"{label:24s} before {before:6.2f} GB  peak {peak:6.2f} GB  "
            f"after {_gb('VmRSS'):6.2f} GB  {time.perf_counter() - began:7.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return out

    return wrapper


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instance", help="bundled name or instance file (.toml / .npz)")
    ap.add_argument("--bc-rounds", type=int, default=2)
    ap.add_argument("--bc-epochs", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--out", type=Path, help="the run's folder (default: a temporary one)")
    args = ap.parse_args(argv)
    peaks: dict[str, float] = {}
    for module, name, label in [
        (ppo, "make_expert", "teacher"),
        (warmstart, "collect_rollout", "rollout (warm start)"),
        (warmstart, "imitation_nll", "cloning step"),
        (ppo, "pretrain_critic", "critic fit"),
        (ppo, "collect_rollout", "rollout (PPO)"),
        (ppo, "ppo_update", "PPO update"),
    ]:
        setattr(module, name, measured(peaks, label, getattr(module, name)))
    inst = load_instance(args.instance)
    config = TrainConfig(
        **{
            **size_defaults(inst),
            "iterations": args.iterations,
            "bc_rounds": args.bc_rounds,
            "bc_epochs": args.bc_epochs,
            "critic_pretrain_epochs": 1,
            "eval_every": 0,
            "threads": 1,
            "tensorboard": False,
        }
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ppo.train(inst, config, args.out or Path(tmp) / "run", progress=False)
    # the peak since the last phase's reset: the run's own peak is the largest phase's
    summary = {
        "instance": inst.name,
        "size": [inst.horizon, inst.n_segments, inst.n_products],
        "bc_rounds": args.bc_rounds,
        "iterations": args.iterations,
        "seconds": time.perf_counter() - began,
        "peak_gb": max(peaks.values()),
        "phase_peak_gb": peaks,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
