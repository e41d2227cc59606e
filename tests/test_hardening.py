"""Hostile input ends in a clear refusal (exit 2, 4 or 5 naming the file, field and value) or
the right answer -- never exit 70, never exit 0 with a nonsensical result (issue 22).

Peer run directories (TorchRL's MAPPO/IPPO) are read by the same run-directory reader as the
agents' (their checkpoint cases are in ``tests/rl/test_checkpoint.py``); instance values stay
in ranges that keep the arithmetic finite; Ctrl-C stops HiGHS at once; an unreachable Ray
head is an error, not a wait.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from run_dirs import copy_run

from coordopt.cli import main
from coordopt.instance import InstanceError, load_instance, save_instance
from coordopt.simulator import SimParams

COORDOPT = [sys.executable, "-m", "coordopt.cli"]


def _evaluate(
    run: Path | str, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, str]:
    spec = str(run) + (":" + ";".join(options) if options else "")
    code = main(["evaluate", "tiny", "--policy", spec, "--episodes", "2"])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- peer run directories


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peer run directory as ``train_peer`` writes it (untrained actors: no training)."""
    pytest.importorskip("torchrl")
    from coordopt.rl.peers import FORMAT, Layout, PeerConfig, _blob, build_networks
    from coordopt.rl.rundir import PEER_META, PEER_RUN, RunDir

    params = SimParams.from_instance(load_instance("tiny"))
    config = PeerConfig(hidden_size=8, depth=1)
    layout = Layout.of(params, config)
    actors, critics = build_networks(params, layout, config)
    out = tmp_path_factory.mktemp("peer") / "mappo"
    out.mkdir()
    meta = {"format": FORMAT, "config": dataclasses.asdict(config), "instance": "tiny"}
    (out / PEER_META).write_text(json.dumps(meta))
    for name in ("best.pt", "final.pt"):
        RunDir(out, PEER_RUN).save(name, _blob(actors, critics, layout))
    return out


def test_a_peer_run_evaluates(peer_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "tiny", "--policy", str(peer_run), "--episodes", "2"]) == 0
    assert _evaluate(peer_run, capsys, "checkpoint=final.pt", "deterministic=false")[0] == 0


def test_a_peer_checkpoint_linking_out_is_refused(
    peer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((peer_run / "best.pt").read_bytes())
    run = copy_run(peer_run, tmp_path / "run")
    (run / "best.pt").unlink()
    (run / "best.pt").symlink_to(outside)
    code, err = _evaluate(run, capsys)
    assert code == 2 and "best.pt: links out of the run directory" in err


def test_a_peer_loads_only_its_own_checkpoints(
    peer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((peer_run / "best.pt").read_bytes())
    for bad in (str(outside), "../mappo/best.pt", "peer.json", "checkpoint.pt"):
        code, err = _evaluate(peer_run, capsys, f"checkpoint={bad}")
        assert code == 2 and "must be one of best.pt, final.pt" in err, err


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's payload would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "content",
    [
        "{oops",
        '{"format": "coordopt-torchrl-peer/1", "config": 5, "instance": "tiny"}',
        '{"format": "coordopt-torchrl-peer/1", "config": {"sneaky": 1}, "instance": "tiny"}',
        '{"format": "coordopt-torchrl-peer/1", "config": {"seed": "x"}, "instance": "tiny"}',
        '{"format": "coordopt-torchrl-peer/1", "config": {}, "instance": 3}',
        '{"format": "something else", "config": {}, "instance": "tiny"}',
        '{"format": "coordopt-torchrl-peer/1", "config": {}, "instance": "t", "x": '
        + _deep(50)
        + "}",
        _deep(100_000),
        "\xff\xfe not text",
    ],
)
def test_a_malformed_peer_json_is_refused_naming_it(
    peer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    run = copy_run(peer_run, tmp_path / "run")
    (run / "peer.json").write_bytes(content.encode("latin-1"))
    code, err = _evaluate(run, capsys)
    assert code == 2 and "peer.json" in err, err


@pytest.mark.parametrize(
    "case",
    [
        "pickle",
        "not a dict",
        "no layout",
        "no recommendation actor",
        "wrong shape",
        "nan",
        "integer",
        "unexpected weight",
        "truncated",
    ],
)
def test_a_malformed_peer_checkpoint_is_refused_naming_it(
    peer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    run = copy_run(peer_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    blob = torch.load(run / "best.pt", weights_only=True)
    actor = blob["actors"]["replenishment"]
    key = next(k for k, v in actor.items() if v.dim() == 2)
    if case == "pickle":
        blob = {"format": blob["format"], "layout": Payload(marker)}
    elif case == "not a dict":
        blob = [1, 2, 3]
    elif case == "no layout":
        del blob["layout"]
    elif case == "no recommendation actor":
        del blob["actors"]["recommendation"]
    elif case == "wrong shape":
        actor[key] = torch.zeros(*actor[key].shape, 300)
    elif case == "nan":
        actor[key] = torch.full_like(actor[key], float("nan"))
    elif case == "integer":
        actor[key] = actor[key].to(torch.int64)
    elif case == "unexpected weight":
        actor["extra.weight"] = torch.zeros(2)
    torch.save(blob, run / "best.pt")
    if case == "truncated":
        data = (run / "best.pt").read_bytes()
        (run / "best.pt").write_bytes(data[: len(data) // 2])
    code, err = _evaluate(run, capsys)
    assert code == 2 and f"{run / 'best.pt'}:" in err, err
    assert len(err) < 600, err  # one line naming the weight, never a tensor dump
    assert not marker.exists()


def test_peer_policy_options_are_checked(
    peer_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _evaluate(peer_run, capsys, "foo=1")
    assert code == 2 and "foo" in err
    code, err = _evaluate(peer_run, capsys, "deterministic=maybe")
    assert code == 2 and "deterministic must be true or false" in err
    code, err = _evaluate(peer_run, capsys, "seed=-3")
    assert code == 2 and "seed" in err


def test_a_peer_config_with_huge_networks_is_refused_before_building(
    peer_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(peer_run, tmp_path / "run")
    for sizes in ({"hidden_size": 100_000, "depth": 2}, {"hidden_size": 10**12}, {"depth": 10**9}):
        meta = json.loads((run / "peer.json").read_text())
        meta["config"].update(sizes)
        (run / "peer.json").write_text(json.dumps(meta))
        code, err = _evaluate(run, capsys)
        assert code == 4 and "best.pt" in err and "refused before building" in err, err


# --------------------------------------------------------------------------- instance ranges


def _tiny_with(tmp_path: Path, **changes: object) -> Path:
    """tiny.toml with fields changed in the file (not through the validator)."""
    from coordopt.instance import instance_to_dict

    data = instance_to_dict(load_instance("tiny"))
    for key, value in changes.items():
        table, _, name = key.partition(".")
        if name:
            data[table][0][name] = value
        else:
            data[table] = value
    import tomli_w

    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"product.price": 1e300}, "price"),
        ({"product.unit_cost": 1e300}, "unit_cost"),
        ({"segment.no_purchase": 1e-300}, "no_purchase"),
        ({"segment.arrival_rate": 1e-300}, "arrival_rate"),
        ({"product.lead_time": 10**12}, "lead_time"),
        ({"product.lead_time": 2 * 10**8}, "lead_time"),
        ({"product.lead_time": 9}, "lead_time"),
        ({"warehouse_capacity": 1e300}, "warehouse_capacity"),
    ],
)
def test_values_that_break_the_arithmetic_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, field: str
) -> None:
    path = _tiny_with(tmp_path, **changes)
    with pytest.raises(InstanceError, match=f"field '{field}'"):
        load_instance(path)
    assert main(["evaluate", str(path), "--episodes", "2"]) == 2
    assert f"field '{field}'" in capsys.readouterr().err


def test_the_largest_values_in_range_evaluate_finitely(tmp_path: Path) -> None:
    from coordopt.evaluation import evaluate

    inst = load_instance("tiny")
    n = inst.n_products
    top = inst.replace(
        price=np.full(n, 1e9),
        unit_cost=np.full(n, 1e9),
        lost_sale_penalty=np.full(n, 1e9),
        arrival_rate=np.full(inst.n_segments, 1e9),
        lead_time=np.full(n, inst.horizon),
    )
    ev = evaluate(SimParams.from_instance(top), "siloed", 4, seed=0)
    assert np.isfinite(ev.mean) and np.isfinite(ev.ci95)


def test_an_instance_file_is_a_regular_file_of_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coordopt.instance as instance_module

    started = time.monotonic()
    with pytest.raises(InstanceError, match="/dev/zero: a device"):
        load_instance("/dev/zero")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(InstanceError, match=r"pipe\.toml: a device, FIFO or socket"):
        load_instance(fifo)
    assert time.monotonic() - started < 10  # refused at once, never read
    save_instance(load_instance("tiny"), tmp_path / "t.toml")
    monkeypatch.setattr(instance_module, "TOML_MAX_BYTES", 100)
    with pytest.raises(InstanceError, match="more than an instance file may have"):
        load_instance(tmp_path / "t.toml")


def test_dev_zero_is_refused_by_the_command_line_at_once() -> None:
    res = subprocess.run(
        [*COORDOPT, "solve", "/dev/zero"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "/dev/zero: a device" in res.stderr


def test_generate_refuses_a_salvage_rate_that_makes_every_solve_unbounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.toml"
    argv = ["generate", "--out", str(out), "--n-products", "3", "--n-segments", "2"]
    assert main([*argv, "--salvage-rate", "2"]) == 2
    assert "--salvage-rate" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--holding-rate", "1e300"]) == 2  # the instance's range, by field
    assert "field 'holding_cost'" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--salvage-rate", "1"]) == 0


# --------------------------------------------------------------------------- interruptions


_MARK_RUN = """
import sys, highspy
mark, argv = sys.argv[1], sys.argv[2:]
run = highspy.Highs.run
def marked(self):
    open(mark, "a").close()  # HiGHS starts: tell the test (Pyomo captures fds 1 and 2 now)
    return run(self)
highspy.Highs.run = marked
from coordopt.cli import main
raise SystemExit(main(argv))
"""


def _ctrl_c_live() -> None:
    """Ctrl-C as a terminal user has it: a shell that starts the tests in the background
    (``make test &``) leaves SIGINT ignored, and an ignored signal stays ignored in children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_a_pyomo_highs_solve_exits_130_at_once(tmp_path: Path) -> None:
    """SIGINT once HiGHS runs (``coordopt solve medium --path pyomo``: the run takes
    seconds) ends the command with 130 within seconds, never a solver error (exit 1). The
    bound is on responsiveness, generous for a loaded machine, not a timing figure."""
    mark = tmp_path / "highs-started"
    argv = ["solve", "medium", "--path", "pyomo", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _MARK_RUN, str(mark), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_live,
    )
    try:
        deadline = time.monotonic() + 300
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # well into the run
        assert proc.poll() is None, "the solve ended before it could be interrupted"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 10, "Ctrl-C was not honoured during the solve"
    assert "interrupted" in err and "error" not in err, err


def test_ctrl_c_stops_a_bulk_highs_solve_within_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    import highspy

    from coordopt.solvers.fluid import BulkFluidLP

    lp = BulkFluidLP(load_instance("medium"))
    run = highspy.Highs.run
    timers: list[threading.Timer] = []

    def marked(self: highspy.Highs) -> object:  # SIGINT 0.3 s into the (seconds-long) run
        timers.append(threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)))
        timers[-1].start()
        return run(self)

    monkeypatch.setattr(highspy.Highs, "run", marked)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see _ctrl_c_live
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            lp.solve()
    finally:
        for timer in timers:
            timer.cancel()
        restored = signal.signal(signal.SIGINT, previous)
    assert lp.highs.getModelStatus() == highspy.HighsModelStatus.kInterrupt
    assert time.monotonic() - started < 10
    assert restored is signal.default_int_handler  # the solve put back the handler it found


def test_an_unreachable_ray_head_is_an_error_not_a_wait(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    argv = ["reproduce", "exact-benchmark", "--quick", "--out", str(tmp_path / "s")]
    started = time.monotonic()
    res = subprocess.run(
        [*COORDOPT, *argv, "--backend", "ray", "--address", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 2, res.stderr
    assert "--address 127.0.0.1:1: no Ray head answers there" in res.stderr
    assert time.monotonic() - started < 200
