"""Shared pieces of the sub-commands: output, tables, common flags."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.guards import PolicyWork, check_size, estimate, output_claims
from coordopt.policies import PolicySpec, policy_names
from coordopt.text import table

__all__ = [
    "FlagRule",
    "_plain",
    "add_instance_arg",
    "add_json_flag",
    "applies_with",
    "command",
    "declare_flag_rules",
    "emit_json",
    "log",
    "table",
]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object on stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_plain(obj)) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    """Progress and notes: stderr, so stdout stays clean for --json."""
    print(msg, file=sys.stderr, flush=True)


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def add_instance_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "instance", help="instance file (.toml/.npz) or bundled name: tiny, small, medium, large"
    )


def guard_size(
    args: argparse.Namespace,
    inst: Any,
    *,
    what: str,
    way_out: str,
    budget_seconds: float = 0.0,
    **work: Any,
) -> None:
    """Refuse (unless ``--force``) work on ``inst`` whose estimate is beyond the limits;
    ``work``: the workload keywords of :func:`coordopt.guards.estimate`; ``budget_seconds``
    (> 0): a budget that stops the work in time caps its time estimate."""
    est = estimate(inst.horizon, inst.n_segments, inst.n_products, **work)
    if budget_seconds > 0:
        est = dataclasses.replace(est, seconds=min(est.seconds, budget_seconds))
    check_size(est, force=getattr(args, "force", False), what=what, way_out=way_out)


def check_policy(text: str, flag: str, *, options: bool = True) -> PolicySpec:
    """The spec of a policy flag (``NAME[:KEY=VALUE;...]`` where ``options``, else a bare
    name), refused at once (``ValueError``) if it is neither a registered name nor a run
    directory: before any work, not after the policies before it have been simulated."""
    spec = PolicySpec.parse(text) if options else PolicySpec(text)
    if spec.name in policy_names() or Path(spec.name).is_dir():
        return spec
    raise ValueError(
        f"{flag}: unknown policy '{text}': expected one of {', '.join(policy_names())}"
        + (" (NAME:KEY=VALUE;... for options)" if options else "")
        + " or the directory of a trained agent (coordopt train --out DIR)"
    )


def policy_work(
    spec: str | PolicySpec, episodes: int, horizon: int, options: dict[str, Any] | None = None
) -> dict[str, int]:
    """What simulating a policy (``NAME[:KEY=VALUE;...]`` or a run directory) for ``episodes``
    episodes adds to the workload of :func:`coordopt.guards.estimate`: its entry's declared
    work with its options over ``options`` (:class:`~coordopt.guards.PolicyWork`), or a
    trained run's network width (its additive scorer)."""
    spec = PolicySpec.parse(spec) if isinstance(spec, str) else spec
    if spec.name in policy_names():
        return spec.workload(options or {}).workload(episodes, horizon)
    return PolicyWork(agent_hidden=_agent_width(Path(spec.name))).workload(episodes, horizon)


def _agent_width(run: Path) -> int:
    """The width of a trained run's additive slate scorer (0: another scorer, or unknown),
    from its saved training configuration, read as untrusted input."""
    try:
        from coordopt.rl.rundir import AGENTS_RUN, RunDir

        saved = RunDir(run, AGENTS_RUN).read_config()
        if saved.get("scorer", "additive") == "additive":
            return int(saved.get("hidden_size", 64))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return 0


# --------------------------------------------------------------------------- flags that apply


@dataclasses.dataclass(frozen=True)
class FlagRule:
    """A flag that means something only in some settings of the others: ``applies(args)``
    says whether it does, ``where`` says when (\"with --method fluid\"), ``actual(args)``
    what was given instead. Given where it does not apply, it is refused, not ignored."""

    dest: str
    applies: Callable[[argparse.Namespace], bool]
    where: str
    actual: Callable[[argparse.Namespace], str] = lambda args: ""


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def applies_with(
    selector: str,
    table: dict[str, Collection[Any]],
    *,
    default: Any = None,
    label: Callable[[Any], str] | None = None,
) -> list[FlagRule]:
    """The rules of a table ``{flag dest: the values of the selector flag it applies to}``,
    e.g. ``applies_with("method", {"gap": ["decompose"]})``; ``default``: the selector's value
    when it is absent from the parsed flags; ``label``: a selector value in words (default
    ``with --SELECTOR VALUE``)."""
    say = label or (lambda value: f"with {_flag(selector)} {value}")

    def value(args: argparse.Namespace) -> Any:
        return vars(args).get(selector, default)

    def where(allowed: Collection[Any]) -> str:
        if label is not None:
            return " or ".join(say(v) for v in allowed)
        *most, last = [str(v) for v in allowed]
        return f"with {_flag(selector)} " + (f"{', '.join(most)} or {last}" if most else last)

    def given(args: argparse.Namespace) -> str:
        return say(value(args))

    def rule(dest: str, allowed: tuple[Any, ...]) -> FlagRule:
        return FlagRule(dest, lambda args: value(args) in allowed, where(allowed), given)

    return [rule(dest, tuple(allowed)) for dest, allowed in table.items()]


def declare_flag_rules(p: argparse.ArgumentParser, rules: Sequence[FlagRule]) -> None:
    """Attach a command's :class:`FlagRule` list to its parser (after its flags are added);
    :func:`command` checks it before any work. A flag counts as given when it is present and
    differs from its default."""
    defaults = {rule.dest: p.get_default(rule.dest) for rule in rules}
    p.set_defaults(_flag_rules=(tuple(rules), defaults))


def check_flag_rules(args: argparse.Namespace) -> None:
    """Refuse (``ValueError``, naming the flag, where it applies and what was given) every
    flag given where its :class:`FlagRule` says it does not apply."""
    rules, defaults = vars(args).get("_flag_rules", ((), {}))
    for rule in rules:
        given = vars(args).get(rule.dest, defaults[rule.dest])
        if given == defaults[rule.dest] or given is argparse.SUPPRESS:
            continue
        if not rule.applies(args):
            actual = rule.actual(args)
            raise ValueError(
                f"{_flag(rule.dest)}: applies only {rule.where}"
                + (f", not {actual}" if actual else "")
                + "; leave it out"
            )


def command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The frame of every command's ``run``: before any work, the flags that do not apply
    (:func:`declare_flag_rules`) are refused; while it runs, the outputs it claims
    (:func:`coordopt.guards.claim_out`) stay locked against a second writer, and they are
    released however it ends."""

    @functools.wraps(run)
    def framed(args: argparse.Namespace) -> int:
        check_flag_rules(args)
        with output_claims():
            return run(args)

    return framed
