"""Multi-timescale multi-agent PPO with recurrent memory -- the whole training loop.

Read top to bottom: set-up, (optional) warm start, then every iteration

1. roll out the agents for one full episode in ``num_envs`` batched environments;
2. GAE on the scaled firm profit (or departmental rewards for independent learners),
   with values de-normalised by running return statistics;
3. PPO epochs over recurrent minibatches (a time chunk of ``seq_len`` periods x a group of
   environments, memories re-run from the stored chunk-start states); each learner --
   replenishment actor, recommendation actor, critic(s) -- has its own optimiser, step-size
   schedule, update period and epoch count (:mod:`coordopt.rl.schedules`), plus the
   annealed imitation penalty toward the expert;
4. log (CSV, TensorBoard if installed, tqdm), evaluate against the baselines with common
   random numbers, checkpoint atomically (everything needed to resume bit-for-bit).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from coordopt.evaluation import evaluate
from coordopt.instance import Instance
from coordopt.io import atomic_write
from coordopt.policies import Policy
from coordopt.rl.agents import AGENTS, AgentPolicy, Agents, build_agents, choose_scorer
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import Context, Observation, build_context
from coordopt.rl.rollout import Rollout, RunningMeanStd, collect_rollout, gae
from coordopt.rl.schedules import LinearAnneal, Timescale, make_timescales
from coordopt.rl.warmstart import (
    WarmStartReport,
    behaviour_clone,
    critic_stream,
    make_expert,
    pretrain_critic,
)
from coordopt.simulator import SimParams

Tensor = torch.Tensor
CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
BEST = "best.pt"
LOG = "log.csv"
COLUMNS = (
    "iteration",
    "env_steps",
    "seconds",
    "steps_per_second",
    "train_profit",
    "train_return",
    "lr_critic",
    "lr_replenishment",
    "lr_recommendation",
    "bc_coef",
    "pg_loss_replenishment",
    "pg_loss_recommendation",
    "value_loss",
    "kl_replenishment",
    "kl_recommendation",
    "entropy_replenishment",
    "entropy_recommendation",
    "bc_nll_replenishment",
    "bc_nll_recommendation",
    "clipfrac_replenishment",
    "clipfrac_recommendation",
    "eval_profit",
    "eval_ci95",
    "siloed_profit",
    "null_profit",
    "gap_vs_siloed",
)


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the iteration and the learner."""


@dataclass
class TrainResult:
    """What a run produced (also written to ``OUT/summary.json``)."""

    out_dir: Path
    iterations: int
    env_steps: int  # simulated periods x environments, the warm start's rollouts included
    seconds: float  # training time, the warm start included, evaluations excluded
    steps_per_second: float
    final_eval: dict[str, float]
    baselines: dict[str, float]
    warm_start: dict[str, Any] | None
    history: list[dict[str, float]] = field(default_factory=list)
    initial_eval: dict[str, float] = field(default_factory=dict)
    best_eval: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "iterations": self.iterations,
            "env_steps": self.env_steps,
            "seconds": self.seconds,
            "steps_per_second": self.steps_per_second,
            "final_eval": self.final_eval,
            "initial_eval": self.initial_eval,
            "best_eval": self.best_eval,
            "baselines": self.baselines,
            "warm_start": self.warm_start,
        }


# --------------------------------------------------------------------------- set-up helpers


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:i]``; a clear error when CUDA is asked for but absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"--device {name} requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use --device cpu"
        )
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"--device must be cpu or cuda[:index], got {name!r}")
    return torch.device(name)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _optimisers(agents: Agents) -> dict[str, torch.optim.Optimizer]:
    return {
        "replenishment": torch.optim.Adam(agents.replenishment.parameters(), eps=1e-5),
        "recommendation": torch.optim.Adam(agents.recommendation.parameters(), eps=1e-5),
        "critic": torch.optim.Adam(agents.critics.parameters(), eps=1e-5),
    }


def _learner_params(agents: Agents, name: str) -> list[torch.nn.Parameter]:
    module = agents.critics if name == "critic" else agents.actor(name)
    return list(module.parameters())


def _obs_chunk(obs: Observation, s: int, e: int, idx: Tensor) -> Observation:
    return Observation(
        obs.ops[s:e, idx], obs.mkt[s:e, idx], obs.critic[s:e, idx], obs.glob[s:e, idx]
    )


def _check_finite(value: Tensor, what: str, iteration: int) -> None:
    if not bool(torch.isfinite(value).all()):
        raise TrainingDiverged(
            f"iteration {iteration}: {what} is NaN/inf. Training stopped; lower the learning "
            "rates (--lr-fast/--lr-slow/--lr-critic) or --max-grad-norm, or resume from the last "
            "checkpoint with different settings."
        )


# --------------------------------------------------------------------------- the PPO update


def ppo_update(
    agents: Agents,
    ctx: Context,
    config: TrainConfig,
    ro: Rollout,
    advantages: dict[str, Tensor],
    value_targets: dict[str, Tensor],
    timescales: dict[str, Timescale],
    optimisers: dict[str, torch.optim.Optimizer],
    bc_coef: float,
    iteration: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """PPO epochs over recurrent minibatches; returns the mean losses, KLs and entropies."""
    horizon, batch = ro.horizon, ro.batch_size
    chunks = [(s, min(s + config.seq_len, horizon)) for s in range(0, horizon, config.seq_len)]
    labelled = 0 if ro.expert_bins is None or bc_coef <= 0 else int(ro.expert_bins.shape[1])
    adv_of = {a: advantages[a if a in advantages else "firm"] for a in AGENTS}
    max_epochs = max(ts.epochs for ts in timescales.values())
    stats: dict[str, list[float]] = {}
    for epoch in range(max_epochs):
        active = [n for n, ts in timescales.items() if ts.active(iteration) and epoch < ts.epochs]
        if not active:
            break
        perm = torch.as_tensor(rng.permutation(batch), device=ctx.params.device)
        groups = [
            perm[i : i + config.minibatch_envs] for i in range(0, batch, config.minibatch_envs)
        ]
        order = rng.permutation(len(chunks) * len(groups))
        for job in order:
            (s, e), idx = chunks[job // len(groups)], groups[job % len(groups)]
            obs = _obs_chunk(ro.obs, s, e, idx)
            out = agents.evaluate(
                obs,
                ctx,
                {a: ro.hidden[a][s, idx] for a in AGENTS},
                ro.order_bins[s:e, idx],
                ro.slates[s:e, idx],
                actors=tuple(a for a in AGENTS if a in active),
            )
            nll: dict[str, Tensor] = {}
            if labelled:
                sel = idx < labelled
                assert ro.expert_bins is not None and ro.expert_slates is not None
                ex_idx = idx[sel]
                if len(ex_idx):
                    nll = out.imitation_nll(
                        ro.expert_bins[s:e, ex_idx], ro.expert_slates[s:e, ex_idx], rows=sel
                    )
            losses: dict[str, Tensor] = {}
            for a in AGENTS:
                if a not in active:
                    continue
                new = out.logp[a]
                old = ro.logp[a][s:e, idx]
                adv = adv_of[a][s:e, idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
                log_ratio = new - old
                ratio = log_ratio.exp()
                pg = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - config.clip, 1 + config.clip)
                ).mean()
                entropy = out.entropy[a].mean()
                coef = (
                    config.ent_replenishment if a == "replenishment" else config.ent_recommendation
                )
                loss = pg - coef * entropy
                if a in nll:
                    bc = nll[a].mean()
                    loss = loss + bc_coef * bc
                    stats.setdefault(f"bc_nll_{a}", []).append(float(bc.detach()))
                losses[a] = loss
                with torch.no_grad():
                    stats.setdefault(f"pg_loss_{a}", []).append(float(pg))
                    stats.setdefault(f"kl_{a}", []).append(float(((ratio - 1) - log_ratio).mean()))
                    stats.setdefault(f"entropy_{a}", []).append(float(entropy))
                    stats.setdefault(f"clipfrac_{a}", []).append(
                        float(((ratio - 1).abs() > config.clip).float().mean())
                    )
            if "critic" in active:
                values = agents.values(obs, ctx)
                vloss = torch.stack(
                    [0.5 * ((values[n] - value_targets[n][s:e, idx]) ** 2).mean() for n in values]
                ).sum()
                losses["critic"] = vloss
                stats.setdefault("value_loss", []).append(float(vloss.detach()))
            for name, loss in losses.items():
                _check_finite(loss, f"the {name} loss", iteration)
            for opt in optimisers.values():
                opt.zero_grad(set_to_none=True)
            torch.stack(list(losses.values())).sum().backward()
            for name in losses:
                norm = torch.nn.utils.clip_grad_norm_(
                    _learner_params(agents, name), config.max_grad_norm
                )
                _check_finite(norm, f"the {name} gradient norm", iteration)
                optimisers[name].step()
    return {k: float(np.mean(v)) for k, v in stats.items()}


# --------------------------------------------------------------------------- state and checkpoints


@dataclass
class RunState:
    """Everything that changes during training (what a checkpoint holds)."""

    iteration: int
    env_steps: int
    seconds: float
    normalisers: dict[str, RunningMeanStd]
    env_gen: torch.Generator
    pol_gen: torch.Generator
    rng: np.random.Generator
    baselines: dict[str, float]
    warm_start: dict[str, Any] | None
    initial_eval: dict[str, float] = field(default_factory=dict)
    best_eval: dict[str, float] = field(default_factory=dict)


def checkpoint_blob(
    config: TrainConfig,
    agents: Agents,
    optimisers: dict[str, torch.optim.Optimizer],
    run: RunState,
    instance: Instance,
) -> dict[str, Any]:
    return {
        "format": "coordopt-rl/1",
        "config": config.to_dict(),
        "instance": instance.name,
        "agents": agents.state_dict(),
        "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
        "iteration": run.iteration,
        "env_steps": run.env_steps,
        "seconds": run.seconds,
        "normalisers": {k: v.state_dict() for k, v in run.normalisers.items()},
        "rng": {
            "torch": torch.get_rng_state(),
            "env": run.env_gen.get_state(),
            "policy": run.pol_gen.get_state(),
            "numpy": run.rng.bit_generator.state,
        },
        "baselines": run.baselines,
        "warm_start": run.warm_start,
        "initial_eval": run.initial_eval,
        "best_eval": run.best_eval,
    }


def _restore(
    blob: dict[str, Any],
    agents: Agents,
    optimisers: dict[str, torch.optim.Optimizer],
    run: RunState,
) -> None:
    agents.load_state_dict(blob["agents"])
    for k, o in optimisers.items():
        o.load_state_dict(blob["optimisers"][k])
    for k, v in blob["normalisers"].items():
        run.normalisers[k].load_state_dict(v)
    torch.set_rng_state(blob["rng"]["torch"])
    run.env_gen.set_state(blob["rng"]["env"])
    run.pol_gen.set_state(blob["rng"]["policy"])
    run.rng.bit_generator.state = blob["rng"]["numpy"]
    run.iteration, run.env_steps, run.seconds = (
        blob["iteration"],
        blob["env_steps"],
        blob["seconds"],
    )
    run.baselines, run.warm_start = blob["baselines"], blob["warm_start"]
    run.initial_eval, run.best_eval = blob.get("initial_eval", {}), blob.get("best_eval", {})


class CsvLog:
    """The per-iteration CSV (on resume, rows at or after the resumed iteration are dropped)."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if start > 0 and path.is_file():
            with path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) < start]
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=COLUMNS).writerow(
                {
                    k: (
                        ""
                        if (v := row.get(k)) is None or (isinstance(v, float) and math.isnan(v))
                        else v
                    )
                    for k in COLUMNS
                }
            )


def _tensorboard(out: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "coordopt train: tensorboard is not installed; logging to CSV only "
            "(pip install tensorboard, or pass --no-tensorboard to silence this)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(str(out / "tb"))


def _evaluate_agents(
    agents: Agents, params: SimParams, config: TrainConfig, iteration: int, env_steps: int
) -> dict[str, float]:
    """Greedy agents on the fixed evaluation stream (``iteration`` -1: before any PPO update)."""
    ev = evaluate(
        params,
        AgentPolicy(agents, params, deterministic=True),
        config.eval_episodes,
        seed=config.eval_seed,
    )
    agents.train()
    return {"mean": ev.mean, "ci95": ev.ci95, "iteration": iteration, "env_steps": env_steps}


def _keep_best(
    run: RunState,
    ev: dict[str, float],
    config: TrainConfig,
    agents: Agents,
    optimisers: dict[str, torch.optim.Optimizer],
    instance: Instance,
    out: Path,
) -> None:
    """Save ``OUT/best.pt`` when the greedy evaluation beats every earlier one.

    Model selection on the training evaluation stream (``eval_seed``); report the chosen
    agents on another stream, or the selection biases the figure upward.
    """
    if run.best_eval and ev["mean"] <= run.best_eval["mean"]:
        return
    run.best_eval = dict(ev)
    atomic_save(checkpoint_blob(config, agents, optimisers, run, instance), out / BEST)


# --------------------------------------------------------------------------- train


def train(
    instance: Instance,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    expert: Policy | None = None,
) -> TrainResult:
    """Train the agents on ``instance``; write checkpoints, ``log.csv`` and ``summary.json``.

    ``resume`` continues the run in ``out_dir`` from its checkpoint (the saved config is used,
    with ``config.iterations`` and the logging fields taken from ``config``); the result
    equals that of an uninterrupted run with the same seed. ``expert`` overrides the policy
    named by ``config.warm_start`` (tests pass a cheap one).
    """
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    blob = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (run without --resume first)")
        blob = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict(blob["config"])
        keep = {
            "iterations",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "tensorboard",
            "device",
            "threads",
        }
        config = TrainConfig(**{**saved.to_dict(), **{k: getattr(config, k) for k in keep}})
    elif ckpt_path.is_file():
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    params = SimParams.from_instance(instance, device)
    scorer = choose_scorer(config.scorer, params.n_products, params.n_segments)
    config = dataclasses.replace(config, scorer=scorer)  # saved runs name the concrete scorer
    ctx = build_context(params, config.order_bins)
    gamma = params.discount if config.gamma < 0 else config.gamma
    agents = build_agents(config).to(device)
    optimisers = _optimisers(agents)
    timescales = make_timescales(config)
    bc_weight = LinearAnneal(
        config.bc_coef if config.warm_start != "none" else 0.0, config.bc_anneal_iters
    )
    run = RunState(
        iteration=0,
        env_steps=0,
        seconds=0.0,
        normalisers={name: RunningMeanStd() for name in agents.critics},
        env_gen=torch.Generator(device=device),
        pol_gen=torch.Generator(device=device),
        rng=np.random.default_rng(config.seed),
        baselines={},
        warm_start=None,
    )
    run.env_gen.manual_seed(config.seed * 2 + 1)
    run.pol_gen.manual_seed(config.seed * 2 + 2)
    if blob is not None:
        _restore(blob, agents, optimisers, run)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if (
        config.warm_start != "none"
        and expert is None
        and (blob is None or bc_weight(run.iteration) > 0)
    ):
        expert = make_expert(config.warm_start, params)

    if blob is None:
        if config.warm_start != "none":
            assert expert is not None
            began = time.perf_counter()
            report: WarmStartReport = behaviour_clone(
                agents, ctx, expert, config, run.env_gen, run.pol_gen
            )
            report.critic_loss = pretrain_critic(
                agents, ctx, config, gamma, run.normalisers, run.env_gen, run.pol_gen
            )
            report.env_steps += config.bc_envs * params.horizon  # the critic's rollout
            # the budget (steps and seconds) counts the warm start's simulations and fitting
            run.env_steps, run.seconds = report.env_steps, time.perf_counter() - began
            run.warm_start = report.as_dict()
            print(
                f"warm start from {report.expert}: imitation NLL "
                + ", ".join(
                    f"{a} {report.nll_before[a]:.3f} -> {report.nll_after[a]:.3f}" for a in AGENTS
                ),
                file=sys.stderr,
            )
        if config.eval_every > 0:
            for name in ("siloed", "null"):
                run.baselines[name] = evaluate(
                    params, name, config.eval_episodes, seed=config.eval_seed
                ).mean
            run.initial_eval = _evaluate_agents(agents, params, config, -1, run.env_steps)
            _keep_best(run, run.initial_eval, config, agents, optimisers, instance, out)
        atomic_save(checkpoint_blob(config, agents, optimisers, run, instance), ckpt_path)

    log = CsvLog(out / LOG, run.iteration)
    writer = _tensorboard(out, config.tensorboard)
    history: list[dict[str, float]] = []
    final_eval: dict[str, float] = {}
    bar = tqdm(
        total=config.iterations,
        initial=min(run.iteration, config.iterations),
        desc=f"train {instance.name}",
        disable=not progress,
        file=sys.stderr,
        unit="it",
    )
    while run.iteration < config.iterations:
        it = run.iteration
        t0 = time.perf_counter()
        lrs = {name: ts.lr(it) for name, ts in timescales.items()}
        for name, opt in optimisers.items():
            for group in opt.param_groups:
                group["lr"] = lrs[name]
        coef = bc_weight(it)

        # 1. rollout
        agents.train()
        ro = collect_rollout(
            agents,
            ctx,
            config.num_envs,
            run.env_gen,
            run.pol_gen,
            expert if coef > 0 else None,
            label_envs=config.expert_label_envs if coef > 0 else 0,
        )
        # 2. advantages and value targets (values de-normalised with the pre-update statistics)
        advantages, targets = {}, {}
        for name, norm in run.normalisers.items():
            values = norm.denormalise(ro.values[name])
            adv, ret = gae(ro.rewards[critic_stream(name)], values, gamma, config.gae_lambda)
            _check_finite(adv, f"the advantages of critic {name}", it)
            norm.update(ret)
            advantages[name], targets[name] = adv, norm.normalise(ret)
        # 3. PPO epochs
        stats = ppo_update(
            agents, ctx, config, ro, advantages, targets, timescales, optimisers, coef, it, run.rng
        )

        # 4. log, evaluate, checkpoint
        steps = ro.horizon * ro.batch_size
        dt = time.perf_counter() - t0
        run.env_steps += steps
        run.seconds += dt
        run.iteration += 1
        row: dict[str, float] = {
            "iteration": it,
            "env_steps": run.env_steps,
            "seconds": round(run.seconds, 3),
            "steps_per_second": steps / max(dt, 1e-9),
            "train_profit": float(ro.profit.mean()),
            "train_return": float(ro.rewards["firm"].sum(0).mean()),
            **{f"lr_{n}": v for n, v in lrs.items()},
            "bc_coef": coef,
            **stats,
            "siloed_profit": run.baselines.get("siloed", math.nan),
            "null_profit": run.baselines.get("null", math.nan),
        }
        last = run.iteration >= config.iterations
        if config.eval_every > 0 and (run.iteration % config.eval_every == 0 or last):
            final_eval = _evaluate_agents(agents, params, config, it, run.env_steps)
            row.update(eval_profit=final_eval["mean"], eval_ci95=final_eval["ci95"])
            if run.baselines.get("siloed"):
                row["gap_vs_siloed"] = (final_eval["mean"] - run.baselines["siloed"]) / abs(
                    run.baselines["siloed"]
                )
            _keep_best(run, final_eval, config, agents, optimisers, instance, out)
        log.write(row)
        history.append(row)
        if writer is not None:
            for k, v in row.items():
                if k != "iteration" and isinstance(v, float) and math.isfinite(v):
                    writer.add_scalar(k, v, it)
        bar.update(1)
        bar.set_postfix(
            profit=f"{row['train_profit']:.1f}",
            sps=f"{row['steps_per_second']:.0f}",
            **({"eval": f"{row['eval_profit']:.1f}"} if "eval_profit" in row else {}),
        )
        if run.iteration % config.checkpoint_every == 0 or last:
            atomic_save(checkpoint_blob(config, agents, optimisers, run, instance), ckpt_path)
    bar.close()
    if writer is not None:
        writer.close()
    blob_final = checkpoint_blob(config, agents, optimisers, run, instance)
    atomic_save(blob_final, out / FINAL)
    result = TrainResult(
        out_dir=out,
        iterations=run.iteration,
        env_steps=run.env_steps,
        seconds=run.seconds,
        steps_per_second=run.env_steps / max(run.seconds, 1e-9),
        final_eval=final_eval,
        baselines=run.baselines,
        warm_start=run.warm_start,
        history=history,
        initial_eval=run.initial_eval,
        best_eval=run.best_eval,
    )
    (out / "summary.json").write_text(json.dumps(result.as_dict(), indent=2, default=float))
    return result
