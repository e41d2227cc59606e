"""The integrated problem as a native, batched TorchRL multi-agent environment.

:class:`CoordoptEnv` steps ``B`` environments of the batched simulator at once, so TorchRL
and BenchMARL algorithms train on coordopt at the simulator's throughput (the PettingZoo
adapter steps one). It is the game of :mod:`coordopt.marl` -- the PettingZoo adapter's
observations, actions and rewards -- in TorchRL's grouped multi-agent layout: two groups of
one agent each,

- ``("replenishment", "observation")`` ``(B, 1, obs)``, ``("replenishment", "action")``
  ``(B, 1, N)``: order quantities, ``MultiCategorical`` with ``cap_i + 1`` values;
- ``("recommendation", "observation")`` ``(B, 1, obs)``, ``("recommendation", "action")``
  ``(B, 1, M, K)``: slate slots, ``MultiCategorical`` with ``N + 1`` values (``N``: empty);
- ``(group, "reward")``, ``(group, "done")``, ``(group, "terminated")`` ``(B, 1, 1)``;

plus root ``done`` / ``terminated`` ``(B, 1)``, the global ``state`` ``(B, S)`` (the
coordinated replenishment view: everything either department could see, for centralised
critics) and the firm's ``profit`` of the period ``(B, 1)`` (also under departmental
rewards). All ``B`` episodes run in lock-step and end together after ``T`` periods.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Categorical, Composite, MultiCategorical, Unbounded
    from torchrl.envs import EnvBase
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "coordopt's TorchRL environment and peer algorithms need TorchRL: "
        "pip install 'coordopt[torchrl]' (or pip install torchrl)"
    ) from exc

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


class CoordoptEnv(EnvBase):
    """``B`` lock-step episodes of the two-agent game as a TorchRL :class:`EnvBase`.

    Parameters
    ----------
    instance:
        An :class:`Instance` or anything :func:`load_instance` accepts.
    batch_size:
        Number of environments ``B``.
    order_cap, share_information, rewards:
        As in :class:`coordopt.pettingzoo_env.CoordoptParallelEnv`.
    device, dtype:
        Where and in which precision the simulator runs (money in ``dtype``; float64 makes the
        trajectory identical to the PettingZoo adapter's).
    """

    batch_locked = True

    def __init__(
        self,
        instance: Instance | str,
        batch_size: int = 64,
        order_cap: int | None = None,
        share_information: bool = True,
        rewards: str = "firm",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if rewards not in REWARDS:
            raise ValueError(f"rewards={rewards!r}: allowed values are {', '.join(REWARDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(device=device, batch_size=torch.Size([batch_size]))
        self.instance = load_instance(instance)
        self.params = SimParams.from_instance(self.instance, device, dtype)
        self.share_information = share_information
        self.rewards = rewards
        self.order_caps = torch.as_tensor(order_caps(self.instance, order_cap), device=self.device)
        self._generator = torch.Generator(device=self.device)
        self._state: SimState | None = None
        self._last_slates = torch.zeros(0)
        self._make_specs()

    # ------------------------------------------------------------------ specs

    def _make_specs(self) -> None:
        b, dev = self.batch_size[0], self.device
        n, m = self.params.n_products, self.params.n_segments
        k = max(self.params.slate_size, 1)
        dims = observation_dims(self.params, self.share_information)
        state_dim = observation_dims(self.params, True)["replenishment"]

        def group(**specs: Any) -> Composite:
            return Composite(specs, shape=(b, 1), device=dev)

        def flag(*shape: int) -> Categorical:
            return Categorical(2, shape=shape, dtype=torch.bool, device=dev)

        self.observation_spec = Composite(
            {
                **{a: group(observation=Unbounded((b, 1, dims[a]), device=dev)) for a in AGENTS},
                "state": Unbounded((b, state_dim), device=dev),
                "profit": Unbounded((b, 1), device=dev),
            },
            shape=(b,),
            device=dev,
        )
        self.action_spec = Composite(
            {
                "replenishment": group(
                    action=MultiCategorical(self.order_caps + 1, (b, 1, n), device=dev)
                ),
                "recommendation": group(
                    action=MultiCategorical(
                        torch.full((m, k), n + 1, device=dev), (b, 1, m, k), device=dev
                    )
                ),
            },
            shape=(b,),
            device=dev,
        )
        self.reward_spec = Composite(
            {a: group(reward=Unbounded((b, 1, 1), device=dev)) for a in AGENTS},
            shape=(b,),
            device=dev,
        )
        self.done_spec = Composite(
            {
                "done": flag(b, 1),
                "terminated": flag(b, 1),
                **{a: group(done=flag(b, 1, 1), terminated=flag(b, 1, 1)) for a in AGENTS},
            },
            shape=(b,),
            device=dev,
        )

    # ------------------------------------------------------------------ dynamics

    def _observation(self, state: SimState, profit: torch.Tensor, done: bool) -> TensorDictBase:
        b = self.batch_size[0]
        obs = observe(state, self._last_slates, self.params.horizon, self.share_information)
        full = (
            obs["replenishment"]
            if self.share_information
            else observe(state, self._last_slates, self.params.horizon, True)["replenishment"]
        )
        flag = torch.full((b, 1), done, dtype=torch.bool, device=self.device)
        out: dict[str, Any] = {
            "state": full,
            "profit": profit.reshape(b, 1).to(torch.float32),
            "done": flag,
            "terminated": flag.clone(),
        }
        for a in AGENTS:
            out[a] = TensorDict(
                {
                    "observation": obs[a].unsqueeze(1),
                    "done": flag.unsqueeze(1).clone(),
                    "terminated": flag.unsqueeze(1).clone(),
                },
                batch_size=(b, 1),
                device=self.device,
            )
        return TensorDict(out, batch_size=self.batch_size, device=self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset")
            if not bool(mask.all()) and self._state is not None and bool(mask.any()):
                raise ValueError(
                    "CoordoptEnv runs its episodes in lock-step and resets them together; "
                    "a partial reset was requested"
                )
        b = self.batch_size[0]
        self._state = reset(self.params, b)
        self._last_slates = torch.zeros(
            b, self.params.n_segments, self.params.n_products, device=self.device
        )
        zero = torch.zeros(b, device=self.device)
        return self._observation(self._state, zero, False)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._state is None:
            raise RuntimeError("reset() the environment before stepping it")
        action = decode_actions(
            tensordict.get(("replenishment", "action")).squeeze(1),
            tensordict.get(("recommendation", "action")).squeeze(1),
            self.order_caps,
            self.params,
        )
        self._state, res = step(self._state, action, self.params, self._generator)
        self._last_slates = slate_indicator(action.slates, self.params.n_products)
        done = self._state.t >= self.params.horizon
        out = self._observation(self._state, res.reward, done)
        for a, r in agent_rewards(res, self.rewards).items():
            out.set((a, "reward"), r.reshape(-1, 1, 1).to(torch.float32))
        return out

    def _set_seed(self, seed: int | None) -> None:
        self._generator.manual_seed(int(seed) if seed is not None else 0)
