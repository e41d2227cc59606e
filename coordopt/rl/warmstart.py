"""Warm start from an expert: DAgger behaviour cloning, then critic pre-training.

Cloning on the expert's own trajectories alone leaves the agents lost on the states their
own mistakes lead to; DAgger fixes that by rolling out a mixture (expert with probability
``beta^r`` in round ``r``, the current agents otherwise), labelling every visited state with
the expert's action and training on the aggregate of all rounds. The loss is the negative
log-likelihood of the expert's actions (order bins; Plackett-Luce slates), the same term that
later regularises PPO with an annealed weight. The critic is then fitted to the discounted
returns of the cloned agents, so PPO starts with advantages that mean something.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from coordopt.instance import Instance
from coordopt.policies import POLICY_ENTRIES, Policy, make_policy
from coordopt.rl.features import Context, Observation
from coordopt.rl.networks import AGENTS, Agents
from coordopt.rl.rollout import Rollout, RunningMeanStd, collect_rollout, discounted_returns
from coordopt.simulator import SimParams
from coordopt.solvers.dp import reference_method

Tensor = torch.Tensor

GRAPH_CELLS = 50_000_000
"""The most period x environment x product x segment cells one backward pass holds: a group
of environments beyond it is cloned (or its critic fitted) in parts whose gradients add up
to the group's. Measured on a 2,500 x 100 x 52 catalog, a cloning graph holds about 46 bytes a
cell (1.5 GB for 4 environments), so the cap keeps a graph near 2.3 GB: on ``large`` (5.2 M
cells an environment) nothing splits; at 10,000 products each environment is its own part."""


def envs_per_part(horizon: int, segments: int, products: int) -> int:
    """Whole episodes one backward pass may hold under :data:`GRAPH_CELLS` (at least one)."""
    return max(1, GRAPH_CELLS // max(horizon * segments * products, 1))


def graph_parts(envs: Tensor, params: SimParams) -> list[Tensor]:
    """``envs`` split into the fewest equal-as-possible parts of at most
    :func:`envs_per_part` environments each."""
    per_part = envs_per_part(params.horizon, params.n_segments, params.n_products)
    return list(envs.tensor_split(-(-len(envs) // per_part)))


@dataclass
class WarmStartReport:
    """Imitation losses before and after cloning (on the final aggregated data), critic fit."""

    expert: str
    nll_before: dict[str, float]
    nll_after: dict[str, float]
    rounds: int
    states: int
    critic_loss: dict[str, float] = field(default_factory=dict)
    expert_profit: float = float("nan")
    env_steps: int = 0
    """Environment steps simulated by the warm start (DAgger and critic rollouts)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "expert": self.expert,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "rounds": self.rounds,
            "states": self.states,
            "critic_loss": self.critic_loss,
            "expert_profit": self.expert_profit,
            "env_steps": self.env_steps,
        }


def expert_name(name: str, inst: Instance) -> str:
    """The concrete expert of ``--warm-start name`` on ``inst`` (``auto`` resolved).

    ``auto`` follows :func:`~coordopt.solvers.dp.reference_method`: the exact DP's optimal
    policy when the DP fits the instance, else bid-price control -- at every size, since it
    beat fluid MPC wherever both were measured (paired, common random numbers: +7.3% on
    ``small``, +8.3% on ``medium``, +0.9% on ``tafeng-50``; MPC plays the fluid plan without
    safety stock) and it stays affordable at catalog scale.
    """
    if name != "auto":
        return name
    return "dp" if reference_method(inst) == "dp" else "bidprice"


def make_expert(name: str, params: SimParams, reoptimize: int = -1) -> Policy:
    """The expert policy by name: ``auto`` (:func:`expert_name`) or one of
    :func:`~coordopt.policies.teachers`.

    ``reoptimize >= 0`` sets the periods between re-optimisations of an expert that declares
    the option ``reoptimize_every`` (bid-price control; 0: keep the initial stock values;
    labels then cost one slate search per period).
    """
    name = expert_name(name, params.instance)
    takes = "reoptimize_every" in POLICY_ENTRIES[name].options
    options = {"reoptimize_every": reoptimize} if takes and reoptimize >= 0 else {}
    try:
        return make_policy(name, params, **options)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"warm-start expert '{name}' is not available ({exc}); use --warm-start siloed or none"
        ) from exc


@dataclass
class ImitationData:
    """Visited states (time-major) with the expert's order bins and slates."""

    obs: Observation
    bins: Tensor  # (T, B, N)
    slates: Tensor  # (T, B, M, K)

    def take(self, envs: Tensor) -> ImitationData:
        """The data of environments ``envs`` (indices along the batch axis)."""
        return ImitationData(self.obs.over_time(envs), self.bins[:, envs], self.slates[:, envs])

    @property
    def states(self) -> int:
        """Labelled environment-periods."""
        return int(self.bins.shape[0] * self.bins.shape[1])

    @classmethod
    def from_rollout(cls, r: Rollout, before: ImitationData | None = None) -> ImitationData:
        """The expert-labelled environments of ``r``, after those of ``before`` if given (the
        aggregate of earlier rounds; ``r`` itself need not be kept)."""
        if r.expert_bins is None or r.expert_slates is None:
            raise ValueError("rollout has no expert labels")
        e = r.expert_bins.shape[1]
        new = cls(r.obs.map(lambda x: x[:, :e]), r.expert_bins, r.expert_slates)  # views
        if before is None:
            return new
        return cls(
            Observation.join([before.obs, new.obs], torch.cat, 1),
            torch.cat([before.bins, new.bins], 1),
            torch.cat([before.slates, new.slates], 1),
        )


def imitation_nll(
    agents: Agents, ctx: Context, data: ImitationData, entropy: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Mean NLL of the expert's actions along the data's sequences (memories from zero).

    If ``entropy`` is a dict, it receives each agent's mean policy entropy on the same states.
    """
    horizon, batch = data.bins.shape[:2]
    hidden = agents.initial_hidden(batch, ctx.params.device)
    total = {a: torch.zeros((), device=ctx.params.device) for a in AGENTS}
    for t in range(horizon):
        obs = data.obs.period(t)
        out = agents.step(obs, ctx, hidden, order_bins=data.bins[t], slates=data.slates[t])
        nll = out.imitation_nll(data.bins[t], data.slates[t])
        for a in AGENTS:
            total[a] = total[a] + nll[a].mean() / horizon
            if entropy is not None:
                entropy[a] = entropy.get(a, 0.0) + out.entropy[a].mean() / horizon
        hidden = out.hidden
    return total


def behaviour_clone(
    agents: Agents,
    ctx: Context,
    expert: Policy,
    config: Any,
    env_gen: torch.Generator,
    pol_gen: torch.Generator,
) -> WarmStartReport:
    """DAgger: ``bc_rounds`` rounds of mixture rollouts, expert labels and NLL steps on the
    aggregate (full batch, or shuffled groups of ``bc_minibatch_envs`` environments)."""
    start = copy.deepcopy(agents)
    params = [p for a in AGENTS for p in agents.actor(a).parameters()]
    opt = torch.optim.Adam(params, lr=config.bc_lr)
    data: ImitationData | None = None
    rounds = max(config.bc_rounds, 1)
    expert_profit = float("nan")
    for r in range(rounds):
        ro = collect_rollout(
            agents,
            ctx,
            config.bc_envs,
            env_gen,
            pol_gen,
            expert,
            label_envs=min(config.bc_label_envs, config.bc_envs),
            expert_prob=config.bc_beta**r,
        )
        if r == 0:  # beta^0 = 1: the expert's own rollout
            expert_profit = float(ro.profit[: config.bc_envs].mean())
        data = ImitationData.from_rollout(ro, data)  # the aggregate, not every rollout kept
        del ro
        began, last = time.perf_counter(), float("nan")
        batch = data.bins.shape[1]
        size = config.bc_minibatch_envs or batch
        for _ in range(config.bc_epochs):
            # full batch (size = batch), or one pass over shuffled groups of environments
            order = (
                torch.randperm(batch, generator=pol_gen, device=pol_gen.device)
                if size < batch
                else torch.arange(batch)
            )
            for idx in order.split(size):
                opt.zero_grad()
                last = 0.0
                for part in graph_parts(idx, ctx.params):  # the group's gradient, in parts
                    ent: dict[str, Tensor] = {}
                    nll = imitation_nll(agents, ctx, data.take(part), ent)
                    # a small entropy bonus keeps the clone from collapsing onto one action,
                    # so PPO still explores after the warm start
                    loss = sum(nll[a] - config.bc_entropy * ent[a] for a in AGENTS)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"behaviour cloning diverged in round {r} (loss {loss}); lower --bc-lr"
                        )
                    (loss * (len(part) / len(idx))).backward()
                    last += float(loss.detach()) * len(part) / len(idx)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
        print(
            f"DAgger round {r + 1}/{rounds}: {data.states:,} labelled states, "
            f"NLL {last:.3f} after {config.bc_epochs} epochs "
            f"({time.perf_counter() - began:.0f} s)",
            file=sys.stderr,
        )
    assert data is not None
    with torch.no_grad():
        before = {a: float(v) for a, v in imitation_nll(start, ctx, data).items()}
        after = {a: float(v) for a, v in imitation_nll(agents, ctx, data).items()}
    return WarmStartReport(
        expert=getattr(expert, "name", "expert"),
        nll_before=before,
        nll_after=after,
        rounds=rounds,
        states=data.states,
        expert_profit=expert_profit,
        env_steps=rounds * config.bc_envs * ctx.params.horizon,
    )


def critic_stream(name: str) -> str:
    """The reward stream a critic learns: the firm's profit, or its agent's department."""
    return "firm" if name == "firm" else name


def pretrain_critic(
    agents: Agents,
    ctx: Context,
    config: Any,
    gamma: float,
    normalisers: dict[str, RunningMeanStd],
    env_gen: torch.Generator,
    pol_gen: torch.Generator,
) -> dict[str, float]:
    """Fit every critic to the discounted returns of the current agents (updates normalisers)."""
    ro = collect_rollout(agents, ctx, config.bc_envs, env_gen, pol_gen)
    targets = {}
    for name in agents.value_streams:
        ret = discounted_returns(ro.rewards[critic_stream(name)], gamma)
        normalisers[name].update(ret)
        targets[name] = normalisers[name].normalise(ret)
    opt = torch.optim.Adam(agents.critics.parameters(), lr=config.bc_lr)
    losses = {name: float("nan") for name in agents.value_streams}
    everyone = torch.arange(ro.batch_size, device=ctx.params.device)
    for _ in range(config.critic_pretrain_epochs):
        opt.zero_grad()
        losses = dict.fromkeys(agents.value_streams, 0.0)
        for part in graph_parts(everyone, ctx.params):  # the full batch's gradient, in parts
            values = agents.values(ro.obs.over_time(part), ctx)
            share = len(part) / ro.batch_size
            terms = {n: 0.5 * ((values[n] - targets[n][:, part]) ** 2).mean() for n in values}
            (sum(terms.values()) * share).backward()  # type: ignore[union-attr]
            for n, v in terms.items():
                losses[n] += float(v.detach()) * share
        opt.step()
    return losses
