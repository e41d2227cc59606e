"""Training checkpoints: a safe file format, the run's identity, resume and ``--init``.

A checkpoint holds tensors and plain data only -- the state dicts of the agents and the
optimisers, the random-number states (tensors), the names of the features the agents read
and one JSON string of metadata (the training configuration, the instance's identity,
counters, normalisers, evaluations, the per-episode profits of the one before training) --
and is read with ``torch.load(weights_only=True)``, which never runs code from the file. Run
directories are what users share, so they are read by the one run-directory reader
(:mod:`coordopt.rl.rundir`): anything else (a pickle payload, a truncated file, a zip bomb,
missing keys, weights of the wrong shape or dtype or not finite, metadata of the wrong type
or range, a configuration describing networks too large to build) is refused with a
:class:`CheckpointError` (or a :class:`~coordopt.guards.SizeError`) naming the file.

A run's identity is the instance's content hash (its data, not its name) and the training
configuration; resuming checks both (:func:`open_run`). Agents trained on other features than
this coordopt computes are refused naming the features that differ (:func:`check_features`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.instance import Instance, content_hash
from coordopt.rl.config import TrainConfig, teacher_spec
from coordopt.rl.features import feature_names
from coordopt.rl.lifecycle import Counters
from coordopt.rl.networks import Agents, build_agents
from coordopt.rl.rollout import RunningMeanStd
from coordopt.rl.rundir import (
    AGENTS_RUN,
    BEST,
    CHECKPOINT,
    CHECKPOINT_META,
    CONFIG,
    FINAL,
    CheckpointError,
    MapOf,
    RunDir,
    check_episode_profits,
    check_finite,
    check_json,
    check_network_size,
    check_weights,
    check_widths,
    first_line,
    meta_state,
    parse_json,
    read_checkpoint,
    reading,
    show,
)

__all__ = ["BEST", "CHECKPOINT", "FINAL", "CheckpointError", "load", "run_file"]

FORMAT = "coordopt-rl/2"
RUN_FILES = AGENTS_RUN.checkpoints
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
    "teacher_inputs",
    "credit",
)
"""Config fields that shape the networks (``--init`` takes them from the source run)."""
ZERO_IF_ABSENT = frozenset(
    {"recommendation.gain_weight", "replenishment.guide_weight", "recommendation.guide_weight"}
)
"""Weights that start at zero and leave the network as it was without them: a checkpoint
written before they existed loads with them at zero (the same agents)."""


# --------------------------------------------------------------------------- identity


def instance_identity(inst: Instance) -> dict[str, str]:
    """``{"name", "hash"}`` of an instance, as a run records it."""
    return {"name": inst.name, "hash": content_hash(inst)}


# --------------------------------------------------------------------------- run state


@dataclass(kw_only=True)
class RunState(Counters):
    """Everything that changes during training (what a checkpoint holds besides the weights):
    the lifecycle's counters and evaluations (:class:`~coordopt.rl.lifecycle.Counters`), the
    normalisers, the random streams and the warm start's or ``--init``'s report."""

    normalisers: dict[str, RunningMeanStd]
    env_gen: torch.Generator
    pol_gen: torch.Generator
    rng: np.random.Generator
    warm_start: dict[str, Any] | None = None
    init: dict[str, Any] | None = None
    """The identity of the run ``--init`` took the agents from (``None``: none)."""

    @classmethod
    def start(cls, config: TrainConfig, critics: list[str], device: torch.device) -> RunState:
        """Iteration 0, with every random stream seeded from ``config.seed``."""
        run = cls(
            normalisers={name: RunningMeanStd() for name in critics},
            env_gen=torch.Generator(device=device),
            pol_gen=torch.Generator(device=device),
            rng=np.random.default_rng(config.seed),
        )
        run.env_gen.manual_seed(config.seed * 2 + 1)
        run.pol_gen.manual_seed(config.seed * 2 + 2)
        return run


def contents(
    config: TrainConfig,
    agents: Agents,
    optimisers: dict[str, torch.optim.Optimizer],
    run: RunState,
    instance: dict[str, str],
) -> dict[str, Any]:
    """A checkpoint's contents: everything needed to resume bit for bit (written atomically
    by :meth:`~coordopt.rl.rundir.RunDir.save`)."""
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
        "initial_profits": run.initial_profits,
        "init": run.init,
        "guide": agents.teacher,
    }
    return {
        "format": FORMAT,
        "meta": json.dumps(meta),
        "agents": agents.state_dict(),
        "features": agents.features,
        "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
        "rng": {
            "torch": torch.get_rng_state(),
            "env": run.env_gen.get_state(),
            "policy": run.pol_gen.get_state(),
        },
    }


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
        """Copy the saved weights into ``agents`` (every name, shape and dtype must match --
        :func:`load` checked them against the networks of the checkpoint's own config; only
        the :data:`ZERO_IF_ABSENT` weights may be missing, and are then zero)."""
        try:
            missing, unexpected = agents.load_state_dict(self.tensors["agents"], strict=False)
            absent = set(missing) - ZERO_IF_ABSENT
            if absent or unexpected:
                raise RuntimeError(f"missing {sorted(absent)}, unexpected {sorted(unexpected)}")
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise self._refuse(
                f"its weights do not fit the networks its config describes ({first_line(exc)})"
            ) from None
        with torch.no_grad():
            for name, weight in agents.named_parameters():
                if name in missing:
                    weight.zero_()

    def agents(self) -> Agents:
        """The agents the checkpoint holds, built from its own configuration (with the spec of
        the teacher whose decisions they see, where they see one)."""
        agents = build_agents(self.config)
        self.load_agents(agents)
        agents.teacher = self.meta.get("guide")
        if self.config.teacher_inputs and agents.teacher is None:
            raise self._refuse(
                "its agents see their teacher's decisions (teacher_inputs) but its metadata "
                "names no teacher ('guide')"
            )
        if agents.teacher is not None:
            try:
                teacher_spec(agents.teacher)
            except ValueError as exc:
                raise self._refuse(f"its metadata's field 'guide': {first_line(exc)}") from None
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
            run.initial_profits = list(meta.get("initial_profits", []))  # older: none kept
            run.init = meta["init"]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise self._refuse(f"its training state is malformed ({first_line(exc)})") from None

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
    """Read a checkpoint with the run-directory reader and check every part of it: its
    layout; its metadata's fields (types and ranges); its configuration; its weights against
    the networks that configuration describes (names, shapes, dtypes, finite), those networks
    within the size limit before any is built; finite optimiser states; byte random states.
    Anything else is refused naming the file."""
    path = Path(path)
    blob = read_checkpoint(path)
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(
            f"{path}: not a coordopt checkpoint (format {fmt!r:.40}, expected {FORMAT!r}"
            + ("; written by an older coordopt: train again" if fmt == "coordopt-rl/1" else "")
            + ")"
        )
    missing = {"meta", "agents", "optimisers", "rng"} - set(blob)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
    if not isinstance(blob["meta"], str):
        raise CheckpointError(f"{path}: malformed checkpoint (its metadata is not JSON text)")
    meta = parse_json(blob["meta"], path)
    check_json(path, meta, CHECKPOINT_META, "its metadata's ")
    config = train_config(path, meta["config"])
    check_episode_profits(path, meta, config.eval_episodes)
    check_features(path, blob.get("features"), config)
    expected = agents_shapes(path, config)
    check_weights(path, blob["agents"], expected, may_lack=ZERO_IF_ABSENT)
    if not isinstance(blob["optimisers"], dict) or not isinstance(blob["rng"], dict):
        raise CheckpointError(f"{path}: malformed checkpoint (optimisers or rng not a mapping)")
    check_finite(path, blob["optimisers"], "optimiser state")
    for name, state in blob["rng"].items():
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1:
            raise CheckpointError(f"{path}: malformed checkpoint (random state '{name}')")
    return Checkpoint(path, config, meta, blob)


def train_config(path: Path, data: Any) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``path`` (metadata or ``config.json``), every field
    checked; the device it trained on is kept without requiring it here (a policy moves to
    the device it is evaluated on; a resume checks it)."""
    with reading(path, "its training configuration is malformed"):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        device = data.get("device", "cpu")
        if not isinstance(device, str):
            raise TypeError(f"device must be a string, got {device!r:.40}")
        config = TrainConfig.from_dict({**data, "device": "cpu"})
        torch.device(device)  # a device name, available or not
        config.device = device
    return config


def check_features(path: Path, saved: Any, config: TrainConfig) -> None:
    """Refuse agents trained on other features than this coordopt computes for their
    ``config``, naming the features that differ, input by input. ``saved`` is the
    checkpoint's ``features``: ``None`` in one written before checkpoints named them, whose
    weights' shapes alone are then checked (it loads where the widths are unchanged)."""
    if saved is None:
        return
    check_json(path, saved, MapOf(list), "its feature names' ")
    expected = feature_names(config.information, config.plan_inputs)
    differ = []
    for key in [*expected, *(k for k in saved if k not in expected)]:
        want, got = expected.get(key, []), saved.get(key, [])
        if want == got:
            continue
        missing = [name for name in want if name not in got]
        unexpected = [name for name in got if name not in want]
        parts = [f"expected {len(want)} features, found {len(got)}"]
        if missing:
            parts.append(f"not in the checkpoint: {show(missing, 400)}")
        if unexpected:
            parts.append(f"not computed here: {show(unexpected, 400)}")
        if not missing and not unexpected:
            parts.append(f"in another order: expected {want}, found {show(got, 400)}")
        differ.append(f"input '{key}' ({'; '.join(parts)})")
    if differ:
        raise CheckpointError(
            f"{path}: its agents read other features than this coordopt computes: "
            f"{'; '.join(differ)}; train again, or use the coordopt that wrote it"
        )


def agents_shapes(path: Path, config: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights (as ``meta`` tensors: names, shapes, dtypes) of the agents ``config``
    describes, refused beyond the size limit before anything is allocated."""
    check_widths(path, {"hidden_size": config.hidden_size, "order_bins": config.order_bins})
    with reading(path, "its configuration describes no agents coordopt can build"):
        expected = meta_state(lambda: build_agents(config))
    check_network_size(
        path, expected, f"hidden_size {config.hidden_size}, order_bins {config.order_bins}"
    )
    return expected


def run_file(run_dir: Path, name: str | None = None) -> Path:
    """The checkpoint of a run directory: ``name`` (one of :data:`RUN_FILES`) or the first present.

    Only the files the run directory names are loaded, never another path, and never one
    that links out of the directory (:func:`coordopt.rl.rundir.choose_checkpoint`).
    """
    return RunDir(Path(run_dir), AGENTS_RUN).checkpoint(name)


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
    run_dir = RunDir(Path(out), AGENTS_RUN)
    if not resume:
        if run_dir.holds(CHECKPOINT):
            raise ValueError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        return None
    ckpt = _resumed(run_dir)
    if ckpt is None:
        print(
            f"coordopt train: {out} was stopped before its first checkpoint (during the "
            f"warm start); starting it again from its {CONFIG}",
            file=sys.stderr,
        )
        return None
    diff = ckpt.mismatches(instance, config)
    if diff:
        raise CheckpointError(
            f"{out}: cannot resume, the run differs from this request: {'; '.join(diff)} "
            "(resume with the run's own instance and settings, or start a new run in another --out)"
        )
    return ckpt


def resume_config(out: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved configuration of the run in ``out`` with the flags given on the command line
    (a run stopped before its first checkpoint: its ``config.json``)."""
    run_dir = RunDir(Path(out), AGENTS_RUN)
    ckpt = _resumed(run_dir)
    if ckpt is None:
        saved = train_config(run_dir.file(CONFIG), run_dir.read_config())
    else:
        saved = ckpt.config
    return dataclasses.replace(saved, **overrides)


def _resumed(run_dir: RunDir) -> Checkpoint | None:
    """The resumable checkpoint of ``run_dir``, read and checked; ``None`` where the run was
    stopped before its first (:attr:`~coordopt.rl.rundir.RunDir.interrupted_before_checkpoint`:
    it starts again from its configuration); ``FileNotFoundError`` where no run was started."""
    if run_dir.holds(CHECKPOINT):
        return load(run_dir.checkpoint(CHECKPOINT))
    if run_dir.interrupted_before_checkpoint:
        return None
    raise FileNotFoundError(
        f"{run_dir.file(CHECKPOINT)}: nothing to resume (run without --resume first)"
    )


def init_config(source: Path, overrides: dict[str, Any]) -> TrainConfig:
    """A configuration for ``--init source``: its :data:`ARCHITECTURE` unless given as flags."""
    saved = load(run_file(source)).config
    return TrainConfig(**{**{k: getattr(saved, k) for k in ARCHITECTURE}, **overrides})


def init_agents(agents: Agents, source: Path, config: TrainConfig) -> dict[str, Any]:
    """Copy the agents' weights of the run in ``source`` into ``agents``; returns its identity."""
    ckpt = load(run_file(source))
    try:
        ckpt.load_agents(agents)
    except CheckpointError as exc:
        old, new = ckpt.config.to_dict(), config.to_dict()
        diff = [
            f"{k}: source {old[k]!r}, this run {new[k]!r}" for k in ARCHITECTURE if old[k] != new[k]
        ]
        raise CheckpointError(
            f"--init {source}: its networks do not fit this run's "
            f"({'; '.join(diff) or first_line(exc)}); use the source run's architecture flags"
        ) from None
    return {
        "run": str(source),
        "file": ckpt.path.name,
        "instance": ckpt.meta["instance"],
        "iteration": ckpt.meta.get("iteration"),
        "env_steps": ckpt.meta.get("env_steps"),
        "config": ckpt.config.to_dict(),
    }
