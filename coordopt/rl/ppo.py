"""Multi-timescale multi-agent PPO with recurrent memory -- the whole training loop.

Read top to bottom: set-up, (optional) warm start, then every iteration

1. roll out the agents for one full episode in ``num_envs`` batched environments;
2. GAE on the scaled firm profit (or departmental rewards for independent learners; with
   credit per decision also on every product's and segment's share of it,
   :mod:`coordopt.rl.credit`), with values de-normalised by running return statistics;
3. PPO epochs over recurrent minibatches (a time chunk of ``seq_len`` periods x a group of
   environments, memories re-run from the stored chunk-start states); each learner --
   replenishment actor, recommendation actor, critic(s) -- has its own optimiser, step-size
   schedule, update period and epoch count (:mod:`coordopt.rl.schedules`), plus the
   annealed imitation penalty toward the expert;
4. hand the iteration to the run's lifecycle (:mod:`coordopt.rl.lifecycle`: log, evaluate
   against the baselines with common random numbers, keep the best agents, checkpoint
   atomically -- :mod:`coordopt.rl.checkpoint`: everything needed to resume bit-for-bit, in a
   format that holds tensors and plain data only, with the run's identity -- and stop at the
   time budget).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.guards import resolve_device
from coordopt.instance import Instance
from coordopt.policies import Policy
from coordopt.rl import checkpoint as ckpt
from coordopt.rl.allocator import keep_freed_memory
from coordopt.rl.checkpoint import RunState
from coordopt.rl.config import TrainConfig
from coordopt.rl.credit import STREAM_OF
from coordopt.rl.features import Context, build_context
from coordopt.rl.lifecycle import Lifecycle, RunResult, Schedule
from coordopt.rl.networks import AGENTS, Agents, build_agents, choose_scorer
from coordopt.rl.policy import AgentPolicy, choose_decoding
from coordopt.rl.rollout import Rollout, collect_rollout, gae
from coordopt.rl.rundir import AGENTS_RUN, BEST, CONFIG, SUMMARY, CheckpointError, RunDir
from coordopt.rl.schedules import LinearAnneal, Timescale, make_timescales
from coordopt.rl.warmstart import (
    TRIAL,
    TeacherTrial,
    behaviour_clone,
    choose_expert,
    expert_name,
    make_guide,
    pretrain_critic,
)
from coordopt.simulator import SimParams

Tensor = torch.Tensor
LOG_RATIO_LIMIT = 20.0
"""Bound on ``|log pi_new - log pi_old|`` in the PPO ratio (``e^20`` ~ 5e8, far outside any
clip range, finite in float32 after multiplying a normalised advantage)."""


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the iteration and the learner."""


@dataclass(kw_only=True)
class TrainResult(RunResult):
    """What an agents' run produced (also written to ``OUT/summary.json``); ``env_steps``
    count the warm start's rollouts, ``seconds`` its time (``--resume`` continues a run the
    time budget stopped)."""

    baselines: dict[str, float]
    warm_start: dict[str, Any] | None
    instance: dict[str, str] = field(default_factory=dict)
    """The instance trained on: its name and content hash (the run's identity)."""
    init: dict[str, Any] | None = None
    """The run ``--init`` took the agents from (its directory, instance and config)."""
    decoding: dict[str, Any] | None = None
    """Greedy or sampled actions for ``best.pt``, chosen by a paired evaluation
    (:func:`~coordopt.rl.policy.choose_decoding`; None without evaluations)."""

    @classmethod
    def read(cls, out: Path) -> TrainResult:
        """The result a finished run wrote to ``OUT/summary.json`` (every field checked by the
        run-directory reader)."""
        run_dir = RunDir(Path(out), AGENTS_RUN)
        try:
            return cls(**{**run_dir.read_summary(), "out_dir": run_dir.path})
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (delete it and resume to rewrite it)") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(
                f"{run_dir.file(SUMMARY)}: not a training summary ({exc}); delete it and resume "
                "to rewrite it"
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
    """PPO epochs over recurrent minibatches; returns the mean losses, KLs, entropies and
    clipped fractions.

    Joint credit: one ratio per env-period (the product of its decisions' ratios) with the
    firm's (or the agent's own critic's) advantage. Credit per decision: one ratio per
    product's order and per segment's slate with its stream's advantage; an env-period's loss
    and KL are the sums of its decisions', the clipped fraction counts decisions.
    """
    horizon, batch = ro.horizon, ro.batch_size
    chunks = [(s, min(s + config.seq_len, horizon)) for s in range(0, horizon, config.seq_len)]
    labelled = 0 if ro.expert_bins is None or bc_coef <= 0 else int(ro.expert_bins.shape[1])
    decisions = config.per_decision
    # the advantages that score each actor: its stream's per decision (coordopt.rl.credit),
    # else its own critic's (independent learners) or the firm's
    streams = STREAM_OF if decisions else {a: a if a in advantages else "firm" for a in AGENTS}
    adv_of = {a: advantages[streams[a]] for a in AGENTS}
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
                new = (out.decision_logp if decisions else out.logp)[a]
                old = (ro.decision_logp if decisions else ro.logp)[a][s:e, idx]
                adv = adv_of[a][s:e, idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
                # a log-prob summed over N products or M slates can move by hundreds in one
                # step: clamped, exp never overflows (beyond the bound the sample is far outside
                # the trust region and contributes no gradient, as a clipped one)
                log_ratio = (new - old).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
                ratio = log_ratio.exp()
                surrogate = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - config.clip, 1 + config.clip)
                )
                kl = (ratio - 1) - log_ratio
                if decisions:  # an env-period's: the sum of its decisions' (coordopt.rl.credit)
                    surrogate, kl = surrogate.sum(-1), kl.sum(-1)
                pg = surrogate.mean()
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
                    stats.setdefault(f"kl_{a}", []).append(float(kl.mean()))
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


# --------------------------------------------------------------------------- warm start


def _warm_start(
    agents: Agents,
    ctx: Context,
    config: TrainConfig,
    gamma: float,
    run: RunState,
    expert: Policy | None,
    trial: TeacherTrial | None = None,
) -> None:
    """Clone ``expert`` (DAgger; after ``--init``, from the loaded agents) unless ``None``,
    then fit the critic to the agents' returns on this instance.

    The budget (``run.env_steps``) counts these simulations, and the teacher ``trial``'s that
    chose the expert, if any (each candidate's episodes); the report goes to
    ``run.warm_start`` (cloning, with the trial) or ``run.init`` (the critic's fit after
    ``--init``).
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
        report.trial = trial.as_dict() if trial is not None else None
        report.env_steps += run.env_steps
        if trial is not None:
            report.env_steps += len(trial.ranked) * trial.episodes * ctx.params.horizon
        run.env_steps, run.warm_start = report.env_steps, report.as_dict()
    elif run.init is not None:
        run.init["critic_loss"] = critic_loss


# --------------------------------------------------------------------------- train


def guide_spec(
    config: TrainConfig,
    instance: Instance,
    saved: ckpt.Checkpoint | None,
    trial: TeacherTrial | None,
) -> str:
    """The spec of the teacher whose decisions the agents see (``teacher_inputs``): a resumed
    run's own, else the teacher trial's winner, else the teacher ``--warm-start`` names."""
    if saved is not None and saved.meta.get("guide"):
        return str(saved.meta["guide"])
    text = trial.winner if trial is not None else expert_name(config.warm_start, instance)
    if text == TRIAL:
        raise ValueError(
            "--teacher-inputs with an expert given in code needs --warm-start naming its spec "
            "(the agents' teacher is rebuilt from it wherever they act)"
        )
    return text


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
    ``expert`` overrides the policy named by ``config.warm_start`` (tests pass a cheap one);
    otherwise ``--warm-start auto`` runs its teacher trial where the exact DP does not fit
    (:func:`~coordopt.rl.warmstart.choose_expert`; again on a resume that still imitates,
    to the same choice), within the time budget.
    """
    started = time.perf_counter()  # --time-budget counts from here
    run_dir = RunDir(Path(out_dir), AGENTS_RUN)
    if resume and init is not None:
        raise ValueError(
            "--init and --resume are mutually exclusive (--resume keeps the run's own agents)"
        )
    scorer = choose_scorer(config.scorer, instance.n_products, instance.n_segments)
    config = dataclasses.replace(config, scorer=scorer)  # saved runs name the concrete scorer
    saved = ckpt.open_run(run_dir.path, instance, config, resume)
    if saved is not None and saved.meta["iteration"] >= config.iterations and run_dir.finished:
        print(
            f"coordopt train: {run_dir.path} finished at iteration {saved.meta['iteration']} "
            f"(--iterations {config.iterations}); nothing to do, its files are unchanged",
            file=sys.stderr,
        )
        return TrainResult.read(run_dir.path)
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
    run = RunState.start(config, list(agents.value_streams), device)
    if saved is not None:
        saved.restore(agents, optimisers, run)
    elif init is not None:
        run.init = ckpt.init_agents(agents, Path(init), config)
    identity = ckpt.instance_identity(instance)
    run_dir.write_json(CONFIG, config.to_dict())
    # after --init, cloning goes on from the loaded agents on this instance's states unless
    # --bc-rounds 0 (fine-tuning toward the teacher where the catalog differs)
    cloning = (
        saved is None and config.warm_start != "none" and (init is None or config.bc_rounds > 0)
    )
    trial, given = None, expert
    if config.warm_start != "none" and expert is None and (cloning or bc_weight(run.iteration) > 0):
        expert, trial = choose_expert(
            config.warm_start,
            params,
            config.expert_reoptimize,
            config.teacher_episodes,
            config.eval_seed,
        )
    # the plan the agents observe comes from a bid-price expert's own solve where there is one
    # (or the teacher trial's bid-price candidate's)
    plan_source = trial.plan_teacher if trial is not None else None
    guide = None
    if config.teacher_inputs:
        agents.teacher = guide_spec(config, instance, saved, trial)
        # an expert given in code need not be the spec's policy: then built from the spec
        chosen = expert if given is None else None
        guide = make_guide(agents.teacher, params, chosen, config.expert_reoptimize)
    ctx = build_context(
        params,
        config.order_bins,
        plan=config.plan_inputs,
        teacher=expert if plan_source is None else plan_source,
        guide=guide,
    )
    if trial is not None:
        trial.plan_teacher = plan_source = None  # a loser is not kept for training
    life = Lifecycle(
        run_dir,
        run,
        Schedule.of(config),
        params,
        greedy=lambda: AgentPolicy(agents, params, deterministic=True, ctx=ctx),
        save=lambda name: run_dir.save(
            name, ckpt.contents(config, agents, optimisers, run, identity)
        ),
        started=started,
        baselines=("siloed", "null"),
        closing_evaluations=2,  # choose_decoding: best.pt greedy and sampled
    )

    if saved is None:
        began = time.perf_counter()
        if cloning or init is not None:
            _warm_start(agents, ctx, config, gamma, run, expert if cloning else None, trial)
        run.seconds = time.perf_counter() - began
        life.begin()

    for it in life.iterations(f"train {instance.name}", config.tensorboard, progress):
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
            adv, ret = gae(ro.rewards[name], values, gamma, config.gae_lambda)  # its own stream
            _check_finite(adv, f"the advantages of critic {name}", it)
            norm.update(ret)
            advantages[name], targets[name] = adv, norm.normalise(ret)
        # 3. PPO epochs
        stats = ppo_update(
            agents, ctx, config, ro, advantages, targets, timescales, optimisers, coef, it, run.rng
        )

        # 4. log, evaluate, checkpoint, stop at the time budget
        dt = time.perf_counter() - t0
        row = {
            "train_profit": float(ro.profit.mean()),
            "train_return": float(ro.rewards["firm"].sum(0).mean()),
            **{f"lr_{n}": v for n, v in lrs.items()},
            "bc_coef": coef,
            **stats,
        }
        life.record(row, ro.horizon * ro.batch_size, dt)
    decoding = None
    if config.eval_every > 0 and run_dir.holds(BEST):
        decoding = choose_decoding(
            run_dir.path, params, ctx, config.eval_episodes, config.eval_seed
        )
        print(
            f"coordopt train: best.pt acts {'greedily' if decoding['deterministic'] else 'sampled'}"
            f" (sampled minus greedy {decoding['sampled_minus_greedy']:+,.0f} ± "
            f"{decoding['ci95']:,.0f}, paired on the evaluation stream)",
            file=sys.stderr,
        )
    return life.finish(
        TrainResult,
        baselines=run.baselines,
        warm_start=run.warm_start,
        instance=identity,
        init=run.init,
        decoding=decoding,
    )
