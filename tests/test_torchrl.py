"""The native TorchRL environment and the MAPPO / IPPO peers (the ``torchrl`` extra)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("torchrl")

from torchrl.envs.utils import check_env_specs, step_mdp

from coordopt.cli import main
from coordopt.marl import AGENTS, clean_slates
from coordopt.pettingzoo_env import CoordoptParallelEnv
from coordopt.torchrl_env import CoordoptEnv


@pytest.mark.parametrize(
    ("instance", "share", "rewards"),
    [("tiny", True, "firm"), ("small", False, "departmental"), ("small", True, "firm")],
)
def test_check_env_specs(instance, share, rewards):
    env = CoordoptEnv(instance, batch_size=4, share_information=share, rewards=rewards)
    check_env_specs(env, seed=0)
    td = env.rollout(100, break_when_any_done=True)
    assert td.shape == (4, env.instance.horizon)  # every episode ends at the horizon
    assert bool(td["next", "done"][:, -1].all()) and not bool(td["next", "done"][:, :-1].any())
    total = sum(td["next", a, "reward"] for a in AGENTS) / (2 if rewards == "firm" else 1)
    torch.testing.assert_close(total.squeeze(-1), td["next", "profit"], rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize(
    ("instance", "share", "rewards"), [("small", True, "firm"), ("tiny", False, "departmental")]
)
def test_same_trajectory_as_the_pettingzoo_adapter(instance, share, rewards):
    """Same seed, same actions (over-cap orders, empty and repeated slate slots included)."""
    pz = CoordoptParallelEnv(instance, share_information=share, rewards=rewards)
    env = CoordoptEnv(
        instance, batch_size=1, share_information=share, rewards=rewards, dtype=torch.float64
    )
    n, m, k = pz.instance.n_products, pz.instance.n_segments, pz.instance.effective_slate_size
    rng = np.random.default_rng(3)
    obs, _ = pz.reset(seed=11)
    env.set_seed(11)
    td = env.reset()
    for t in range(pz.instance.horizon):
        for a in AGENTS:
            np.testing.assert_array_equal(td[a, "observation"][0, 0].numpy(), obs[a])
        orders = rng.integers(0, pz.order_caps + 3)
        slates = rng.integers(0, n + 1, size=(m, k))
        obs, rew, term, _, info = pz.step({"replenishment": orders, "recommendation": slates})
        td["replenishment", "action"] = torch.as_tensor(orders).reshape(1, 1, n)
        td["recommendation", "action"] = torch.as_tensor(slates).reshape(1, 1, m, k)
        td = env.step(td)
        nxt = td["next"]
        for a in AGENTS:
            assert float(nxt[a, "reward"]) == pytest.approx(rew[a], rel=1e-6, abs=1e-4)
            assert bool(nxt[a, "done"]) == term[a] == (t == pz.instance.horizon - 1)
        assert float(nxt["profit"]) == pytest.approx(info["replenishment"]["profit"], abs=1e-3)
        td = step_mdp(td)
    assert not pz.agents


def test_clean_slates_keeps_first_occurrences():
    raw = torch.tensor([[[2, 2, 5], [0, 3, 0]], [[1, 7, 1], [4, -1, 4]]])
    expected = torch.tensor([[[2, -1, -1], [0, 3, -1]], [[1, -1, -1], [4, -1, -1]]])
    assert torch.equal(clean_slates(raw, 5), expected)


def test_partial_reset_is_refused():
    env = CoordoptEnv("tiny", batch_size=2)
    td = env.reset()
    td.set("_reset", torch.tensor([[True], [False]]))
    with pytest.raises(ValueError, match="lock-step"):
        env.reset(td)


@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
def test_train_peer_smoke_and_evaluate(tmp_path, capsys, algorithm):
    out = tmp_path / algorithm
    argv = ["train", "tiny", "--algorithm", algorithm, "--out", str(out), "--iterations", "2"]
    argv += ["--num-envs", "8", "--eval-every", "1", "--eval-episodes", "8", "--json"]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["algorithm"] == algorithm and summary["env_steps"] == 2 * 8 * 8
    assert summary["steps_per_second"] > 0
    meta = json.loads((out / "peer.json").read_text())
    assert meta["config"]["algorithm"] == algorithm
    blob = torch.load(out / "final.pt", weights_only=True)  # tensors and plain data only
    assert set(blob["actors"]) == set(AGENTS)
    log = (out / "log.csv").read_text().strip().splitlines()
    assert len(log) == 3 and "steps_per_second" in log[0]
    assert main(["evaluate", "tiny", "--policy", str(out), "--episodes", "16", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    rows = ev["policies"] if "policies" in ev else ev
    assert algorithm in json.dumps(rows)


def test_peer_critics_mappo_shares_ippo_does_not():
    from coordopt.rl.peers import Layout, PeerConfig, build_networks
    from coordopt.simulator import SimParams

    params = SimParams.from_instance(CoordoptEnv("tiny", batch_size=1).instance)
    for algorithm, rewards, shared in (
        ("mappo", "firm", True),
        ("mappo", "departmental", False),
        ("ippo", "firm", False),
    ):
        config = PeerConfig(algorithm=algorithm, rewards=rewards)
        _, critics = build_networks(params, Layout.of(params, config), config)
        same = critics["replenishment"].module is critics["recommendation"].module
        assert same == shared
        keys = {a: critics[a].in_keys for a in AGENTS}
        central = algorithm == "mappo"
        assert all((k == ["state"]) == central for k in keys.values())


def test_peer_flags_are_checked(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["train", "tiny", "--algorithm", "mappo", "--warm-start", "dp", "--out", out]) == 2
    assert "--warm-start" in capsys.readouterr().err
    assert main(["train", "tiny", "--lr", "0.1", "--out", out]) == 2
    assert "--algorithm mappo|ippo" in capsys.readouterr().err


def test_quick_peers_study(tmp_path):
    from coordopt.studies import run_study, study_names

    assert "peers" in study_names()
    out = tmp_path / "peers"
    report = run_study("peers", out, quick=True, workers=2, progress=False).read_text()
    assert (out / "peers_tiny.png").read_bytes().startswith(b"\x89PNG")
    assert "](peers_tiny.png)" in report
    for phrase in (
        "exact DP optimum",
        "% of reference",
        "TorchRL MAPPO",
        "TorchRL IPPO",
        "steps/s",
    ):
        assert phrase in report, phrase
    rows = (out / "peers.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # DP, siloed and the four learners
    curves = (out / "peers_curves.csv").read_text().strip().splitlines()
    assert len(curves) > 4 * 3
    for line in rows[1:]:
        if any(m in line for m in ("rl-multi", "mappo", "ippo")):
            assert ",384.0,384.0," in line  # equal budgets: 6 iterations x 8 envs x 8 periods


def test_train_peer_json_is_all_of_stdout(tmp_path):
    """TorchRL logs to stdout by default; ``--json`` must still print one JSON object there
    and nothing else (checked in a fresh process: TorchRL binds its stream at import)."""
    import subprocess
    import sys

    out = tmp_path / "mappo"
    argv = ["train", "tiny", "--algorithm", "mappo", "--out", str(out), "--iterations", "1"]
    argv += ["--num-envs", "2", "--eval-every", "0", "--no-progress", "--json"]
    env = {k: v for k, v in os.environ.items() if k != "TORCHRL_CONSOLE_STREAM"}
    done = subprocess.run(
        [sys.executable, "-m", "coordopt.cli", *argv], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["algorithm"] == "mappo", done.stdout
