"""The PettingZoo Parallel adapter."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from coordopt.pettingzoo_env import CoordoptParallelEnv


@pytest.mark.parametrize(("share", "rewards"), [(True, "firm"), (False, "departmental")])
def test_parallel_api(share, rewards):
    parallel_api_test(
        CoordoptParallelEnv("small", share_information=share, rewards=rewards), num_cycles=30
    )


def test_episode_runs_to_the_horizon_and_rewards_add_up():
    env = CoordoptParallelEnv("tiny", rewards="departmental")
    env.reset(seed=0)
    steps = 0
    while env.agents:
        acts = {"replenishment": np.array([2, 2]), "recommendation": np.array([[1]])}
        _, rew, term, _, info = env.step(acts)
        assert rew["replenishment"] + rew["recommendation"] == pytest.approx(
            info["replenishment"]["profit"]
        )
        steps += 1
    assert steps == env.instance.horizon and all(term.values())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(acts)
