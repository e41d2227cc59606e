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
from coordopt.simulator import Action, SimParams, SimState, StepResult, reset, step

AGENTS = ("replenishment", "recommendation")


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
        if rewards not in ("firm", "departmental"):
            raise ValueError(f"rewards={rewards!r}: allowed values are 'firm' and 'departmental'")
        self.params = SimParams.from_instance(self.instance, dtype=torch.float64)
        self.share_information = share_information
        self.rewards = rewards
        inst = self.instance
        n, m, k = inst.n_products, inst.n_segments, inst.effective_slate_size
        if order_cap is None:
            mean = (
                inst.arrival_rate.max(axis=0)[:, None]
                * inst.rec_attraction
                / (inst.no_purchase[:, None] + inst.rec_attraction.sum(1, keepdims=True))
            ).sum(0)
            caps = np.where(np.isfinite(inst.max_order), inst.max_order, np.ceil(4 * mean) + 1)
        else:
            caps = np.minimum(np.full(n, order_cap), inst.max_order)
        self.order_caps = caps.astype(np.int64)
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        w = self.params.pipeline_width
        rep_dim = n * (3 + w) + 1 + (m * n if share_information else 0)
        rec_dim = 2 * n + 1 + (n * (1 + w) if share_information else 0)
        self._obs_spaces = {
            "replenishment": spaces.Box(-np.inf, np.inf, (rep_dim,), np.float32),
            "recommendation": spaces.Box(-np.inf, np.inf, (rec_dim,), np.float32),
        }
        self._act_spaces = {
            "replenishment": spaces.MultiDiscrete(self.order_caps + 1),
            "recommendation": spaces.MultiDiscrete(np.full((m, k), n + 1)),
        }
        self._state: SimState | None = None
        self._last_slates = np.zeros((m, n))
        self._generator = torch.Generator()

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def _observe(self) -> dict[str, np.ndarray]:
        s = self._state
        assert s is not None
        t = np.array([s.t / self.instance.horizon])
        on_hand, pipe = s.on_hand[0].numpy(), s.pipeline[0].numpy().ravel()
        sales, demand = s.last_sales[0].numpy(), s.last_demand[0].numpy()
        rep = [on_hand, pipe, sales, demand, t] + (
            [self._last_slates.ravel()] if self.share_information else []
        )
        rec = [sales, demand, t] + ([on_hand, pipe] if self.share_information else [])
        return {
            "replenishment": np.concatenate(rep).astype(np.float32),
            "recommendation": np.concatenate(rec).astype(np.float32),
        }

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._generator.manual_seed(seed)
        self.agents = list(AGENTS)
        self._state = reset(self.params, 1)
        self._last_slates = np.zeros((self.instance.n_segments, self.instance.n_products))
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
        n = self.instance.n_products
        orders = np.clip(np.asarray(actions["replenishment"], dtype=np.float64), 0, self.order_caps)
        raw = np.asarray(actions["recommendation"], dtype=np.int64).reshape(
            self.instance.n_segments, -1
        )
        slates = np.where((raw >= 0) & (raw < n), raw, -1)
        for row in slates:  # drop repeated products within a segment's slate
            _, first = np.unique(row, return_index=True)
            keep = np.zeros(row.shape, dtype=bool)
            keep[first] = True
            row[~keep] = -1
        action = Action(
            orders=torch.tensor(orders[None]), slates=torch.tensor(slates[None], dtype=torch.long)
        )
        self._state, res = step(self._state, action, self.params, self._generator)
        self._last_slates = np.zeros_like(self._last_slates)
        for k_, row in enumerate(slates):
            self._last_slates[k_, row[row >= 0]] = 1.0
        rewards = self._rewards(res)
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

    def _rewards(self, res: StepResult) -> dict[str, float]:
        if self.rewards == "firm":
            r = float(res.reward[0])
            return {"replenishment": r, "recommendation": r}
        ops = float(
            res.salvage[0] - res.ordering_cost[0] - res.holding_cost[0] - res.lost_sale_cost[0]
        )
        return {"replenishment": ops, "recommendation": float(res.revenue[0])}
