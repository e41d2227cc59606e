"""``coordopt train``: multi-timescale multi-agent PPO, warm-started from an expert.

Writes ``OUT/checkpoint.pt`` (atomically, every ``--checkpoint-every`` iterations),
``OUT/final.pt``, ``OUT/best.pt`` (the agents of the best greedy evaluation, the warm-started
agents before PPO included; the policy the run directory stands for), ``OUT/log.csv`` (one
row per iteration), ``OUT/config.json`` and ``OUT/summary.json``. Environment steps count
the warm start's simulations (the teacher trial's too). ``best.pt`` acts greedily or
sampled, as a paired evaluation of both at the end of training chose (``summary.json`` ->
``decoding``). ``--resume`` continues an interrupted run to the same result as an
uninterrupted one (the instance, by content hash, and the settings must match the run's).
``--init RUN_DIR`` fine-tunes the agents of another run, e.g. trained on a smaller catalog.
The trained agents are a policy: ``coordopt evaluate INSTANCE --policy OUT``.
"""

from __future__ import annotations

import argparse
from typing import Any

from coordopt.commands.common import (
    FlagRule,
    add_instance_arg,
    add_json_flag,
    applies_with,
    command,
    declare_flag_rules,
    emit_json,
    guard_size,
    log,
    policy_work,
    table,
)
from coordopt.commands.train_peer import DEFAULT, add_peer_arguments, peer_flags_given, run_peer
from coordopt.guards import add_force_flag, claim_out, total_workload
from coordopt.instance import Instance, load_instance
from coordopt.rl.config import TrainConfig, add_config_arguments, overrides_from_args, size_defaults
from coordopt.rl.rundir import BEST

EXPERT_FLAGS = (
    "bc_rounds",
    "bc_beta",
    "bc_label_envs",
    "bc_epochs",
    "bc_minibatch_envs",
    "bc_entropy",
    "bc_coef",
    "bc_anneal_iters",
    "expert_label_envs",
    "expert_reoptimize",
)
"""The settings of cloning and imitating an expert: they mean nothing without one."""

FLAG_RULES = [
    FlagRule(
        name,
        lambda args: vars(args).get("warm_start", "auto") != "none",
        "with a --warm-start expert",
        lambda args: "with --warm-start none",
    )
    for name in EXPERT_FLAGS
] + applies_with("warm_start", {"teacher_episodes": ["auto"]}, default="auto")
"""Training flags that apply only with others (refused, not ignored, without them)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the RL agents (multi-timescale PPO, warm start)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_instance_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoints, logs)")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (saved config is kept; "
        "--iterations, --eval-*, --checkpoint-every, --tensorboard, --device, --threads may "
        "change; another instance or other settings are refused)",
    )
    start.add_argument(
        "--init",
        metavar="RUN_DIR",
        help="start from the agents of an earlier run (any instance) and fine-tune them: "
        "network weights only (architecture flags default to the run's), fresh optimisers; "
        "with a --warm-start expert, DAgger continues from them on this catalog's states "
        "(--bc-rounds 0: no cloning, only the imitation penalty; --warm-start none: neither)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p, "train into a non-empty --out folder (a folder holding a run needs --resume)")
    add_json_flag(p)
    add_config_arguments(p)
    add_peer_arguments(p)
    declare_flag_rules(p, FLAG_RULES)
    p.set_defaults(func=run)


def training_work(config: TrainConfig, inst: Instance) -> dict[str, Any]:
    """The workload of a training run for :func:`coordopt.guards.estimate`: PPO, the
    expert's labels (its entry's declared work over the labelled episodes: one fluid solve per
    labelled period with an MPC expert, the catalog solve of a bid-price expert; with the
    teacher trial of ``--warm-start auto``, every candidate it tries, over its episodes and
    the labelled ones), the catalog solve of the plan the agents observe and the greedy
    evaluations (and the trial's)."""
    from coordopt.rl.networks import choose_scorer
    from coordopt.rl.warmstart import TRIAL, envs_per_part, expert_name, trial_candidates

    cloned = config.bc_rounds * min(config.bc_label_envs, config.bc_envs)
    labelled = cloned + config.expert_label_envs * min(config.iterations, config.bc_anneal_iters)
    expert = expert_name(config.warm_start, inst)
    scorer = choose_scorer(config.scorer, inst.n_products, inst.n_segments)
    cloning = expert != "none"
    tried = (
        trial_candidates(inst, config.teacher_episodes, config.expert_reoptimize)[0]
        if expert == TRIAL
        else []
    )
    teachers = tried or ([expert] if cloning else [])
    episodes = config.teacher_episodes if tried else 0
    teacher = total_workload(policy_work(t, labelled + episodes, inst.horizon) for t in teachers)
    trial_episodes = episodes * len(tried)
    period = inst.n_segments * inst.n_products  # cells of one environment-period
    # the largest backward pass: a PPO minibatch (a time chunk) or a part of a cloning group
    ppo_graph = config.minibatch_envs * min(config.seq_len, inst.horizon) * period
    part = envs_per_part(inst.horizon, inst.n_segments, inst.n_products)
    clone_graph = min(config.bc_minibatch_envs or config.bc_envs, part) * inst.horizon * period
    return {
        "train_iterations": max(1, config.iterations),
        "train_envs": config.num_envs,
        "stored_envs": cloned if cloning else 0,
        "graph_cells": max(ppo_graph, clone_graph if cloning else 0),
        "hidden": config.hidden_size,
        "factorised": scorer == "factorised",
        **teacher,
        "catalog_solve": bool(teacher.get("catalog_solve")) or config.plan_inputs,
        "episodes": trial_episodes
        + (
            config.eval_episodes * (config.iterations // max(1, config.eval_every) + 1)
            if config.eval_every
            else 0
        ),
        "batch": config.eval_episodes,
    }


@command
def run(args: argparse.Namespace) -> int:
    from coordopt.rl.checkpoint import init_config, resume_config
    from coordopt.rl.ppo import train
    from coordopt.rl.warmstart import expert_name

    # locked for the whole run; --resume continues the run its --out holds
    claim_out(args.out, folder=True, force=args.force, reuse=args.resume)
    if args.algorithm != DEFAULT or peer_flags_given(args):
        return run_peer(args)
    inst = load_instance(args.instance)
    flags = overrides_from_args(args)
    if args.resume:
        config = resume_config(args.out, flags)
    elif args.init:
        config = init_config(args.init, {**size_defaults(inst, flags), **flags})
    else:
        config = TrainConfig(**{**size_defaults(inst, flags), **flags})
    guard_size(
        args,
        inst,
        what=f"to train on {inst.name}",
        way_out="use fewer --iterations, --num-envs or --minibatch-envs, a --time-budget, a "
        "smaller --hidden-size, "
        "--scorer factorised, --warm-start siloed or none, or a smaller instance",
        budget_seconds=60 * config.time_budget,
        **training_work(config, inst),
    )
    sees = ", agents see the teacher's decisions" if config.teacher_inputs else ""
    log(
        f"training on {inst.summary()}; warm start: {expert_name(config.warm_start, inst)}, "
        f"timescales: {config.timescales}, information: {config.information}{sees}, "
        f"out: {args.out}"
    )
    # a diverged run raises TrainingDiverged: coordopt.cli's error boundary reports it
    result = train(
        inst, config, args.out, resume=args.resume, progress=not args.no_progress, init=args.init
    )
    if args.json:
        emit_json(result.as_dict())
        return 0
    rows = [
        ["iterations", result.iterations],
        ["env steps", result.env_steps],
        ["steps / second", float(result.steps_per_second)],
    ]
    for label, ev in (
        ("before PPO", result.initial_eval),
        ("last iteration", result.final_eval),
        (f"best ({BEST})", result.best_eval),
    ):
        if ev:
            rows.append([f"RL profit, greedy, {label}", float(ev["mean"])])
            rows.append(["  95% half-width", float(ev["ci95"])])
    if "vs_initial" in result.best_eval:  # what PPO added to the clone, paired by episode
        rows.append(["best minus before PPO (paired)", float(result.best_eval["vs_initial"])])
        rows.append(["  95% half-width", float(result.best_eval["vs_initial_ci95"])])
    if result.decoding:  # greedy or sampled for best.pt, paired on the evaluation stream
        rows.append(
            ["best, sampled minus greedy (paired)", result.decoding["sampled_minus_greedy"]]
        )
        rows.append(["  95% half-width", result.decoding["ci95"]])
        rows.append(["the run acts", "greedily" if result.decoding["deterministic"] else "sampled"])
    for name, value in result.baselines.items():
        rows.append([f"{name} profit", float(value)])
    print(table(["quantity", "value"], rows))
    print(
        f"run directory: {result.out_dir}  (evaluate with: coordopt evaluate {args.instance} "
        f"--policy {result.out_dir})"
    )
    return 0
