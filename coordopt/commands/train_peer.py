"""``coordopt train --algorithm mappo|ippo``: TorchRL's multi-agent PPO peers (:mod:`coordopt.rl.peers`).

The flags shared with coordopt's agents (``--iterations``, ``--seed``, ``--num-envs``,
``--hidden-size``, ``--information``, ``--gamma``, ``--gae-lambda``, ``--clip``,
``--max-grad-norm``, ``--eval-*``, ``--device``, ``--threads``) keep their meaning; the
peers' own flags are added here; a flag of coordopt's agents that means nothing to a peer
(``--warm-start``, the timescale schedules, ...) is refused rather than ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from coordopt.commands.common import emit_json, log, table
from coordopt.guards import MissingExtra
from coordopt.introspect import add_dataclass_flags, flag
from coordopt.rl.config import TrainConfig, overrides_from_args
from coordopt.rl.peers import ALGORITHMS, PeerConfig, train_peer
from coordopt.rl.rundir import BEST

DEFAULT = "coordopt"
# the training command's own flags, not configuration fields
_COMMAND_FLAGS = {"tensorboard", "checkpoint_every"}


def _peer_only() -> list[str]:
    shared = {f.name for f in fields(TrainConfig)}
    return [f.name for f in fields(PeerConfig) if f.name not in shared and f.name != "algorithm"]


def add_peer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--algorithm`` and one flag per :class:`PeerConfig` field coordopt's agents lack."""
    parser.add_argument(
        "--algorithm",
        choices=[DEFAULT, *ALGORITHMS],
        default=DEFAULT,
        help="coordopt: the multi-timescale warm-started agents (default); mappo / ippo: "
        "TorchRL's multi-agent PPO with a centralised / independent critics (needs the "
        "torchrl extra)",
    )
    group = parser.add_argument_group("peer algorithms (--algorithm mappo|ippo)")
    add_dataclass_flags(group, PeerConfig, suppress=True, only=_peer_only())


def peer_flags_given(args: argparse.Namespace) -> list[str]:
    """The peer-only flags present on the command line."""
    return [n for n in _peer_only() if n in vars(args)]


def peer_config(args: argparse.Namespace) -> PeerConfig:
    """The :class:`PeerConfig` of the command line; inapplicable flags are an error."""
    given = overrides_from_args(args)
    names = {f.name for f in fields(PeerConfig)}
    foreign = sorted(k for k in given if k not in names and k not in _COMMAND_FLAGS)
    if foreign:
        flags = ", ".join(flag(k) for k in foreign)
        raise ValueError(
            f"{flags}: only for coordopt's own agents (--algorithm {DEFAULT}), not for "
            f"--algorithm {args.algorithm}"
        )
    values = {k: v for k, v in given.items() if k in names}
    values.update({k: getattr(args, k) for k in peer_flags_given(args)})
    return PeerConfig(algorithm=args.algorithm, **values)


def run_peer(args: argparse.Namespace) -> int:
    """Train a peer and print (or emit as JSON) its summary."""
    from coordopt.instance import load_instance

    if args.algorithm == DEFAULT:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in peer_flags_given(args))
        raise ValueError(f"{flags}: only for --algorithm mappo|ippo (the TorchRL peers)")
    if args.resume or getattr(args, "init", None):
        flag = "--resume" if args.resume else "--init"
        raise ValueError(f"{flag} is not supported with --algorithm {args.algorithm}")
    config = peer_config(args)
    try:  # before any work: the peers need the torchrl extra
        import coordopt.torchrl_env  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(str(exc)) from exc
    inst = load_instance(args.instance)
    log(
        f"training {config.algorithm} (TorchRL) on {inst.summary()}; information: "
        f"{config.information}, rewards: {config.rewards}, out: {args.out}"
    )
    # non-finite values raise FloatingPointError: coordopt.cli's error boundary reports them
    result = train_peer(inst, config, args.out, progress=not args.no_progress)
    if args.json:
        emit_json(result.as_dict())
        return 0
    rows: list[list[Any]] = [
        ["algorithm", result.algorithm],
        ["iterations", result.iterations],
        ["env steps", result.env_steps],
        ["steps / second", float(result.steps_per_second)],
    ]
    for label, ev in (("last iteration", result.final_eval), (f"best ({BEST})", result.best_eval)):
        if ev:
            rows.append([f"profit, greedy, {label}", float(ev["mean"])])
            rows.append(["  95% half-width", float(ev["ci95"])])
    print(table(["quantity", "value"], rows))
    print(
        f"run directory: {result.out_dir}  (evaluate with: coordopt evaluate {args.instance} "
        f"--policy {result.out_dir})"
    )
    return 0
