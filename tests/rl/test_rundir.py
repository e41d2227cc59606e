"""One run directory for every kind of run, and one training lifecycle for every trainer.

The lifecycle is driven here by a stand-in trainer whose evaluations are scripted, so its
schedule (evaluate, keep the best, checkpoint, time budget, resume) is checked in
milliseconds; the trainers themselves are checked end to end in ``test_train.py``,
``test_resume.py`` and ``tests/test_torchrl.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from coordopt.rl import lifecycle
from coordopt.rl.lifecycle import COLUMNS, Counters, Lifecycle, RunResult, Schedule
from coordopt.rl.peers import PeerResult
from coordopt.rl.rundir import (
    AGENTS_RUN,
    BEST,
    CHECKPOINT,
    CONFIG,
    FINAL,
    LOG,
    PEER_META,
    PEER_RUN,
    SUMMARY,
    CheckpointError,
    RunDir,
)

EVAL = {"mean": 1.0, "ci95": 0.5, "iteration": 3, "env_steps": 10, "seconds": 0.1}


def test_a_run_directory_names_only_the_files_its_kind_declares(tmp_path: Path) -> None:
    agents, peer = RunDir(tmp_path, AGENTS_RUN), RunDir(tmp_path, PEER_RUN)
    assert agents.file(CHECKPOINT) == tmp_path / "checkpoint.pt"
    assert {agents.file(n).name for n in (CONFIG, SUMMARY, LOG)} == {
        "config.json",
        "summary.json",
        "log.csv",
    }
    with pytest.raises(ValueError, match=r"has no 'notes\.txt'"):
        agents.file("notes.txt")
    with pytest.raises(ValueError, match=r"peer run directory has no 'checkpoint\.pt'"):
        peer.file(CHECKPOINT)  # a peer's run does not resume
    assert RunDir.at(tmp_path).kind is AGENTS_RUN and not agents.holds_run
    peer.write_json(PEER_META, {"format": "f", "config": {}, "instance": "tiny"})
    assert RunDir.at(tmp_path).kind is PEER_RUN and peer.holds_run and agents.holds_run
    assert not peer.finished and not agents.resumable


def test_json_is_written_atomically_and_read_back_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunDir(tmp_path / "run", PEER_RUN)
    meta = {"format": "f", "config": {"seed": 1}, "instance": "tiny"}
    run.write_json(PEER_META, meta)  # creates the directory
    assert run.read_config() == meta
    # interrupted half-way, a write leaves the earlier file whole and nothing beside it
    real = Path.write_text

    def half(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        real(self, text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(KeyboardInterrupt):
        run.write_json(PEER_META, {**meta, "instance": "small"})
    monkeypatch.undo()
    assert run.read_config() == meta and os.listdir(run.path) == [PEER_META]
    # what does not fit the kind's rule is refused naming the file and field
    run.write_json(PEER_META, {**meta, "instance": 3})
    with pytest.raises(CheckpointError, match=r"peer.json: field 'instance' must be a string"):
        run.read_config()


def test_either_kinds_summary_is_read_against_its_declared_rule(tmp_path: Path) -> None:
    run = RunDir(tmp_path, PEER_RUN)
    result = PeerResult(
        out_dir=tmp_path,
        iterations=3,
        env_steps=10,
        seconds=1.0,
        steps_per_second=10.0,
        final_eval=EVAL,
        best_eval=EVAL,
        history=[{"iteration": 0}],
        algorithm="mappo",
    )
    run.write_json(SUMMARY, result.as_dict())
    assert run.read_summary() == {**result.as_dict(), "out_dir": str(tmp_path)}
    assert "history" not in run.read_summary()
    # as the previous code wrote it: no "stop", evaluations without their seconds
    old = {k: v for k, v in result.as_dict().items() if k != "stop"}
    old["final_eval"] = {k: v for k, v in EVAL.items() if k != "seconds"}
    run.write_json(SUMMARY, old)
    assert run.read_summary()["final_eval"]["mean"] == 1.0
    run.write_json(SUMMARY, {**old, "iterations": "three"})
    with pytest.raises(CheckpointError, match=r"summary.json: field 'iterations'"):
        run.read_summary()


# --------------------------------------------------------------------------- the lifecycle


def _lifecycle(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    schedule: Schedule,
    means: tuple[float, ...] = (),
    progress: Counters | None = None,
    started: float | None = None,
) -> tuple[Lifecycle, list[str]]:
    """A lifecycle whose evaluations return ``means`` in turn; the names it saves, in order."""
    scripted: Iterator[float] = iter(means)

    def evaluate(*args: Any, **kwargs: Any) -> SimpleNamespace:
        mean = next(scripted)  # every episode earns the mean
        return SimpleNamespace(mean=mean, ci95=0.5, seconds=0.01, profit=np.full(4, mean))

    monkeypatch.setattr(lifecycle, "evaluate", evaluate)
    tmp_path.mkdir(parents=True, exist_ok=True)  # a trainer writes its configuration first
    saved: list[str] = []
    life = Lifecycle(
        RunDir(tmp_path, AGENTS_RUN),
        progress or Counters(),
        schedule,
        params=None,  # type: ignore[arg-type]  # the scripted evaluation reads none
        greedy=lambda: None,  # type: ignore[arg-type,return-value]
        save=saved.append,
        started=time.perf_counter() if started is None else started,
    )
    return life, saved


def _train(life: Lifecycle) -> None:
    """The stand-in trainer: every iteration takes 10 steps and 0.5 seconds."""
    for it in life.iterations("test", tensorboard=False, progress=False):
        life.record({"train_profit": float(it), "value_loss": 2.0 * it}, 10, 0.5)


def test_the_lifecycle_evaluates_keeps_the_best_and_checkpoints_on_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = Schedule(5, eval_every=2, eval_episodes=4, eval_seed=1, time_budget=0.0)
    schedule = dataclasses.replace(schedule, checkpoint_every=3)
    life, saved = _lifecycle(tmp_path, monkeypatch, schedule, (5.0, 3.0, 7.0, 6.0))
    life.begin()
    _train(life)
    result = life.finish(RunResult)
    # evaluated before training and after iterations 2, 4 and the last; best.pt when better;
    # the checkpoint every 3 iterations and after the last
    assert saved == [BEST, CHECKPOINT, CHECKPOINT, BEST, CHECKPOINT, FINAL]
    assert result.initial_eval["iteration"] == -1 and result.initial_eval["mean"] == 5.0
    assert (result.best_eval["mean"], result.best_eval["iteration"]) == (7.0, 3)
    assert result.best_eval["env_steps"] == 40
    # what training added, paired by episode with the evaluation before it
    assert (result.best_eval["vs_initial"], result.best_eval["vs_initial_ci95"]) == (2.0, 0.0)
    assert result.final_eval["mean"] == 6.0 and result.stop == "iterations"
    assert (result.iterations, result.env_steps, result.seconds) == (5, 50, 2.5)
    # one log schema: every column, those a run does not measure empty
    with (tmp_path / LOG).open(newline="") as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    rows = RunDir(tmp_path, AGENTS_RUN).read_log()
    assert [r["eval_profit"] for r in rows] == ["", "3.0", "", "7.0", "6.0"]
    assert [r["value_loss"] for r in rows] == ["0.0", "2.0", "4.0", "6.0", "8.0"]
    assert all(r["loss_objective"] == r["siloed_profit"] == "" for r in rows)
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert summary == json.loads(json.dumps(result.as_dict())) and "history" not in summary


def test_the_time_budget_stops_after_the_iteration_that_leaves_too_little(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one_second = 1 / 60
    for checkpoint_every, hint in ((1, True), (0, False)):
        schedule = Schedule(10, 0, 4, 1, time_budget=one_second, checkpoint_every=checkpoint_every)
        # half the budget is gone: after one iteration of 0.5 s another would overrun it
        started = time.perf_counter() - 0.6
        life, saved = _lifecycle(tmp_path / str(hint), monkeypatch, schedule, started=started)
        _train(life)
        result = life.finish(RunResult)
        assert result.stop == "time_budget" and result.iterations == 1
        assert saved == ([CHECKPOINT] if checkpoint_every else []) + [FINAL]
        err = capsys.readouterr().err
        assert "time budget of 0.0166667 minutes" in err
        assert ("Continue with --resume" in err) == hint  # a peer's run does not resume


def test_a_resumed_run_logs_as_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = Schedule(4, 0, 4, 1, 0.0, checkpoint_every=1)
    whole, _ = _lifecycle(tmp_path / "whole", monkeypatch, schedule)
    _train(whole)
    shorter = dataclasses.replace(schedule, iterations=3)
    first, _ = _lifecycle(tmp_path / "split", monkeypatch, shorter)
    _train(first)
    # the log as the previous code wrote it (its own column order, no peer columns) ...
    log = tmp_path / "split" / LOG
    rows = RunDir(tmp_path / "split", AGENTS_RUN).read_log()
    old = [c for c in reversed(COLUMNS) if not c.startswith("loss_")]
    with log.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    # ... resumed from the checkpoint of iteration 2: the rows from 2 on are written again
    progress = Counters(iteration=2, env_steps=20, seconds=1.0)
    second, _ = _lifecycle(tmp_path / "split", monkeypatch, schedule, progress=progress)
    _train(second)
    assert log.read_text() == (tmp_path / "whole" / LOG).read_text()


def test_a_resumed_run_pairs_its_evaluations_with_the_kept_profits_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-episode profits of the evaluation before training live in the trainer's state
    (its checkpoint keeps them): a resumed session pairs its evaluations with them, unless
    ``--eval-episodes`` changed (then it says so, reports no ``vs_initial`` and keeps none)."""
    schedule = Schedule(2, eval_every=1, eval_episodes=4, eval_seed=1, time_budget=0.0)
    first, _ = _lifecycle(tmp_path / "first", monkeypatch, schedule, (5.0,))
    first.begin()
    kept = first.progress.initial_profits
    assert kept == [5.0] * 4
    for episodes, paired in ((4, True), (8, False)):
        progress = Counters(iteration=1, initial_profits=list(kept))
        later = dataclasses.replace(schedule, eval_episodes=episodes)
        life, _ = _lifecycle(tmp_path / str(episodes), monkeypatch, later, (7.0,), progress)
        _train(life)
        assert ("vs_initial" in life.final_eval) == paired
        assert ("no vs_initial" in capsys.readouterr().err) is not paired
        if paired:
            assert (life.final_eval["vs_initial"], life.final_eval["vs_initial_ci95"]) == (2.0, 0.0)
        assert progress.initial_profits == (kept if paired else [])
