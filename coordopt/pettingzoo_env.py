"""A PettingZoo Parallel adapter for users who bring their own learners.

Two agents act simultaneously each period: ``replenishment`` chooses an order quantity per
product, ``recommendation`` a slate per segment. One environment per adapter (the batched
simulator underneath runs with ``B = 1``); for throughput use :mod:`coordopt.simulator`
directly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from coordopt.instance import Instance, load_instance
from coordopt.marl import (
    AGENTS,
    REWARDS,
    agent_rewards,
    decode_actions,
    observation_dims,
    observe,
    order_caps,
    slate_indicator,
)
from coordopt.simulator import SimParams, SimState, reset, step


class CoordoptParallelEnv(ParallelEnv):
    """The integrated problem as a two-agent parallel game.

    Parameters
    ----------
    instance:
        An :class:`Instance` or anything :func:`load_instance` accepts.
    order_cap:
        Largest order per product and period (the action space must be finite); default
        ``max_order`` where set, else four periods of mean demand with everything recommended.
    share_information:
        ``True`` (coordinated): each agent also sees the other department's signals (stock to
        marketing, last period's recommendations to operations). ``False``: siloed views.
    rewards:
        ``"firm"``: both agents receive the firm's profit. ``"departmental"``: marketing gets
        revenue, operations minus its costs (ordering, holding, lost-sale penalty) plus salvage.

    Observations are flat ``float32`` vectors; the recommendation action is a ``(M, K)``
    array of product indices where ``N`` means an empty slot (duplicates are dropped).
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "coordopt_v0", "render_modes": []}

    def __init__(
        self,
        instance: Instance | str,
        order_cap: int | None = None,
        share_information: bool = True,
        rewards: str = "firm",
    ) -> None:
        self.instance = load_instance(instance)
        if rewards not in REWARDS:
            raise ValueError(f"rewards={rewards!r}: allowed values are {', '.join(REWARDS)}")
        self.params = SimParams.from_instance(self.instance, dtype=torch.float64)
        self.share_information = share_information
        self.rewards = rewards
        inst = self.instance
        n, m, k = inst.n_products, inst.n_segments, inst.effective_slate_size
        self.order_caps = order_caps(inst, order_cap)
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        dims = observation_dims(self.params, share_information)
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (dims[a],), np.float32) for a in AGENTS}
        self._act_spaces = {
            "replenishment": spaces.MultiDiscrete(self.order_caps + 1),
            "recommendation": spaces.MultiDiscrete(np.full((m, k), n + 1)),
        }
        self._state: SimState | None = None
        self._last_slates = torch.zeros(1, m, n)
        self._generator = torch.Generator()

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def _observe(self) -> dict[str, np.ndarray]:
        assert self._state is not None
        obs = observe(self._state, self._last_slates, self.instance.horizon, self.share_information)
        return {a: v[0].numpy() for a, v in obs.items()}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._generator.manual_seed(seed)
        self.agents = list(AGENTS)
        self._state = reset(self.params, 1)
        self._last_slates = torch.zeros_like(self._last_slates)
        return self._observe(), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if self._state is None or not self.agents:
            raise RuntimeError("call reset() before step(), and again after the episode ends")
        missing = set(self.agents) - set(actions)
        if missing:
            raise ValueError(f"actions missing for agents {sorted(missing)}")
        orders = torch.as_tensor(np.asarray(actions["replenishment"], dtype=np.float64))
        raw = torch.as_tensor(np.asarray(actions["recommendation"], dtype=np.int64))
        action = decode_actions(
            orders[None],
            raw.reshape(1, self.instance.n_segments, -1),
            torch.as_tensor(self.order_caps),
            self.params,
        )
        self._state, res = step(self._state, action, self.params, self._generator)
        self._last_slates = slate_indicator(action.slates, self.instance.n_products)
        rewards = {a: float(r[0]) for a, r in agent_rewards(res, self.rewards).items()}
        done = self._state.t >= self.instance.horizon
        obs = self._observe()
        info = {
            a: {
                "profit": float(res.reward[0]),
                "sales": res.sales[0].numpy(),
                "lost": res.lost[0].numpy(),
            }
            for a in self.agents
        }
        terms = {a: done for a in self.agents}
        truncs = {a: False for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, info
