"""Training checkpoints: a safe file format, the run's identity, resume and ``--init``.

A checkpoint holds tensors and plain data only -- the state dicts of the agents and the
optimisers, the random-number states (tensors) and one JSON string of metadata (the
training configuration, the instance's identity, counters, normalisers, evaluations) -- and
is read with ``torch.load(weights_only=True)``, which never runs code from the file. Run
directories are what users share, so anything else (a pickle payload, a truncated file,
missing keys, tensors of the wrong shape) is refused with a :class:`CheckpointError`
naming the file.

A run's identity is the instance's content hash (its data, not its name) and the training
configuration; resuming checks both (:func:`open_run`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.instance import Instance, content_hash
from coordopt.io import atomic_write
from coordopt.rl.agents import Agents, build_agents
from coordopt.rl.config import TrainConfig
from coordopt.rl.rollout import RunningMeanStd

FORMAT = "coordopt-rl/2"
CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
BEST = "best.pt"
RUN_FILES = (BEST, FINAL, CHECKPOINT)
"""The checkpoints a run directory names, in the order a policy is loaded from them."""
RESUMABLE = frozenset(
    {
        "iterations",
        "eval_every",
        "eval_episodes",
        "checkpoint_every",
        "tensorboard",
        "device",
        "threads",
        "time_budget",
    }
)
"""Config fields a resumed run may change (budget, logging, hardware); the rest are its identity."""
ARCHITECTURE = (
    "hidden_size",
    "order_bins",
    "information",
    "allow_short_slates",
    "timescales",
    "scorer",
    "plan_inputs",
)
"""Config fields that shape the networks (``--init`` takes them from the source run)."""
ZERO_IF_ABSENT = frozenset({"recommendation.gain_weight"})
"""Weights that start at zero and leave the network as it was without them: a checkpoint
written before they existed loads with them at zero (the same agents)."""


class CheckpointError(ValueError):
    """A file that is not a coordopt checkpoint, or a run that does not match the request."""


# --------------------------------------------------------------------------- identity


def instance_identity(inst: Instance) -> dict[str, str]:
    """``{"name", "hash"}`` of an instance, as a run records it."""
    return {"name": inst.name, "hash": content_hash(inst)}


# --------------------------------------------------------------------------- run state


@dataclass
class RunState:
    """Everything that changes during training (what a checkpoint holds besides the weights)."""

    iteration: int
    env_steps: int
    seconds: float
    normalisers: dict[str, RunningMeanStd]
    env_gen: torch.Generator
    pol_gen: torch.Generator
    rng: np.random.Generator
    baselines: dict[str, float] = field(default_factory=dict)
    warm_start: dict[str, Any] | None = None
    initial_eval: dict[str, float] = field(default_factory=dict)
    best_eval: dict[str, float] = field(default_factory=dict)
    init: dict[str, Any] | None = None
    """The identity of the run ``--init`` took the agents from (``None``: none)."""

    @classmethod
    def start(cls, config: TrainConfig, critics: list[str], device: torch.device) -> RunState:
        """Iteration 0, with every random stream seeded from ``config.seed``."""
        run = cls(
            iteration=0,
            env_steps=0,
            seconds=0.0,
            normalisers={name: RunningMeanStd() for name in critics},
            env_gen=torch.Generator(device=device),
            pol_gen=torch.Generator(device=device),
            rng=np.random.default_rng(config.seed),
        )
        run.env_gen.manual_seed(config.seed * 2 + 1)
        run.pol_gen.manual_seed(config.seed * 2 + 2)
        return run


def save(
    path: Path,
    config: TrainConfig,
    agents: Agents,
    optimisers: dict[str, torch.optim.Optimizer],
    run: RunState,
    instance: dict[str, str],
) -> None:
    """Write a checkpoint atomically (everything needed to resume bit for bit)."""
    meta = {
        "config": config.to_dict(),
        "instance": instance,
        "iteration": run.iteration,
        "env_steps": run.env_steps,
        "seconds": run.seconds,
        "normalisers": {k: v.state_dict() for k, v in run.normalisers.items()},
        "numpy_rng": run.rng.bit_generator.state,
        "baselines": run.baselines,
        "warm_start": run.warm_start,
        "initial_eval": run.initial_eval,
        "best_eval": run.best_eval,
        "init": run.init,
    }
    blob = {
        "format": FORMAT,
        "meta": json.dumps(meta),
        "agents": agents.state_dict(),
        "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
        "rng": {
            "torch": torch.get_rng_state(),
            "env": run.env_gen.get_state(),
            "policy": run.pol_gen.get_state(),
        },
    }
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


# --------------------------------------------------------------------------- reading


@dataclass
class Checkpoint:
    """A checkpoint file read and checked (:func:`load`)."""

    path: Path
    config: TrainConfig
    meta: dict[str, Any]
    tensors: dict[str, Any]

    def _refuse(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {what}; refusing this checkpoint")

    def load_agents(self, agents: Agents) -> None:
        """Copy the saved weights into ``agents`` (every name and shape must match; only the
        :data:`ZERO_IF_ABSENT` weights may be missing, and are then zero)."""
        try:
            missing, unexpected = agents.load_state_dict(self.tensors["agents"], strict=False)
            absent = set(missing) - ZERO_IF_ABSENT
            if absent or unexpected:
                raise RuntimeError(f"missing {sorted(absent)}, unexpected {sorted(unexpected)}")
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise self._refuse(
                f"its weights do not fit the networks its config describes ({_first_line(exc)})"
            ) from None
        with torch.no_grad():
            for name, weight in agents.named_parameters():
                if name in missing:
                    weight.zero_()

    def agents(self) -> Agents:
        """The agents the checkpoint holds, built from its own configuration."""
        agents = build_agents(self.config)
        self.load_agents(agents)
        return agents

    def restore(
        self, agents: Agents, optimisers: dict[str, torch.optim.Optimizer], run: RunState
    ) -> None:
        """Put the saved weights, optimiser states, counters and random states in place."""
        self.load_agents(agents)
        meta, rng = self.meta, self.tensors["rng"]
        try:
            for k, opt in optimisers.items():
                opt.load_state_dict(self.tensors["optimisers"][k])
                _check_optimiser(opt)
            for k, norm in run.normalisers.items():
                norm.load_state_dict(meta["normalisers"][k])
            torch.set_rng_state(rng["torch"])
            run.env_gen.set_state(rng["env"])
            run.pol_gen.set_state(rng["policy"])
            run.rng.bit_generator.state = meta["numpy_rng"]
            run.iteration, run.env_steps = int(meta["iteration"]), int(meta["env_steps"])
            run.seconds = float(meta["seconds"])
            run.baselines, run.warm_start = dict(meta["baselines"]), meta["warm_start"]
            run.initial_eval, run.best_eval = dict(meta["initial_eval"]), dict(meta["best_eval"])
            run.init = meta["init"]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise self._refuse(f"its training state is malformed ({_first_line(exc)})") from None

    def mismatches(self, instance: Instance, config: TrainConfig) -> list[str]:
        """What differs between this run's identity and ``instance`` + ``config``."""
        out = []
        saved = self.meta["instance"]
        now = content_hash(instance)
        if saved.get("hash") != now:
            out.append(
                f"instance: the run was trained on '{saved.get('name')}' "
                f"(content sha256 {str(saved.get('hash'))[:12]}), this is '{instance.name}' "
                f"({now[:12]})"
            )
        old, new = self.config.to_dict(), config.to_dict()
        out += [
            f"{k}: run {old[k]!r}, now {new[k]!r}"
            for k in new
            if k not in RESUMABLE and old[k] != new[k]
        ]
        return out


def load(path: Path) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` and check its layout; refuse anything else."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle safely means "not a checkpoint"
        raise CheckpointError(
            f"{path}: not a coordopt checkpoint, refused without running anything from it "
            f"({_first_line(exc)}); checkpoints hold tensors and plain data only"
        ) from None
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(
            f"{path}: not a coordopt checkpoint (format {fmt!r}, expected {FORMAT!r}"
            + ("; written by an older coordopt: train again" if fmt == "coordopt-rl/1" else "")
            + ")"
        )
    missing = {"meta", "agents", "optimisers", "rng"} - set(blob)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
    try:
        meta = json.loads(blob["meta"])
        config = TrainConfig.from_dict(meta["config"])
        if not isinstance(meta["instance"], dict) or not all(
            isinstance(v, torch.Tensor) for v in blob["agents"].values()
        ):
            raise TypeError("instance identity or agent weights of the wrong type")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint ({_first_line(exc)})") from None
    return Checkpoint(path, config, meta, blob)


def run_file(run_dir: Path, name: str | None = None) -> Path:
    """The checkpoint of a run directory: ``name`` (one of :data:`RUN_FILES`) or the first present.

    Only the files the run directory names are loaded, never another path.
    """
    run_dir = Path(run_dir)
    if name is not None and name not in RUN_FILES:
        raise CheckpointError(
            f"checkpoint={name!r}: must be one of {', '.join(RUN_FILES)} "
            f"(a checkpoint of the run directory {run_dir}); other paths are not loaded"
        )
    names = [name] if name else list(RUN_FILES)
    for fname in names:
        file = run_dir / fname
        if file.is_file():
            if file.resolve().parent != run_dir.resolve():
                raise CheckpointError(f"{file}: links out of the run directory; refused")
            return file
    raise FileNotFoundError(
        f"{run_dir}: no {' or '.join(names)}; is this a `coordopt train --out` "
        "directory, and did training save a checkpoint?"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _check_optimiser(opt: torch.optim.Optimizer) -> None:
    """Every state tensor has its parameter's shape (``load_state_dict`` checks only counts)."""
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                    raise ValueError(
                        f"optimiser state '{key}' has shape {tuple(value.shape)}, "
                        f"its parameter {tuple(p.shape)}"
                    )


# --------------------------------------------------------------------------- resume and init


def open_run(out: Path, instance: Instance, config: TrainConfig, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume in ``out`` (``None``: a new run), its identity checked.

    Refuses a new run where one exists, ``--resume`` where none does, and a resume whose
    instance (content hash) or configuration (fields outside :data:`RESUMABLE`) differs.
    """
    path = Path(out) / CHECKPOINT
    if not resume:
        if path.is_file():
            raise ValueError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        return None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume (run without --resume first)")
    ckpt = load(path)
    diff = ckpt.mismatches(instance, config)
    if diff:
        raise CheckpointError(
            f"{out}: cannot resume, the run differs from this request: {'; '.join(diff)} "
            "(resume with the run's own instance and settings, or start a new run in another --out)"
        )
    return ckpt


def resume_config(out: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved configuration of the run in ``out`` with the flags given on the command line."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nothing to resume (run without --resume first)")
    return dataclasses.replace(load(path).config, **overrides)


def init_config(source: Path, overrides: dict[str, Any]) -> TrainConfig:
    """A configuration for ``--init source``: its :data:`ARCHITECTURE` unless given as flags."""
    saved = load(run_file(source)).config
    return TrainConfig(**{**{k: getattr(saved, k) for k in ARCHITECTURE}, **overrides})


def init_agents(agents: Agents, source: Path, config: TrainConfig) -> dict[str, Any]:
    """Copy the agents' weights of the run in ``source`` into ``agents``; returns its identity."""
    ckpt = load(run_file(source))
    try:
        agents.load_state_dict(ckpt.tensors["agents"])
    except RuntimeError as exc:
        old, new = ckpt.config.to_dict(), config.to_dict()
        diff = [
            f"{k}: source {old[k]!r}, this run {new[k]!r}" for k in ARCHITECTURE if old[k] != new[k]
        ]
        raise CheckpointError(
            f"--init {source}: its networks do not fit this run's "
            f"({'; '.join(diff) or _first_line(exc)}); use the source run's architecture flags"
        ) from None
    return {
        "run": str(source),
        "file": ckpt.path.name,
        "instance": ckpt.meta["instance"],
        "iteration": ckpt.meta.get("iteration"),
        "env_steps": ckpt.meta.get("env_steps"),
        "config": ckpt.config.to_dict(),
    }
