"""One writer per output: every command that writes ``--out`` holds an exclusive lock on it for
its whole run, so a second run into the same output is refused at once (exit 5) naming the
first, whose result stays intact; a crashed run's lock file blocks nobody."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from coordopt import guards, load_instance
from coordopt.cli import main
from coordopt.guards import LOCK_NAME, ExitCode, claim_out, lock_file, output_claims

HOLDER = """
import sys
from coordopt.guards import claim_out, output_claims
with output_claims():
    for path, folder in ((sys.argv[1], True), (sys.argv[2], False), (sys.argv[3], False)):
        claim_out(path, folder=folder, force=True)
    (__import__("pathlib").Path(sys.argv[1]) / "result.txt").write_text("the holder's")
    print("ready", flush=True)
    sys.stdin.read()
"""


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line]


@pytest.fixture
def holder(tmp_path):
    """Another process writing ``tmp_path/out`` (a folder), ``x.toml`` and ``p.npz``."""
    paths = [tmp_path / "out", tmp_path / "x.toml", tmp_path / "p.npz"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, paths)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    yield SimpleNamespace(proc=proc, folder=paths[0], file=paths[1], npz=paths[2])
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "tiny", "--out", "{out}", "--iterations", "0"],
        ["train", "tiny", "--out", "{out}", "--resume"],
        ["insights", "tiny", "--out", "{out}", "--no-plots", "--force"],
        ["reproduce", "timescales", "--quick", "--out", "{out}"],
        ["demo", "--out", "{out}", "--episodes", "2"],
        ["generate", "--out", "{toml}", "--force"],
        ["solve", "tiny", "--out", "{npz}", "--force"],
        ["calibrate", "tafeng", "--out", "{toml}", "--force"],
        ["calibrate", "tafeng", "--report", "{out}", "--force"],
    ],
)
def test_a_second_writer_is_refused_at_once_naming_the_first(holder, capsys, argv):
    argv = [
        a.format(out=holder.folder, toml=holder.file, npz=holder.npz) if "{" in a else a
        for a in argv
    ]
    assert main(argv) == ExitCode.OUTPUT
    (line,) = errors(capsys)
    assert "another coordopt run is writing it" in line
    assert f"pid {holder.proc.pid} " in line and "started" in line and "-c" in line
    # the first writer's output is intact: nothing added, nothing replaced
    assert sorted(p.name for p in holder.folder.iterdir()) == [LOCK_NAME, "result.txt"]
    assert (holder.folder / "result.txt").read_text() == "the holder's"
    assert not holder.file.exists() and not holder.npz.exists()


def test_a_crashed_writer_leaves_a_lock_file_that_blocks_nobody(holder, tmp_path, capsys):
    argv = ["generate", "--out", str(holder.file), "--n-products", "3", "--n-segments", "2"]
    assert main(argv) == ExitCode.OUTPUT
    holder.proc.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops its locks
    holder.proc.wait()
    stale = lock_file(holder.file, folder=False)
    assert stale.exists() and str(holder.proc.pid) in stale.read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert load_instance(holder.file).n_products == 3
    assert not stale.exists()  # taken over, then removed at the end of the run
    folder_lock = holder.folder / LOCK_NAME
    assert folder_lock.exists()
    argv = ["insights", "tiny", "--out", str(holder.folder), "--no-plots", "--force"]
    assert main(argv) == 0
    assert not folder_lock.exists() and (holder.folder / "insights.json").exists()


def test_concurrent_generates_without_force_one_writes_the_others_are_refused(
    tmp_path, monkeypatch, capsys
):
    """Three ``generate --out SAME`` started together (threads: each its own writer), each
    generating for a while, as a large catalog does."""
    from coordopt.commands import generate

    real = generate.generate_instance

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "generate_instance", slow)
    out = tmp_path / "same.toml"
    argv = ["generate", "--out", str(out), "--n-products", "4", "--n-segments", "2"]
    codes: dict[int, int] = {}
    go = threading.Barrier(3)

    def one(seed: int) -> None:
        go.wait()
        codes[seed] = main([*argv, "--seed", str(seed)])

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes.values()) == [0, ExitCode.OUTPUT, ExitCode.OUTPUT], codes
    lines = errors(capsys)
    assert len(lines) == 2  # refused by the lock, or (the winner done) as the file now exists
    assert all(str(out) in line for line in lines)
    assert all("another coordopt run" in line or "--force" in line for line in lines)
    winner = next(seed for seed, code in codes.items() if code == 0)
    assert load_instance(out).name == f"synthetic-n4-m2-s{winner}"
    assert sorted(os.listdir(tmp_path)) == ["same.toml"]  # no lock or temporary file left


def test_two_trainings_into_one_folder_one_is_refused_the_other_intact(
    tmp_path, monkeypatch, capsys
):
    """Two ``train`` runs started together (threads; the first is held inside training)."""
    from coordopt.rl import ppo

    inside, finish = threading.Event(), threading.Event()

    def slow_train(inst, config, out_dir, **kwargs):
        if not inside.is_set():  # the first run: still training while the second starts
            inside.set()
            assert finish.wait(60)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with (Path(out_dir) / "log.csv").open("a") as log:  # as the trainer appends its rows
            log.write("iteration\n0\n")
        return SimpleNamespace(as_dict=lambda: {"out_dir": str(out_dir)})

    monkeypatch.setattr(ppo, "train", slow_train)
    out = tmp_path / "run"
    argv = ["train", "tiny", "--out", str(out), "--iterations", "0", "--json"]
    codes: list[int] = []
    first = threading.Thread(target=lambda: codes.append(main(argv)))
    first.start()
    try:
        assert inside.wait(60)
        second = main(argv)
    finally:
        finish.set()
        first.join(60)
    assert second == ExitCode.OUTPUT and codes == [0]
    err = capsys.readouterr().err
    assert f"another coordopt run is writing it (pid {os.getpid()} " in err
    assert (out / "log.csv").read_text() == "iteration\n0\n"  # one run's log, not two
    assert sorted(os.listdir(out)) == ["log.csv"]  # the lock file went with the run


def test_two_studies_into_one_folder_one_is_refused(tmp_path, monkeypatch, capsys):
    from coordopt.commands import reproduce

    inside, finish = threading.Event(), threading.Event()

    def slow_study(name, out, **kwargs):
        if not inside.is_set():  # the first run: still running its cells while the second starts
            inside.set()
            assert finish.wait(60)
        (Path(out) / "cells").mkdir(parents=True, exist_ok=True)
        report = Path(out) / "report.md"
        with report.open("a") as fh:  # as a study's curve logs are appended to
            fh.write("one study\n")
        return report

    monkeypatch.setattr(reproduce, "run_study", slow_study)
    out = tmp_path / "study"
    argv = ["reproduce", "timescales", "--quick", "--out", str(out), "--json"]
    codes: list[int] = []
    first = threading.Thread(target=lambda: codes.append(main(argv)))
    first.start()
    try:
        assert inside.wait(60)
        second = main(argv)  # would resume the same study: refused while the first runs
    finally:
        finish.set()
        first.join(60)
    assert second == ExitCode.OUTPUT and codes == [0]
    assert "another coordopt run is writing it" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "one study\n"


def test_run_study_takes_the_same_lock_and_nests_inside_reproduce(tmp_path):
    out = tmp_path / "s"
    with output_claims():
        claim_out(out, folder=True, force=False)
        # the same thread claiming again (reproduce, then run_study): nested, not refused
        claim_out(out, folder=True, force=True)
        assert (out / LOCK_NAME).exists()
        failure: list[BaseException] = []

        def other() -> None:
            try:
                with output_claims():
                    claim_out(out, folder=True, force=True)
            except guards.OutputError as exc:
                failure.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert failure and "another coordopt run" in str(failure[0])
    assert not out.exists()  # made for the lock, empty at the end: removed


def test_refused_runs_leave_no_lock_files_or_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(guards, "TIME_LIMIT", 1e-9)  # the size guard refuses after the claim
    out = tmp_path / "a" / "b" / "run"
    assert main(["train", "tiny", "--out", str(out)]) == ExitCode.TOO_LARGE
    assert not (tmp_path / "a").exists()
    file_out = tmp_path / "new" / "x.toml"
    assert main(["generate", "--out", str(file_out)]) == ExitCode.TOO_LARGE
    assert not (tmp_path / "new").exists()
    # a lock file alone does not make a folder non-empty
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / LOCK_NAME).write_text(json.dumps({"pid": 1}))
    guards.check_out(tmp_path / "empty", folder=True, force=False)
