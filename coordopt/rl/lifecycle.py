"""The training lifecycle shared by coordopt's agents and the TorchRL peers.

A trainer keeps its algorithm -- one iteration of rollouts and updates, read top to bottom --
and hands the run to :class:`Lifecycle`:

- the run directory (:class:`~coordopt.rl.rundir.RunDir`): checkpoints, log and summary;
- the greedy evaluation before training (iteration -1: after a warm start, the clone),
  every ``eval_every`` iterations and after the last, on a fixed stream (common random
  numbers across evaluations), beside the baselines' evaluations on the same stream; every
  later evaluation is also paired with the one before training, episode by episode
  (``vs_initial``: what learning added, with its 95% half-width);
- the best policy so far in ``best.pt`` (model selection on that stream: report the chosen
  policy on another, or the selection biases the figure upward);
- the resumable checkpoint every ``checkpoint_every`` iterations and after the last (a run
  with one: the agents');
- the time budget: the run stops after the iteration that leaves less than one more
  iteration and its evaluation, and says so (``stop``);
- resume: the counters and evaluations live in the trainer's state (:class:`Progress`),
  which its checkpoint restores (the per-episode profits before training too, so a resumed
  run pairs its evaluations with them as an uninterrupted one does); the log drops the rows
  at or after the resumed iteration, so the log of a resumed run equals an uninterrupted one's;
- one log schema (:data:`COLUMNS`): a CSV row per iteration, with its environment steps per
  second; TensorBoard scalars (when enabled and installed); a progress bar.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from coordopt.evaluation import ci_halfwidth, evaluate
from coordopt.policies import Policy
from coordopt.rl.rundir import BEST, CHECKPOINT, FINAL, LOG, SUMMARY, TENSORBOARD, RunDir
from coordopt.simulator import SimParams

COLUMNS = (
    # every run: the lifecycle's counters and the iteration's mean training profit
    "iteration",
    "env_steps",
    "seconds",
    "steps_per_second",
    "train_profit",
    # coordopt's agents (coordopt.rl.ppo)
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
    # TorchRL's peers (coordopt.rl.peers): ClipPPOLoss's terms, summed over both groups
    "loss_objective",
    "loss_critic",
    "loss_entropy",
    # the evaluations: the greedy policy's, and the baselines' of the run (agents: siloed, null)
    "eval_profit",
    "eval_ci95",
    "eval_vs_initial",
    "eval_vs_initial_ci95",
    "siloed_profit",
    "null_profit",
    "gap_vs_siloed",
)
"""The training log's columns, one schema for every kind of run (a run leaves the columns it
does not measure empty). ``clipfrac_*``: the fraction of samples whose probability ratio left
the clip range, over the iteration's update of that agent (empty when it did not update): of
env-periods with joint credit, of decisions (orders, slates) with credit per decision, whose
``kl_*`` is still per env-period (the sum over its decisions). ``eval_vs_initial``: the
evaluation minus the one before training, paired by episode, and its 95% half-width."""


class Progress(Protocol):
    """A run's counters and evaluations, kept in the trainer's state (an agents' checkpoint
    saves and restores them with the rest; a peer's run holds only :class:`Counters`)."""

    iteration: int
    env_steps: int
    seconds: float
    baselines: dict[str, float]
    initial_eval: dict[str, float]
    best_eval: dict[str, float]
    initial_profits: list[float]


@dataclass
class Counters:
    """:class:`Progress` of a run that keeps nothing else (a TorchRL peer's)."""

    iteration: int = 0
    env_steps: int = 0
    seconds: float = 0.0
    baselines: dict[str, float] = field(default_factory=dict)
    initial_eval: dict[str, float] = field(default_factory=dict)
    best_eval: dict[str, float] = field(default_factory=dict)
    initial_profits: list[float] = field(default_factory=list)
    """Per-episode profits of the evaluation before training (empty: none made), which every
    later evaluation is paired with (``vs_initial``)."""


@dataclass(frozen=True)
class Schedule:
    """When a run evaluates, checkpoints and stops: fields of its configuration."""

    iterations: int
    eval_every: int
    """Evaluate every this many iterations and after the last (0: never)."""
    eval_episodes: int
    eval_seed: int
    time_budget: float
    """Minutes (0: none)."""
    checkpoint_every: int = 0
    """Write the resumable checkpoint every this many iterations and after the last (0: the
    run has none)."""

    @classmethod
    def of(cls, config: Any) -> Schedule:
        """The schedule of a trainer's configuration: its fields of these names (one without
        ``checkpoint_every`` has no resumable checkpoint)."""
        return cls(
            **{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        )


@dataclass(kw_only=True)
class RunResult:
    """What a training run produced (also written to ``OUT/summary.json``, less ``history``)."""

    out_dir: Path
    iterations: int
    env_steps: int
    seconds: float  # training time, evaluations excluded
    steps_per_second: float
    final_eval: dict[str, float]
    initial_eval: dict[str, float] = field(default_factory=dict)
    """The policy before training (iteration -1)."""
    best_eval: dict[str, float] = field(default_factory=dict)
    """The best greedy evaluation: the policy in ``best.pt``; its ``vs_initial`` and
    ``vs_initial_ci95``: what training added to the policy before it (after a warm start, the
    clone), paired on the evaluation stream (absent for an evaluation made after a resume
    with another ``--eval-episodes``, or from a checkpoint written before the per-episode
    profits were kept)."""
    stop: str = "iterations"
    """Why this session of the run ended: ``iterations`` (all of ``--iterations`` done) or
    ``time_budget`` (``--time-budget`` ran out first: the number of iterations then depends
    on the machine's speed, not on the seed)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """This session's log rows."""

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "history"}
        out["out_dir"] = str(self.out_dir)
        return out


R = TypeVar("R", bound=RunResult)


class Lifecycle:
    """The run around a trainer's iterations (see the module doc)::

        life = Lifecycle(run_dir, progress, schedule, params, greedy, save, started)
        life.begin()  # a new run (not a resumed one)
        for iteration in life.iterations(desc, tensorboard, progress):
            ...  # one iteration of the algorithm
            life.record(stats, steps, seconds)
        return life.finish(Result, **fields)

    ``greedy()`` makes the trainer's current policy, acting greedily, to evaluate on
    ``params``; ``save(name)`` writes the trainer's checkpoint ``name`` of ``run_dir``;
    ``started`` is the ``time.perf_counter()`` the time budget counts from; ``baselines`` name
    the policies evaluated on the same stream before training, which the log compares with
    (the agents': ``siloed``, ``null``); ``closing_evaluations`` how many more evaluations the
    trainer makes after the last iteration (the time budget leaves room for them).
    """

    def __init__(
        self,
        run_dir: RunDir,
        progress: Progress,
        schedule: Schedule,
        params: SimParams,
        greedy: Callable[[], Policy],
        save: Callable[[str], None],
        started: float,
        baselines: tuple[str, ...] = (),
        closing_evaluations: int = 0,
    ) -> None:
        self.run_dir = run_dir
        self.progress = progress
        self.schedule = schedule
        self.params = params
        self.greedy = greedy
        self.save = save
        self.started = started
        self.baselines = baselines
        self.closing_evaluations = closing_evaluations
        self.stop = "iterations"
        self.final_eval: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.eval_seconds = 0.0
        self.log: TrainLog | None = None

    def begin(self) -> None:
        """Start a new run (after any warm start): evaluate the baselines and the policy before
        training, keep that as the best so far, write the first resumable checkpoint."""
        p, s = self.progress, self.schedule
        if s.eval_every > 0:
            for name in self.baselines:
                p.baselines[name] = evaluate(
                    self.params, name, s.eval_episodes, seed=s.eval_seed
                ).mean
            p.initial_eval = self._evaluate(-1)
            self._keep_if_best(p.initial_eval)
        if s.checkpoint_every > 0:
            self.save(CHECKPOINT)

    def iterations(self, desc: str, tensorboard: bool, progress: bool) -> Iterator[int]:
        """The iterations left to train (from the resumed one), the log open meanwhile; the
        trainer ends each with :meth:`record`."""
        p, s = self.progress, self.schedule
        self.log = TrainLog(self.run_dir, p.iteration, s.iterations, desc, tensorboard, progress)
        self.eval_seconds = p.initial_eval.get("seconds", 0.0)
        if p.initial_profits and len(p.initial_profits) != s.eval_episodes:
            print(
                f"coordopt train: the evaluation before training had {len(p.initial_profits)} "
                f"episodes, --eval-episodes is now {s.eval_episodes}; later evaluations are not "
                "paired with it (no vs_initial)",
                file=sys.stderr,
            )
            p.initial_profits = []
        while p.iteration < s.iterations and self.stop == "iterations":
            yield p.iteration
        self.log.close()

    def record(self, stats: Mapping[str, float], steps: int, seconds: float) -> None:
        """End the iteration that took ``steps`` environment steps and ``seconds`` of training
        and measured ``stats`` (its log columns): count it, evaluate when due and keep the
        best, log it, checkpoint when due, stop when the iterations or the time run out."""
        assert self.log is not None, "record() ends an iteration of iterations()"
        p, s = self.progress, self.schedule
        it = p.iteration
        p.env_steps += steps
        p.seconds += seconds
        p.iteration += 1
        row: dict[str, float] = {
            "iteration": it,
            "env_steps": p.env_steps,
            "seconds": round(p.seconds, 3),
            "steps_per_second": steps / max(seconds, 1e-9),
            **stats,
            "siloed_profit": p.baselines.get("siloed", math.nan),
            "null_profit": p.baselines.get("null", math.nan),
        }
        # the budget leaves room for the last iteration's evaluation (and the closing ones) too
        evals = 1 + self.closing_evaluations if s.eval_every > 0 else 0
        evaluating = seconds + evals * self.eval_seconds
        if p.iteration < s.iterations and self._out_of_time(evaluating):
            self.stop = "time_budget"
        last = p.iteration >= s.iterations or self.stop == "time_budget"
        if s.eval_every > 0 and (p.iteration % s.eval_every == 0 or last):
            self.final_eval = self._evaluate(it)
            self.eval_seconds = self.final_eval["seconds"]
            row.update(eval_profit=self.final_eval["mean"], eval_ci95=self.final_eval["ci95"])
            if "vs_initial" in self.final_eval:
                row.update(
                    eval_vs_initial=self.final_eval["vs_initial"],
                    eval_vs_initial_ci95=self.final_eval["vs_initial_ci95"],
                )
            siloed = p.baselines.get("siloed")
            if siloed:
                row["gap_vs_siloed"] = (self.final_eval["mean"] - siloed) / abs(siloed)
            self._keep_if_best(self.final_eval)
        self.log.write(row)
        self.history.append(row)
        if s.checkpoint_every > 0 and (p.iteration % s.checkpoint_every == 0 or last):
            self.save(CHECKPOINT)

    def finish(self, result: Callable[..., R], **extra: Any) -> R:
        """End the run: save the final policy, write the summary -- ``result`` of the counters,
        the evaluations and the trainer's ``extra`` fields -- and return it."""
        p = self.progress
        self.save(FINAL)
        out = result(
            out_dir=self.run_dir.path,
            iterations=p.iteration,
            env_steps=p.env_steps,
            seconds=p.seconds,
            steps_per_second=p.env_steps / max(p.seconds, 1e-9),
            final_eval=self.final_eval,
            initial_eval=p.initial_eval,
            best_eval=p.best_eval,
            stop=self.stop,
            history=self.history,
            **extra,
        )
        self.run_dir.write_json(SUMMARY, out.as_dict())
        return out

    def _evaluate(self, iteration: int) -> dict[str, float]:
        """The greedy policy on the evaluation stream (``iteration`` -1: before training);
        ``seconds``: how long it took; ``vs_initial`` (and its ``_ci95``): minus the evaluation
        before training, paired by episode (its profits kept in :class:`Progress`)."""
        s = self.schedule
        ev = evaluate(self.params, self.greedy(), s.eval_episodes, seed=s.eval_seed)
        out = {
            "mean": ev.mean,
            "ci95": ev.ci95,
            "iteration": iteration,
            "env_steps": self.progress.env_steps,
            "seconds": ev.seconds,
        }
        initial = self.progress.initial_profits
        if iteration < 0:
            self.progress.initial_profits = [float(x) for x in ev.profit]
            out.update(vs_initial=0.0, vs_initial_ci95=0.0)
        elif initial and len(initial) == len(ev.profit):
            diff = ev.profit - np.asarray(initial, dtype=ev.profit.dtype)
            out.update(vs_initial=float(diff.mean()), vs_initial_ci95=ci_halfwidth(diff))
        return out

    def _keep_if_best(self, ev: dict[str, float]) -> None:
        """Save the policy as ``best.pt`` when ``ev`` beats every earlier evaluation."""
        best = self.progress.best_eval
        if best and ev["mean"] <= best["mean"]:
            return
        self.progress.best_eval = dict(ev)
        self.save(BEST)

    def _out_of_time(self, iteration_seconds: float) -> bool:
        """Whether another iteration and its evaluation (``iteration_seconds``, as long as the
        last ones) would overrun the time budget."""
        minutes = self.schedule.time_budget
        if minutes <= 0 or time.perf_counter() - self.started + iteration_seconds <= 60 * minutes:
            return False
        resume = (
            " Continue with --resume --time-budget MINUTES"
            if self.schedule.checkpoint_every
            else ""
        )
        print(
            f"coordopt train: the time budget of {minutes:g} minutes leaves less than one "
            f"more iteration and its evaluation ({iteration_seconds:.0f} s); stopping after "
            f"this one.{resume}",
            file=sys.stderr,
        )
        return True


class TrainLog:
    """``OUT/log.csv`` (:data:`COLUMNS`), ``OUT/tb`` (when enabled and installed) and a tqdm
    bar to stderr."""

    def __init__(
        self, run_dir: RunDir, start: int, total: int, desc: str, tensorboard: bool, progress: bool
    ) -> None:
        self.path = run_dir.file(LOG)
        rows: list[dict[str, str]] = []
        if start > 0 and self.path.is_file():
            rows = [r for r in run_dir.read_log() if int(r["iteration"]) < start]
        with self.path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        self.writer = _tensorboard(run_dir.file(TENSORBOARD)) if tensorboard else None
        self.bar = tqdm(
            total=total,
            initial=min(start, total),
            desc=desc,
            disable=not progress,
            file=sys.stderr,
            unit="it",
        )

    def write(self, row: dict[str, float]) -> None:
        """Append one iteration's row (NaN and missing values as empty cells)."""
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=COLUMNS).writerow(
                {k: "" if _missing(row.get(k)) else row[k] for k in COLUMNS}
            )
        if self.writer is not None:
            for k, v in row.items():
                if k != "iteration" and isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(k, v, row["iteration"])
        self.bar.update(1)
        self.bar.set_postfix(
            profit=f"{row['train_profit']:.1f}",
            sps=f"{row['steps_per_second']:.0f}",
            **({"eval": f"{row['eval_profit']:.1f}"} if "eval_profit" in row else {}),
        )

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "coordopt train: tensorboard is not installed; logging to CSV only "
            "(pip install tensorboard, or pass --no-tensorboard to silence this)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(str(folder))
