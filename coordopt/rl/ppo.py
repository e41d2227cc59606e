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
4. log (:mod:`coordopt.rl.runlog`: CSV, TensorBoard if installed, tqdm, steps per
   second), evaluate against the baselines with common random numbers, checkpoint
   atomically (:mod:`coordopt.rl.checkpoint`: everything needed to resume bit-for-bit, in a
   format that holds tensors and plain data only, with the run's identity).
"""

from __future__ import annotations

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

from coordopt.evaluation import evaluate
from coordopt.guards import resolve_device
from coordopt.instance import Instance
from coordopt.io import atomic_write_text
from coordopt.policies import Policy
from coordopt.rl import checkpoint as ckpt
from coordopt.rl.agents import AGENTS, AgentPolicy, Agents, build_agents, choose_scorer
from coordopt.rl.allocator import keep_freed_memory
from coordopt.rl.checkpoint import RunState
from coordopt.rl.config import TrainConfig
from coordopt.rl.features import Context, build_context
from coordopt.rl.rollout import Rollout, collect_rollout, gae
from coordopt.rl.runlog import TrainLog
from coordopt.rl.schedules import LinearAnneal, Timescale, make_timescales
from coordopt.rl.warmstart import (
    behaviour_clone,
    critic_stream,
    make_expert,
    pretrain_critic,
)
from coordopt.simulator import SimParams

Tensor = torch.Tensor
SUMMARY = "summary.json"
LOG_RATIO_LIMIT = 20.0
"""Bound on ``|log pi_new - log pi_old|`` in the PPO ratio (``e^20`` ~ 5e8, far outside any
clip range, finite in float32 after multiplying a normalised advantage)."""


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
    instance: dict[str, str] = field(default_factory=dict)
    """The instance trained on: its name and content hash (the run's identity)."""
    init: dict[str, Any] | None = None
    """The run ``--init`` took the agents from (its directory, instance and config)."""
    stop: str = "iterations"
    """Why this session of the run ended: ``iterations`` (all of ``--iterations`` done) or
    ``time_budget`` (``--time-budget`` ran out first: the number of iterations then depends
    on the machine's speed, not on the seed; ``--resume`` continues)."""

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
            "instance": self.instance,
            "init": self.init,
            "stop": self.stop,
        }

    @classmethod
    def read(cls, out: Path) -> TrainResult:
        """The result a finished run wrote to ``OUT/summary.json`` (every field checked by the
        run-directory reader)."""
        from coordopt.rl.rundir import AGENTS_RUN, AGENTS_SUMMARY, CheckpointError, read_json

        try:
            return cls(**{**read_json(out, SUMMARY, AGENTS_SUMMARY, AGENTS_RUN), "out_dir": out})
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (delete it and resume to rewrite it)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(
                f"{out / SUMMARY}: not a training summary ({exc}); delete it and resume to "
                "rewrite it"
            ) from None


# --------------------------------------------------------------------------- set-up helpers


def _optimisers(agents: Agents) -> dict[str, torch.optim.Optimizer]:
    return {
        "replenishment": torch.optim.Adam(agents.replenishment.parameters(), eps=1e-5),
        "recommendation": torch.optim.Adam(agents.recommendation.parameters(), eps=1e-5),
        "critic": torch.optim.Adam(agents.critics.parameters(), eps=1e-5),
    }


def _learner_params(agents: Agents, name: str) -> list[torch.nn.Parameter]:
    module = agents.critics if name == "critic" else agents.actor(name)
    return list(module.parameters())


def _check_finite(value: Tensor, what: str, iteration: int) -> None:
    if not bool(torch.isfinite(value).all()):
        raise _diverged(f"{what} is NaN/inf", iteration)


def _diverged(what: str, iteration: int) -> TrainingDiverged:
    return TrainingDiverged(
        f"iteration {iteration}: {what}. Training stopped; lower the learning rates "
        "(--lr-fast/--lr-slow/--lr-critic) or --max-grad-norm, or resume from the last "
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
            obs = ro.obs.period(slice(s, e)).over_time(idx)
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
                # a log-prob summed over N products or M slates can move by hundreds in one
                # step: clamped, exp never overflows (beyond the bound the sample is far outside
                # the trust region and contributes no gradient, as a clipped one)
                log_ratio = (new - old).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
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
            # a learner whose loss or gradient is NaN/inf skips this minibatch (its weights and
            # Adam state untouched); the fraction skipped is reported, all skipped is an error
            finite = {n: bool(torch.isfinite(loss)) for n, loss in losses.items()}
            for opt in optimisers.values():
                opt.zero_grad(set_to_none=True)
            if any(finite.values()):
                torch.stack([loss for n, loss in losses.items() if finite[n]]).sum().backward()
            for name in losses:
                if finite[name]:
                    norm = torch.nn.utils.clip_grad_norm_(
                        _learner_params(agents, name), config.max_grad_norm
                    )
                    finite[name] = bool(torch.isfinite(norm))
                if finite[name]:
                    optimisers[name].step()
                stats.setdefault(f"nonfinite_{name}", []).append(float(not finite[name]))
    for name in ("replenishment", "recommendation", "critic"):
        skipped = stats.get(f"nonfinite_{name}", [])
        if skipped and min(skipped) == 1.0:
            raise _diverged(
                f"the {name} loss or gradient was NaN/inf in every minibatch", iteration
            )
        if skipped and max(skipped) > 0:
            print(
                f"iteration {iteration}: skipped {int(sum(skipped))} of {len(skipped)} "
                f"{name} minibatches with a NaN/inf loss or gradient",
                file=sys.stderr,
            )
    return {k: float(np.mean(v)) for k, v in stats.items()}


# --------------------------------------------------------------------------- evaluation


def _evaluate_agents(
    agents: Agents, ctx: Context, config: TrainConfig, iteration: int, env_steps: int
) -> dict[str, float]:
    """Greedy agents on the fixed evaluation stream (``iteration`` -1: before any PPO update);
    ``seconds``: how long it took."""
    ev = evaluate(
        ctx.params,
        AgentPolicy(agents, ctx.params, deterministic=True, ctx=ctx),
        config.eval_episodes,
        seed=config.eval_seed,
    )
    agents.train()
    return {
        "mean": ev.mean,
        "ci95": ev.ci95,
        "iteration": iteration,
        "env_steps": env_steps,
        "seconds": ev.seconds,
    }


def _is_best(run: RunState, ev: dict[str, float]) -> bool:
    """Record ``ev`` as the best evaluation when it beats every earlier one.

    Model selection on the training evaluation stream (``eval_seed``); report the chosen
    agents on another stream, or the selection biases the figure upward.
    """
    if run.best_eval and ev["mean"] <= run.best_eval["mean"]:
        return False
    run.best_eval = dict(ev)
    return True


def _warm_start(
    agents: Agents,
    ctx: Context,
    config: TrainConfig,
    gamma: float,
    run: RunState,
    expert: Policy | None,
) -> None:
    """Clone ``expert`` (DAgger; after ``--init``, from the loaded agents) unless ``None``,
    then fit the critic to the agents' returns on this instance.

    The budget (``run.env_steps``) counts these simulations; the report goes to
    ``run.warm_start`` (cloning) or ``run.init`` (the critic's fit after ``--init``).
    """
    report = None
    if expert is not None:
        report = behaviour_clone(agents, ctx, expert, config, run.env_gen, run.pol_gen)
        print(
            f"warm start from {report.expert}: imitation NLL "
            + ", ".join(
                f"{a} {report.nll_before[a]:.3f} -> {report.nll_after[a]:.3f}" for a in AGENTS
            ),
            file=sys.stderr,
        )
    critic_loss = pretrain_critic(
        agents, ctx, config, gamma, run.normalisers, run.env_gen, run.pol_gen
    )
    run.env_steps = config.bc_envs * ctx.params.horizon  # the critic's rollout
    if report is not None:
        report.critic_loss = critic_loss
        report.env_steps += run.env_steps
        run.env_steps, run.warm_start = report.env_steps, report.as_dict()
    elif run.init is not None:
        run.init["critic_loss"] = critic_loss


# --------------------------------------------------------------------------- train


def train(
    instance: Instance,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    expert: Policy | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Train the agents on ``instance``; write checkpoints, ``log.csv`` and ``summary.json``.

    ``resume`` continues the run in ``out_dir`` from its checkpoint when its identity (the
    instance's content hash and the configuration outside
    :data:`~coordopt.rl.checkpoint.RESUMABLE`) matches, else refuses naming what differs; the
    result equals that of an uninterrupted run with the same seed, and a finished run is
    returned as it is, its files untouched. ``init`` starts from the agents' weights of
    another run directory (any instance; the networks are size-agnostic); with a warm-start
    expert and ``bc_rounds > 0`` cloning continues from them on this instance's states; the
    optimisers and counters start fresh and the critic is refitted to this instance.
    ``expert`` overrides the policy named by ``config.warm_start`` (tests pass a cheap one).
    """
    started = time.perf_counter()  # --time-budget counts from here
    out = Path(out_dir)
    if resume and init is not None:
        raise ValueError(
            "--init and --resume are mutually exclusive (--resume keeps the run's own agents)"
        )
    scorer = choose_scorer(config.scorer, instance.n_products, instance.n_segments)
    config = dataclasses.replace(config, scorer=scorer)  # saved runs name the concrete scorer
    saved = ckpt.open_run(out, instance, config, resume)
    if saved is not None and saved.meta["iteration"] >= config.iterations and _finished(out):
        print(
            f"coordopt train: {out} finished at iteration {saved.meta['iteration']} "
            f"(--iterations {config.iterations}); nothing to do, its files are unchanged",
            file=sys.stderr,
        )
        return TrainResult.read(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    keep_freed_memory()  # no page faults on every large activation (coordopt.rl.allocator)
    torch.manual_seed(config.seed)
    params = SimParams.from_instance(instance, device)
    gamma = params.discount if config.gamma < 0 else config.gamma
    agents = build_agents(config).to(device)
    optimisers = _optimisers(agents)
    timescales = make_timescales(config)
    bc_weight = LinearAnneal(
        config.bc_coef if config.warm_start != "none" else 0.0, config.bc_anneal_iters
    )
    run = RunState.start(config, list(agents.critics), device)
    if saved is not None:
        saved.restore(agents, optimisers, run)
    elif init is not None:
        run.init = ckpt.init_agents(agents, Path(init), config)
    identity = ckpt.instance_identity(instance)

    def save(path: Path) -> None:
        ckpt.save(path, config, agents, optimisers, run, identity)

    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
    # after --init, cloning goes on from the loaded agents on this instance's states unless
    # --bc-rounds 0 (fine-tuning toward the teacher where the catalog differs)
    cloning = (
        saved is None and config.warm_start != "none" and (init is None or config.bc_rounds > 0)
    )
    if config.warm_start != "none" and expert is None and (cloning or bc_weight(run.iteration) > 0):
        expert = make_expert(config.warm_start, params, config.expert_reoptimize)
    # the plan the agents observe comes from a bid-price expert's own solve where there is one
    ctx = build_context(params, config.order_bins, plan=config.plan_inputs, teacher=expert)

    if saved is None:
        began = time.perf_counter()
        if cloning or init is not None:
            _warm_start(agents, ctx, config, gamma, run, expert if cloning else None)
        run.seconds = time.perf_counter() - began
        if config.eval_every > 0:
            for name in ("siloed", "null"):
                run.baselines[name] = evaluate(
                    params, name, config.eval_episodes, seed=config.eval_seed
                ).mean
            run.initial_eval = _evaluate_agents(agents, ctx, config, -1, run.env_steps)
            if _is_best(run, run.initial_eval):
                save(out / ckpt.BEST)
        save(out / ckpt.CHECKPOINT)

    log = TrainLog(
        out,
        run.iteration,
        config.iterations,
        f"train {instance.name}",
        config.tensorboard,
        progress,
    )
    history: list[dict[str, float]] = []
    final_eval: dict[str, float] = {}
    eval_seconds = run.initial_eval.get("seconds", 0.0)
    stop = "iterations"
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
        # the budget leaves room for the last iteration's evaluation too
        evaluating = dt + (eval_seconds if config.eval_every > 0 else 0.0)
        if run.iteration < config.iterations and _out_of_time(config, started, evaluating):
            stop = "time_budget"
        last = run.iteration >= config.iterations or stop == "time_budget"
        if config.eval_every > 0 and (run.iteration % config.eval_every == 0 or last):
            final_eval = _evaluate_agents(agents, ctx, config, it, run.env_steps)
            eval_seconds = final_eval["seconds"]
            row.update(eval_profit=final_eval["mean"], eval_ci95=final_eval["ci95"])
            if run.baselines.get("siloed"):
                row["gap_vs_siloed"] = (final_eval["mean"] - run.baselines["siloed"]) / abs(
                    run.baselines["siloed"]
                )
            if _is_best(run, final_eval):
                save(out / ckpt.BEST)
        log.write(row)
        history.append(row)
        if run.iteration % config.checkpoint_every == 0 or last:
            save(out / ckpt.CHECKPOINT)
        if last:
            break
    log.close()
    save(out / ckpt.FINAL)
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
        instance=identity,
        init=run.init,
        stop=stop,
    )
    atomic_write_text(out / SUMMARY, json.dumps(result.as_dict(), indent=2, default=float))
    return result


def _out_of_time(config: TrainConfig, started: float, iteration_seconds: float) -> bool:
    """Whether another iteration and its evaluation (``iteration_seconds``, as long as the
    last ones) would overrun ``--time-budget``."""
    budget = 60.0 * config.time_budget
    if budget <= 0 or time.perf_counter() - started + iteration_seconds <= budget:
        return False
    print(
        f"coordopt train: the time budget of {config.time_budget:g} minutes leaves less than one "
        f"more iteration and its evaluation ({iteration_seconds:.0f} s); stopping after this "
        "one. Continue with --resume --time-budget MINUTES",
        file=sys.stderr,
    )
    return True


def _finished(out: Path) -> bool:
    return (out / ckpt.FINAL).is_file() and (out / SUMMARY).is_file()
