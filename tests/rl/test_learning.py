"""Learning happens: PPO from a cold start improves the greedy policy beyond the noise."""

from __future__ import annotations

from pathlib import Path

from coordopt.instance import load_instance
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train


def test_cold_ppo_beats_its_initial_policy_beyond_both_confidence_intervals(
    tmp_path: Path,
) -> None:
    """On ``tiny``, cold, seed 0, 20 iterations x 64 environments: the greedy agents after
    training earn more than the untrained ones, and the gap exceeds both 95% half-widths.

    Both evaluations run on the same demand stream (``eval_seed``: common random numbers),
    256 episodes each. A broken gradient, loss sign, advantage or optimiser step leaves the
    profit at the initial policy's level (or lower) and fails this test.
    """
    iterations = 20
    config = TrainConfig(
        iterations=iterations,
        seed=0,
        warm_start="none",
        num_envs=64,
        eval_every=iterations,
        eval_episodes=256,
        tensorboard=False,
    )
    result = train(load_instance("tiny"), config, tmp_path, progress=False)
    before, after = result.initial_eval, result.final_eval
    gain = after["mean"] - before["mean"]
    assert gain > before["ci95"] + after["ci95"], (before, after)
