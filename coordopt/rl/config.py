"""The training configuration: one dataclass whose fields become ``coordopt train`` flags.

Every field carries a one-line attribute docstring; :func:`add_config_arguments` reads them
(with :mod:`ast`) as the ``--help`` text, so the documentation and the flags cannot drift.
Numeric fields declare their allowed range (``ranged``); argparse and :meth:`validate` both
check it, naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from coordopt import introspect
from coordopt.guards import (
    Range,
    device_type,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    threads_int,
    unit_interval,
)
from coordopt.instance import Instance
from coordopt.introspect import add_dataclass_flags, check_fields, ranged
from coordopt.policies import PolicyOptionError, PolicySpec, teachers
from coordopt.rl.rundir import show
from coordopt.sizes import FULL_LP_CELLS, plan_cells
from coordopt.text import clip

WARM_START_WORDS = ("auto", "none")
"""The values of ``--warm-start`` that name no teacher: ``auto`` (the teacher chosen on the
instance, :func:`coordopt.rl.warmstart.expert_name`) and ``none`` (a cold start)."""


def teacher_spec(text: str) -> PolicySpec:
    """The teacher a ``--warm-start`` value names, ``NAME[:KEY=VALUE;...]`` with ``NAME`` one
    of :func:`~coordopt.policies.teachers`, parsed by :meth:`PolicySpec.parse` (never a run
    directory) and its options checked against its entry as ``evaluate --policy`` checks
    them (:meth:`PolicySpec.checked`). Anything else is refused (``ValueError`` saying what
    is allowed; :data:`WARM_START_WORDS` name no teacher and are refused here too)."""
    allowed = "auto, none or a teacher NAME[:KEY=VALUE;...] with NAME one of " + ", ".join(
        teachers()
    )
    shown = show(text, 80)
    try:
        spec = PolicySpec.parse(text, runs=False)
    except ValueError:  # an option that is not KEY=VALUE
        raise ValueError(
            f"must be {allowed}, got {shown} (options are KEY=VALUE, separated by ';')"
        ) from None
    if spec.name not in teachers():
        raise ValueError(f"must be {allowed}, got {shown}")
    try:
        spec.checked({})
    except PolicyOptionError as exc:  # the reason first: a long message may be cut short
        reason = str(exc).removeprefix(f"policy '{spec.label or spec.name}': ")
        raise ValueError(f"{shown}: {clip(reason, 240)}; allowed: {allowed}") from None
    return spec


class WarmStartRule:
    """The rule of ``--warm-start`` (the ``check`` of :attr:`TrainConfig.warm_start`):
    ``auto``, ``none`` or a teacher's spec (:func:`teacher_spec`). As an argparse ``type``
    it refuses a bad value naming the flag; :meth:`problem` checks a value already parsed
    (a config built in code, or a run directory's saved ``config.json``)."""

    __name__ = "spec"
    metavar = "auto|none|NAME[:KEY=VALUE;...]"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a ``--warm-start`` value (None when it is one)."""
        if not isinstance(value, str):
            return f"must be text: auto, none or a teacher's spec, got {show(value, 80)}"
        if value in WARM_START_WORDS:
            return None
        try:
            teacher_spec(value)
        except ValueError as exc:
            return str(exc)
        return None

    def __call__(self, text: str) -> str:
        problem = self.problem(text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text


WARM_START = WarmStartRule()
"""The rule of ``--warm-start``: :class:`WarmStartRule`."""


@dataclass
class TrainConfig:
    """Multi-timescale multi-agent PPO, warm-started from an expert policy."""

    # --- run
    iterations: int = ranged(200, nonneg_int)
    """PPO iterations (each: one full episode in every environment, then updates)."""
    seed: int = ranged(0, seed_int)
    """Seed of every random stream of the run (environments, sampling, minibatches)."""
    device: str = field(default="cpu", metadata={"check": device_type})
    """Torch device: cpu or cuda (cuda must be available)."""
    threads: int = ranged(1, threads_int)
    """CPU threads of torch (0: torch's default); the small batched ops run fastest on one."""
    eval_every: int = ranged(10, nonneg_int)
    """Evaluate the greedy policy against the baselines every this many iterations (0: never)."""
    eval_episodes: int = ranged(64, positive_int)
    """Episodes of each evaluation (common random numbers across policies and iterations)."""
    eval_seed: int = ranged(12345, seed_int)
    """Demand stream of the evaluations (fixed, so curves compare like with like)."""
    time_budget: float = ranged(0.0, nonneg_float)
    """Wall-clock budget in minutes, warm start included (0: none): training stops after the
    iteration that leaves less than one more iteration's time, evaluated and checkpointed;
    --resume (with a new --time-budget) continues it."""
    checkpoint_every: int = ranged(1, positive_int)
    """Write the checkpoint every this many iterations (and always at the end)."""
    tensorboard: bool = True
    """Also log to TensorBoard under OUT/tb when the tensorboard package is installed."""
    # --- agents
    information: Literal["coordinated", "siloed"] = "coordinated"
    """coordinated: stock signals to marketing, recommendation signals to operations; siloed: none."""
    hidden_size: int = ranged(64, positive_int)
    """Width of the embeddings, MLPs and GRU memories."""
    order_bins: int = ranged(32, Range(int, lo=2))
    """Order-quantity bins per product (bin g orders g * step_i units; step_i from demand scale)."""
    allow_short_slates: bool = True
    """Let the recommendation agent stop a slate early (a learned stop item in the PL draw)."""
    scorer: Literal["auto", "factorised", "additive"] = "auto"
    """Slate scores: factorised (segment-memory x product inner product + a pair term; no B x M x N x hidden tensor), additive (an MLP of summed segment, product, pair and memory terms; builds that tensor) or auto (factorised from 1,000 product-segment pairs up, additive below)."""
    plan_inputs: bool = False
    """The agents observe the bid-price teacher's plan (target positions and stock-adjusted
    margins of its initial solve; one catalog solve per instance trained or evaluated on) and
    the gains of its slates at the current stock (one slate search per period)."""
    teacher_inputs: bool = False
    """The agents see their teacher's own decision of every period -- its order bin and its
    slates -- each added to their logits with a learned weight (starting at zero): a residual
    around the teacher that cloning makes exact at any catalog size, which PPO then moves.
    The teacher (the warm start's, without re-optimisation) is recorded in the run and rebuilt
    wherever the agents act."""
    # --- PPO
    num_envs: int = ranged(64, positive_int)
    """Environments simulated in parallel (batch size B of the rollouts)."""
    seq_len: int = ranged(8, positive_int)
    """Length of the recurrent training chunks (memory re-run from stored chunk-start states)."""
    minibatch_envs: int = ranged(16, positive_int)
    """Environments per minibatch (each minibatch is one time chunk of these environments)."""
    gamma: float = ranged(-1.0, Range(float, hi=1.0))
    """Discount of the returns (negative: the instance's discount)."""
    gae_lambda: float = ranged(0.95, unit_interval)
    """GAE lambda."""
    clip: float = ranged(0.2, Range(float, 0.0, 1.0, lo_open=True, hi_open=True))
    """PPO clipping range of the probability ratio."""
    ent_replenishment: float = ranged(0.01, nonneg_float)
    """Entropy bonus of the replenishment agent (per-product mean entropy)."""
    ent_recommendation: float = ranged(0.01, nonneg_float)
    """Entropy bonus of the recommendation agent (per-segment mean slate entropy)."""
    max_grad_norm: float = ranged(0.5, positive_float)
    """Gradient-norm clip, per learner."""
    credit: Literal["auto", "joint", "decision"] = "auto"
    """PPO's unit of credit: joint (one ratio per env-period -- the product of every order's
    and every slate's ratio -- with the firm's advantage) or decision (a ratio per product's
    order and per segment's slate, each with the advantage of its own share of the profit, from
    per-product and per-segment values; coordopt.rl.credit); auto: decision with the
    centralised critic, joint for independent learners (their own rewards are their credit)."""
    # --- timescales
    timescales: Literal["multi", "single", "independent"] = "multi"
    """multi: critic > fast > slow agent; single: all equal; independent: own critics and rewards."""
    schedule: Literal["power", "constant"] = "power"
    """power: a0/(1+n/n0)^p step sizes (two-timescale conditions); constant: fixed rates."""
    slow_agent: Literal["replenishment", "recommendation"] = "replenishment"
    """The agent on the slow timescale."""
    lr_critic: float = ranged(1e-3, positive_float)
    """Base learning rate of the critic(s)."""
    lr_fast: float = ranged(1e-3, positive_float)
    """Base learning rate of the fast agent (all learners in single mode)."""
    lr_slow: float = ranged(5e-4, positive_float)
    """Base learning rate of the slow agent."""
    exponent_critic: float = ranged(0.55, Range(float, 0.0, 1.0, lo_open=True))
    """Decay exponent p of the critic's step sizes (0.5 < p <= 1)."""
    exponent_fast: float = ranged(0.7, Range(float, 0.0, 1.0, lo_open=True))
    """Decay exponent of the fast agent (>= exponent_critic)."""
    exponent_slow: float = ranged(0.9, Range(float, 0.0, 1.0, lo_open=True))
    """Decay exponent of the slow agent (> exponent_fast, so slow/fast -> 0)."""
    decay_iters: int = ranged(50, positive_int)
    """n0 of the power schedules: iterations over which step sizes halve-ish."""
    update_every_fast: int = ranged(1, positive_int)
    """Update the fast agent every this many iterations."""
    update_every_slow: int = ranged(2, positive_int)
    """Update the slow agent every this many iterations."""
    epochs_fast: int = ranged(4, positive_int)
    """PPO epochs of the fast agent per update."""
    epochs_slow: int = ranged(2, positive_int)
    """PPO epochs of the slow agent per update."""
    epochs_critic: int = ranged(4, positive_int)
    """Epochs of the critic per iteration."""
    # --- warm start and regularisation
    warm_start: str = field(default="auto", metadata={"check": WARM_START})
    """Expert to clone and regularise toward: auto (the exact DP where it fits, else the
    strongest of bidprice, siloed:inventory=dp, static and lagrangian in a teacher trial on
    --teacher-episodes episodes of the --eval-seed stream), none (cold) or a teacher with its
    own options, NAME[:KEY=VALUE;...], e.g. siloed:inventory=dp or
    bidprice:reoptimize_every=0 (its options as evaluate --policy takes them)."""
    teacher_episodes: int = ranged(8, positive_int)
    """Episodes of the --warm-start auto teacher trial: each candidate teacher is simulated
    on the same episodes (common random numbers, the --eval-seed stream) and the highest
    mean profit is the teacher."""
    bc_rounds: int = ranged(3, nonneg_int)
    """DAgger rounds of behaviour cloning (round r rolls out expert w.p. bc_beta^r); after
    --init, cloning continues from the loaded agents (0: none, PPO only)."""
    bc_beta: float = ranged(0.5, unit_interval)
    """Expert-mixture probability base of the DAgger rollouts."""
    bc_envs: int = ranged(32, positive_int)
    """Environments per DAgger round."""
    bc_label_envs: int = ranged(32, positive_int)
    """Environments whose visited states the expert labels (subsample for slow experts)."""
    bc_epochs: int = ranged(100, nonneg_int)
    """Epochs of cloning after each DAgger round (one full-batch step each unless
    --bc-minibatch-envs)."""
    bc_minibatch_envs: int = ranged(0, nonneg_int)
    """Environments per cloning step (0: all, full-batch steps): each epoch then makes one
    pass over the aggregated data in shuffled groups, one step per group (bounded memory)."""
    bc_lr: float = ranged(3e-3, positive_float)
    """Learning rate of behaviour cloning and critic pre-training."""
    bc_entropy: float = ranged(0.0, nonneg_float)
    """Entropy bonus during cloning (small values barely resist collapse onto a deterministic expert)."""
    critic_pretrain_epochs: int = ranged(100, nonneg_int)
    """Critic pre-training steps on the returns of the cloned policy's rollouts."""
    bc_coef: float = ranged(0.5, nonneg_float)
    """Initial weight of the expert-imitation penalty (NLL of expert actions) during PPO."""
    bc_anneal_iters: int = ranged(50, nonneg_int)
    """Iterations over which the imitation weight falls linearly to zero."""
    warm_lr_scale: float = ranged(0.3, positive_float)
    """Factor on the agents' learning rates after a warm start (larger PPO steps undo the clone)."""
    expert_label_envs: int = ranged(16, nonneg_int)
    """Environments labelled by the expert during PPO while the imitation weight is positive."""
    expert_reoptimize: int = ranged(-1, Range(int, lo=-1))
    """Periods between re-optimisations of a bid-price expert's stock values (0: never, the
    initial solve only, which makes labels cheap; -1: the policy's own default)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that would make training meaningless, naming the flag and the fix."""
        check_fields(self)
        if self.teacher_inputs and self.warm_start == "none":
            raise ValueError(
                "--teacher-inputs needs a teacher whose decisions the agents see; use "
                "--warm-start auto or a teacher's spec, or --no-teacher-inputs"
            )
        if self.credit == "decision" and self.timescales == "independent":
            raise ValueError(
                "--credit decision needs the centralised critic (its per-product and per-segment "
                "values are the firm critic's); use --timescales multi or single, or --credit "
                "joint"
            )

    @property
    def per_decision(self) -> bool:
        """Whether PPO's credit is per decision (``credit``, with ``auto`` resolved)."""
        return self.credit == "decision" or (
            self.credit == "auto" and self.timescales != "independent"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from saved values (unknown keys are an error naming them; a run saved
        before ``credit`` existed trained with joint credit)."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown training config keys: {', '.join(sorted(extra))}")
        return cls(**({"credit": "joint"} | data))


SCALE_DEFAULTS: dict[str, Any] = {
    "num_envs": 8,
    "minibatch_envs": 8,
    "eval_episodes": 32,
    "bc_envs": 8,
    "bc_epochs": 40,
    "bc_minibatch_envs": 4,
    "critic_pretrain_epochs": 30,
    "expert_label_envs": 8,
    "expert_reoptimize": 0,
    "time_budget": 45.0,
    "plan_inputs": True,
    "teacher_inputs": True,
}
"""Defaults at catalog scale (:func:`at_catalog_scale`), sized for two CPU cores and a
45-minute budget: a training iteration on ``large`` costs about 20 ms per env-period, so 8
environments and bid-price labels from the initial solve only; the agents observe the teacher's
plan, which made their greedy clone of it 1.8% better on ``large`` (825,081 against 810,499,
the same 15-epoch cloning), and cloning gets the time PPO could not use (40 epochs a round:
828,929; 155 PPO iterations had moved a clone by under 0.2%); and they see their teacher's own
decisions (``teacher_inputs``), with which a clone can be its teacher exactly at any size (the
clone of the static-margin firm fine-tuned to 10,000 products had lost 2.84% to it without).
Flags given on the command line win; below catalog scale the dataclass defaults hold."""


def at_catalog_scale(inst: Instance) -> bool:
    """Whether the full fluid program of ``inst`` is too big to solve routinely (more than
    :data:`~coordopt.sizes.FULL_LP_CELLS` cells): where :data:`SCALE_DEFAULTS` apply."""
    return plan_cells(inst) > FULL_LP_CELLS


def size_defaults(inst: Instance, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config defaults that depend on the size of ``inst`` (see :data:`SCALE_DEFAULTS`)
    beneath the values ``given`` (a cold start, ``warm_start="none"``, has no teacher whose
    decisions its agents could see: ``teacher_inputs`` then defaults to off)."""
    if not at_catalog_scale(inst):
        return {}
    given = given or {}
    cold = given.get("warm_start") == "none"
    return {k: v for k, v in SCALE_DEFAULTS.items() if not (cold and k == "teacher_inputs")}


def field_docs() -> dict[str, str]:
    """The attribute docstring of every :class:`TrainConfig` field (its ``--flag`` help)."""
    return introspect.field_docs(TrainConfig)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field (help: its docstring; at catalog scale, its
    :data:`SCALE_DEFAULTS` value too); unset flags stay absent."""
    group = parser.add_argument_group(
        "training configuration",
        f"'at catalog scale': instances of more than {FULL_LP_CELLS:,} period x segment x "
        "product cells (large and up), where other defaults fit two CPU cores and 45 minutes",
    )
    add_dataclass_flags(
        group,
        TrainConfig,
        suppress=True,
        note=lambda name: (
            f"; at catalog scale: {SCALE_DEFAULTS[name]}"
            if name in SCALE_DEFAULTS
            else f"; teachers: {', '.join(teachers())}"
            if name == "warm_start"
            else ""
        ),
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}
