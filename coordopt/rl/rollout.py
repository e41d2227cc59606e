"""Rollout storage, rewards, GAE and the running return normaliser used by PPO and warm start.

A rollout is ``B`` environments run in lock-step for one full episode of ``T`` periods
(the simulator is batched), so every episode starts at ``t = 0`` with empty memories and
no done-masks are needed inside a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from coordopt.economics import department_profits
from coordopt.policies import Policy
from coordopt.rl.credit import STREAMS, decision_rewards
from coordopt.rl.features import Context, Observation, decision_labels, observe
from coordopt.rl.networks import AGENTS, Agents
from coordopt.simulator import Action, SimState, StepResult, empty_slates, reset, step

Tensor = torch.Tensor


@dataclass
class Rollout:
    """One episode of ``B`` environments; time-major tensors ``(T, B, ...)``.

    ``hidden[a][t]`` is agent a's memory *before* period t (the state a training chunk
    starting at t resumes from). ``expert_*`` cover the first ``E`` environments.
    """

    obs: Observation  # fields (T, B, ...)
    order_bins: Tensor  # (T, B, N)
    slates: Tensor  # (T, B, M, K)
    logp: dict[str, Tensor]  # (T, B)
    decision_logp: dict[str, Tensor]  # agent -> (T, B, N) per order / (T, B, M) per slate
    hidden: dict[str, Tensor]  # (T, B, H)
    rewards: dict[str, Tensor]  # stream name -> (T, B), per decision (T, B, N | M); scaled
    values: dict[str, Tensor]  # value stream name -> normalised values, shaped like its rewards
    expert_bins: Tensor | None  # (T, E, N)
    expert_slates: Tensor | None  # (T, E, M, K)
    profit: Tensor  # (B,) discounted episode profit (money)

    @property
    def horizon(self) -> int:
        return int(self.order_bins.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.order_bins.shape[1])


def reward_streams(res: StepResult, scale: float) -> dict[str, Tensor]:
    """Scaled rewards: ``firm`` profit and each department's share of it
    (:func:`coordopt.economics.department_profits`). The departments' sum to firm."""
    shares = department_profits(res.terms)
    return {"firm": res.reward / scale, **{name: r / scale for name, r in shares.items()}}


def head(state: SimState, n: int) -> SimState:
    """The first ``n`` environments of a batched state."""
    return SimState(
        t=state.t,
        on_hand=state.on_hand[:n],
        pipeline=state.pipeline[:n],
        last_sales=state.last_sales[:n],
        last_demand=state.last_demand[:n],
        last_orders=state.last_orders[:n],
    )


@torch.no_grad()
def collect_rollout(
    agents: Agents,
    ctx: Context,
    batch_size: int,
    env_gen: torch.Generator,
    pol_gen: torch.Generator,
    expert: Policy | None = None,
    label_envs: int = 0,
    expert_prob: float = 0.0,
) -> Rollout:
    """Run the agents (sampling) for one episode in ``batch_size`` environments.

    With an ``expert``, the first ``label_envs`` environments are labelled with its actions;
    with ``expert_prob > 0`` (DAgger), each labelled environment executes the expert's action
    instead of the agents' with that probability, period by period.
    """
    p = ctx.params
    decisions = [s for s in STREAMS if s in agents.value_streams]  # credit per decision
    state = reset(p, batch_size)
    hidden = agents.initial_hidden(batch_size, p.device)
    last_slates = empty_slates(p, batch_size)
    e = min(label_envs, batch_size) if expert is not None else 0
    if expert is not None and e > 0:
        expert.reset(e)
    rec: dict[str, list[Tensor]] = {}
    obs_list: list[Observation] = []
    disc, profit = 1.0, torch.zeros(batch_size, dtype=torch.float64, device=p.device)
    for _ in range(p.horizon):
        obs = observe(ctx, state, last_slates, agents.information)
        values = agents.values(obs, ctx)
        out = agents.step(obs, ctx, hidden, generator=pol_gen)
        orders, slates, bins = out.orders, out.slates, out.order_bins
        if e > 0:
            assert expert is not None
            ex_bins, ex_slates = decision_labels(ctx, expert.act(head(state, e)))
            rec.setdefault("expert_bins", []).append(ex_bins)
            rec.setdefault("expert_slates", []).append(ex_slates)
            if expert_prob > 0:
                use = torch.rand(e, generator=pol_gen, device=p.device) < expert_prob
                ex_orders = torch.minimum(ex_bins.to(p.dtype) * ctx.order_step, p.max_order)
                orders, slates, bins = orders.clone(), slates.clone(), bins.clone()
                orders[:e] = torch.where(use[:, None], ex_orders, orders[:e])
                slates[:e] = torch.where(use[:, None, None], ex_slates, slates[:e])
                bins[:e] = torch.where(use[:, None], ex_bins, bins[:e])
        for a in AGENTS:
            rec.setdefault(f"hidden_{a}", []).append(hidden[a])
            rec.setdefault(f"logp_{a}", []).append(out.logp[a])
            rec.setdefault(f"decision_logp_{a}", []).append(out.decision_logp[a])
        for name, v in values.items():
            rec.setdefault(f"value_{name}", []).append(v)
        rec.setdefault("bins", []).append(bins)
        rec.setdefault("slates", []).append(slates)
        obs_list.append(obs)
        t = state.t
        state, res = step(state, Action(orders=orders, slates=slates), p, env_gen)
        rewards = reward_streams(res, ctx.reward_scale)
        if decisions:
            rewards.update(decision_rewards(res, slates, t, p, ctx.reward_scale))
        for name, r in rewards.items():
            rec.setdefault(f"reward_{name}", []).append(r)
        profit += disc * res.reward.to(torch.float64)
        disc *= p.discount
        hidden = out.hidden
        last_slates = slates
    st = {key: torch.stack(v) for key, v in rec.items()}
    return Rollout(
        obs=Observation.join(obs_list, torch.stack, 0),
        order_bins=st["bins"],
        slates=st["slates"],
        logp={a: st[f"logp_{a}"] for a in AGENTS},
        decision_logp={a: st[f"decision_logp_{a}"] for a in AGENTS},
        hidden={a: st[f"hidden_{a}"] for a in AGENTS},
        rewards={
            n: st[f"reward_{n}"] for n in ("firm", "recommendation", "replenishment", *decisions)
        },
        values={n: st[f"value_{n}"] for n in agents.value_streams},
        expert_bins=st.get("expert_bins"),
        expert_slates=st.get("expert_slates"),
        profit=profit,
    )


def gae(
    rewards: Tensor, values: Tensor, gamma: float, lam: float, last_value: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over time-major ``(T, B, ...)`` tensors (every stream
    of a trailing axis at once: per product, per segment).

    ``delta_t = r_t + gamma V_{t+1} - V_t`` (``V_T = last_value``, 0 at the end of a finite
    horizon), ``A_t = sum_l (gamma lam)^l delta_{t+l}``; returns ``(advantages, A + V)``.
    """
    horizon = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    nxt = torch.zeros_like(rewards[0]) if last_value is None else last_value
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(horizon)):
        delta = rewards[t] + gamma * nxt - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
        nxt = values[t]
    return adv, adv + values


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = sum_{s >= t} gamma^(s-t) r_s`` of ``(T, B)`` rewards."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


class RunningMeanStd:
    """Running mean and variance of returns (parallel Welford), for value normalisation."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: Tensor) -> None:
        arr = x.detach().double().cpu().numpy().ravel()
        b_mean, b_var, b_n = float(arr.mean()), float(arr.var()), arr.size
        delta = b_mean - self.mean
        total = self.count + b_n
        self.mean += delta * b_n / total
        m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.var, 1e-8)))

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, d: dict[str, float]) -> None:
        self.mean, self.var, self.count = d["mean"], d["var"], d["count"]
