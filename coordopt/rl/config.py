"""The training configuration: one dataclass whose fields become ``coordopt train`` flags.

Every field carries a one-line attribute docstring; :func:`add_config_arguments` reads them
(with :mod:`ast`) as the ``--help`` text, so the documentation and the flags cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from coordopt import introspect


@dataclass
class TrainConfig:
    """Multi-timescale multi-agent PPO, warm-started from an expert policy."""

    # --- run
    iterations: int = 200
    """PPO iterations (each: one full episode in every environment, then updates)."""
    seed: int = 0
    """Seed of every random stream of the run (environments, sampling, minibatches)."""
    device: str = "cpu"
    """Torch device: cpu or cuda (cuda must be available)."""
    threads: int = 1
    """CPU threads of torch (0: torch's default); the small batched ops run fastest on one."""
    eval_every: int = 10
    """Evaluate the greedy policy against the baselines every this many iterations (0: never)."""
    eval_episodes: int = 64
    """Episodes of each evaluation (common random numbers across policies and iterations)."""
    eval_seed: int = 12345
    """Demand stream of the evaluations (fixed, so curves compare like with like)."""
    checkpoint_every: int = 1
    """Write the checkpoint every this many iterations (and always at the end)."""
    tensorboard: bool = True
    """Also log to TensorBoard under OUT/tb when the tensorboard package is installed."""
    # --- agents
    information: Literal["coordinated", "siloed"] = "coordinated"
    """coordinated: stock signals to marketing, recommendation signals to operations; siloed: none."""
    hidden_size: int = 64
    """Width of the embeddings, MLPs and GRU memories."""
    order_bins: int = 32
    """Order-quantity bins per product (bin g orders g * step_i units; step_i from demand scale)."""
    allow_short_slates: bool = True
    """Let the recommendation agent stop a slate early (a learned stop item in the PL draw)."""
    scorer: Literal["auto", "factorised", "additive"] = "auto"
    """Slate scores: factorised (segment-memory x product inner product + a pair term; no B x M x N x hidden tensor), additive (an MLP of summed segment, product, pair and memory terms; builds that tensor) or auto (factorised from 1,000 product-segment pairs up, additive below)."""
    # --- PPO
    num_envs: int = 64
    """Environments simulated in parallel (batch size B of the rollouts)."""
    seq_len: int = 8
    """Length of the recurrent training chunks (memory re-run from stored chunk-start states)."""
    minibatch_envs: int = 16
    """Environments per minibatch (each minibatch is one time chunk of these environments)."""
    gamma: float = -1.0
    """Discount of the returns (negative: the instance's discount)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """PPO clipping range of the probability ratio."""
    ent_replenishment: float = 0.01
    """Entropy bonus of the replenishment agent (per-product mean entropy)."""
    ent_recommendation: float = 0.01
    """Entropy bonus of the recommendation agent (per-segment mean slate entropy)."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip, per learner."""
    # --- timescales
    timescales: Literal["multi", "single", "independent"] = "multi"
    """multi: critic > fast > slow agent; single: all equal; independent: own critics and rewards."""
    schedule: Literal["power", "constant"] = "power"
    """power: a0/(1+n/n0)^p step sizes (two-timescale conditions); constant: fixed rates."""
    slow_agent: Literal["replenishment", "recommendation"] = "replenishment"
    """The agent on the slow timescale."""
    lr_critic: float = 1e-3
    """Base learning rate of the critic(s)."""
    lr_fast: float = 1e-3
    """Base learning rate of the fast agent (all learners in single mode)."""
    lr_slow: float = 5e-4
    """Base learning rate of the slow agent."""
    exponent_critic: float = 0.55
    """Decay exponent p of the critic's step sizes (0.5 < p <= 1)."""
    exponent_fast: float = 0.7
    """Decay exponent of the fast agent (>= exponent_critic)."""
    exponent_slow: float = 0.9
    """Decay exponent of the slow agent (> exponent_fast, so slow/fast -> 0)."""
    decay_iters: int = 50
    """n0 of the power schedules: iterations over which step sizes halve-ish."""
    update_every_fast: int = 1
    """Update the fast agent every this many iterations."""
    update_every_slow: int = 2
    """Update the slow agent every this many iterations."""
    epochs_fast: int = 4
    """PPO epochs of the fast agent per update."""
    epochs_slow: int = 2
    """PPO epochs of the slow agent per update."""
    epochs_critic: int = 4
    """Epochs of the critic per iteration."""
    # --- warm start and regularisation
    warm_start: Literal["auto", "none", "mpc", "dp", "bidprice", "fluid", "siloed"] = "auto"
    """Expert to clone and regularise toward (auto: the exact DP if it fits, MPC while the full
    LP is small, else bid-price control; none: cold)."""
    bc_rounds: int = 3
    """DAgger rounds of behaviour cloning (round r rolls out expert w.p. bc_beta^r)."""
    bc_beta: float = 0.5
    """Expert-mixture probability base of the DAgger rollouts."""
    bc_envs: int = 32
    """Environments per DAgger round."""
    bc_label_envs: int = 32
    """Environments whose visited states the expert labels (subsample for slow experts)."""
    bc_epochs: int = 100
    """Gradient steps of cloning after each DAgger round (full batch)."""
    bc_lr: float = 3e-3
    """Learning rate of behaviour cloning and critic pre-training."""
    bc_entropy: float = 0.0
    """Entropy bonus during cloning (small values barely resist collapse onto a deterministic expert)."""
    critic_pretrain_epochs: int = 100
    """Critic pre-training steps on the returns of the cloned policy's rollouts."""
    bc_coef: float = 0.5
    """Initial weight of the expert-imitation penalty (NLL of expert actions) during PPO."""
    bc_anneal_iters: int = 50
    """Iterations over which the imitation weight falls linearly to zero."""
    warm_lr_scale: float = 0.3
    """Factor on the agents' learning rates after a warm start (larger PPO steps undo the clone)."""
    expert_label_envs: int = 16
    """Environments labelled by the expert during PPO while the imitation weight is positive."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that would make training meaningless, naming the flag and the fix."""
        positive = (
            "num_envs",
            "seq_len",
            "minibatch_envs",
            "hidden_size",
            "update_every_fast",
            "update_every_slow",
            "decay_iters",
            "checkpoint_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.order_bins < 2:
            raise ValueError(f"--order-bins must be >= 2, got {self.order_bins}")
        if self.iterations < 0:
            raise ValueError(f"--iterations must be >= 0, got {self.iterations}")
        if self.warm_lr_scale <= 0:
            raise ValueError(f"--warm-lr-scale must be > 0, got {self.warm_lr_scale}")
        if not 0 < self.clip < 1:
            raise ValueError(f"--clip must be in (0, 1), got {self.clip}")
        for name in self.__dataclass_fields__:
            choices = typing.get_args(_hint(name)) if _is_literal(name) else ()
            if choices and getattr(self, name) not in choices:
                raise ValueError(
                    f"--{flag(name)} must be one of {', '.join(choices)}, "
                    f"got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from saved values (unknown keys are an error naming them)."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown training config keys: {', '.join(sorted(extra))}")
        return cls(**data)


def flag(name: str) -> str:
    """``warm_start`` -> ``warm-start``."""
    return name.replace("_", "-")


def _hint(name: str) -> Any:
    return typing.get_type_hints(TrainConfig)[name]


def _is_literal(name: str) -> bool:
    return typing.get_origin(_hint(name)) is Literal


def field_docs() -> dict[str, str]:
    """The attribute docstring of every :class:`TrainConfig` field (its ``--flag`` help)."""
    return introspect.field_docs(TrainConfig)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field (help: its docstring); unset flags stay absent."""
    docs = field_docs()
    defaults = TrainConfig()
    group = parser.add_argument_group("training configuration")
    for f in fields(TrainConfig):
        hint = _hint(f.name)
        default = getattr(defaults, f.name)
        help_text = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": f.name}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif _is_literal(f.name):
            kwargs["choices"] = list(typing.get_args(hint))
        else:
            kwargs["type"] = hint
            kwargs["metavar"] = hint.__name__.upper()
        group.add_argument(f"--{flag(f.name)}", **kwargs)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}
