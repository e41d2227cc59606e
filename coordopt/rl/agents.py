"""The two agents, the centralised critic and the trained-agent :class:`Policy`.

Both actors are size-agnostic: their weights are shared across products (replenishment)
or (segment, product) pairs (recommendation), and what they know of the whole catalog comes
through mean-pooled summaries and a GRU memory. The same weights therefore act on any
``N`` and ``M``.

- :class:`ReplenishmentActor`: per-product MLP on ``[product embedding, catalog mean,
  GRU state]`` -> ``G`` order-bin logits (see :mod:`coordopt.rl.distributions`).
- :class:`RecommendationActor`: a score for every (segment, product) from additive
  segment / product / pair / memory embeddings and a second layer, plus a per-segment stop
  score; slates are Plackett-Luce top-K draws.
- :class:`Critic`: pooled product and segment embeddings -> one value (centralised when fed
  the whole firm's features).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coordopt.rl import distributions as D
from coordopt.rl.features import (
    CRITIC_DIM,
    GLOBAL,
    PAIR,
    SEGMENT,
    Context,
    Observation,
    build_context,
    mkt_dim,
    observe,
    ops_dim,
)
from coordopt.simulator import Action, SimParams, SimState, empty_slates

Tensor = torch.Tensor
AGENTS = ("replenishment", "recommendation")


def mlp(sizes: list[int], last_act: bool = False) -> nn.Sequential:
    """A tanh MLP (tanh keeps PPO's updates tame)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ReplenishmentActor(nn.Module):
    """Orders: shared per-product MLP + catalog mean + GRU memory -> order-bin logits."""

    def __init__(self, in_dim: int, hidden: int, bins: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(hidden + GLOBAL, hidden)
        # Default init, not a zeroed last layer: with zero output weights the hidden layers get
        # (near-)zero gradients that Adam normalises into full, coherent steps; the hidden
        # tanh units then saturate and the actor can only learn the marginal order law.
        self.head = mlp([3 * hidden, hidden, bins])

    def forward(self, obs: Observation, ctx: Context, h: Tensor) -> tuple[Tensor, Tensor]:
        """Masked order logits ``(B, N, G)`` and the next memory ``(B, H)``."""
        e = self.embed(obs.ops)  # (B, N, H)
        pooled = e.mean(1)
        h = self.gru(torch.cat([pooled, obs.glob], -1), h)
        n = e.shape[1]
        x = torch.cat(
            [e, pooled.unsqueeze(1).expand(-1, n, -1), h.unsqueeze(1).expand(-1, n, -1)], -1
        )
        return D.masked_order_logits(self.head(x), ctx.order_valid), h


class RecommendationActor(nn.Module):
    """Slates: a score per (segment, product) from shared weights, Plackett-Luce top-K."""

    def __init__(
        self, in_dim: int, hidden: int, allow_short: bool, scorer: str = "additive"
    ) -> None:
        super().__init__()
        if scorer not in ("additive", "factorised"):
            raise ValueError(f"scorer={scorer!r}: allowed values are 'additive' and 'factorised'")
        self.hidden = hidden
        self.allow_short = allow_short
        self.scorer = scorer
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.seg_embed = mlp([SEGMENT, hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(2 * hidden + GLOBAL, hidden)
        self.w_seg = nn.Linear(hidden, hidden)
        self.w_prod = nn.Linear(hidden, hidden, bias=False)
        self.w_pair = nn.Linear(PAIR, hidden if scorer == "additive" else 1, bias=False)
        self.w_mem = nn.Linear(hidden, hidden, bias=False)
        self.score = nn.Linear(hidden, 1)
        self.stop = mlp([3 * hidden, hidden, 1])

    def forward(
        self, obs: Observation, ctx: Context, h: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Scores ``(B, M, N)``, stop scores ``(B, M)`` (or ``None``) and the next memory."""
        e = self.embed(obs.mkt)  # (B, N, H)
        s = self.seg_embed(ctx.segment)  # (M, H)
        pooled = e.mean(1)
        h = self.gru(torch.cat([pooled, s.mean(0).expand_as(pooled), obs.glob], -1), h)
        if self.scorer == "additive":
            pre = (
                self.w_seg(s).unsqueeze(0).unsqueeze(2)
                + self.w_prod(e).unsqueeze(1)
                + self.w_pair(ctx.pair).unsqueeze(0)
                + self.w_mem(h)[:, None, None, :]
            )
            scores = self.score(torch.tanh(pre)).squeeze(-1)  # (B, M, N)
        else:  # <seg_k + memory_b, product_bi> / sqrt(H) + pair_ki: no (B, M, N, H) tensor
            query = torch.tanh(self.w_seg(s).unsqueeze(0) + self.w_mem(h).unsqueeze(1))  # (B, M, H)
            keys = torch.tanh(self.w_prod(e))  # (B, N, H)
            scores = torch.einsum("bmh,bnh->bmn", query, keys) / self.hidden**0.5
            scores = scores + self.w_pair(ctx.pair).squeeze(-1).unsqueeze(0) + self.score.bias
        stop = None
        if self.allow_short:
            b, m = h.shape[0], s.shape[0]
            z = torch.cat(
                [
                    s.unsqueeze(0).expand(b, m, -1),
                    pooled.unsqueeze(1).expand(b, m, -1),
                    h.unsqueeze(1).expand(b, m, -1),
                ],
                -1,
            )
            stop = self.stop(z).squeeze(-1)
        return scores, stop, h


class Critic(nn.Module):
    """Value of a state from mean-pooled product and segment embeddings (scales with N, M)."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.seg_embed = mlp([SEGMENT, hidden], last_act=True)
        self.head = mlp([2 * hidden + GLOBAL, hidden, hidden, 1])

    def forward(self, features: Tensor, glob: Tensor, ctx: Context) -> Tensor:
        """Normalised value ``(...)`` for features ``(..., N, F)`` and globals ``(..., GLOBAL)``."""
        e = self.embed(features).mean(-2)
        s = self.seg_embed(ctx.segment).mean(0).expand(*e.shape[:-1], -1)
        return self.head(torch.cat([e, s, glob], -1)).squeeze(-1)


@dataclass
class AgentOutput:
    """One period of both actors: sampled (or given) actions, log-probs, entropies, memories."""

    order_bins: Tensor  # (B, N) long
    slates: Tensor  # (B, M, K) long
    logp: dict[str, Tensor]  # agent -> (B,)
    entropy: dict[str, Tensor]  # agent -> (B,) (per-product / per-segment mean)
    hidden: dict[str, Tensor]  # agent -> (B, H) after this period
    orders: Tensor  # (B, N) units
    order_logits: Tensor  # (B, N, G) masked
    scores: Tensor  # (B, M, N)
    stop: Tensor | None  # (B, M)

    def imitation_nll(
        self, expert_bins: Tensor, expert_slates: Tensor, rows: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Negative log-likelihood of expert actions per labelled env, ``(E,)``.

        ``rows`` picks the envs the labels belong to (default: all). Per-product mean for
        orders and per-segment mean for slates, so the penalty's weight does not depend on
        the catalog size.
        """
        logits, scores, stop = self.order_logits, self.scores, self.stop
        if rows is not None:
            logits, scores = logits[rows], scores[rows]
            stop = stop[rows] if stop is not None else None
        lp_o, _ = D.order_log_prob(logits, expert_bins)
        lp_s, _ = D.slate_log_prob(scores, stop, expert_slates)
        return {"replenishment": -lp_o.mean(-1), "recommendation": -lp_s.mean(-1)}


class Agents(nn.Module):
    """Both actors and the critic(s), built from a training config's sizes.

    ``critics`` holds one centralised critic (``"firm"``) or, for independent learners, one
    per agent keyed by the agent's name.
    """

    def __init__(
        self,
        hidden: int,
        bins: int,
        information: str,
        allow_short: bool,
        independent: bool,
        scorer: str = "additive",
    ) -> None:
        super().__init__()
        self.information = information
        self.bins = bins
        self.hidden = hidden
        self.replenishment = ReplenishmentActor(ops_dim(information), hidden, bins)
        self.recommendation = RecommendationActor(mkt_dim(information), hidden, allow_short, scorer)
        if independent:
            self.critics = nn.ModuleDict(
                {
                    "replenishment": Critic(ops_dim(information), hidden),
                    "recommendation": Critic(mkt_dim(information), hidden),
                }
            )
        else:
            self.critics = nn.ModuleDict({"firm": Critic(CRITIC_DIM, hidden)})

    def actor(self, name: str) -> nn.Module:
        return self.replenishment if name == "replenishment" else self.recommendation

    def initial_hidden(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        dtype = next(self.parameters()).dtype
        return {a: torch.zeros(batch_size, self.hidden, device=device, dtype=dtype) for a in AGENTS}

    def values(self, obs: Observation, ctx: Context) -> dict[str, Tensor]:
        """Normalised value of every critic."""
        out = {}
        for name, critic in self.critics.items():
            feats = {"firm": obs.critic, "replenishment": obs.ops, "recommendation": obs.mkt}[name]
            out[name] = critic(feats, obs.glob, ctx)
        return out

    def step(
        self,
        obs: Observation,
        ctx: Context,
        hidden: dict[str, Tensor],
        *,
        generator: torch.Generator | None = None,
        greedy: bool = False,
        order_bins: Tensor | None = None,
        slates: Tensor | None = None,
    ) -> AgentOutput:
        """Advance both memories by one period and sample (or score given) actions."""
        logits, h_ops = self.replenishment(obs, ctx, hidden["replenishment"])
        scores, stop, h_mkt = self.recommendation(obs, ctx, hidden["recommendation"])
        if order_bins is None:
            order_bins = D.sample_order_bins(logits, generator, greedy)
        if slates is None:
            k = max(ctx.params.slate_size, 1)
            slates = D.sample_slates(scores, stop, k, generator, greedy)
        lp_o, ent_o = D.order_log_prob(logits, order_bins)
        lp_s, ent_s = D.slate_log_prob(scores, stop, slates)
        orders = torch.minimum(
            order_bins.to(ctx.order_step.dtype) * ctx.order_step, ctx.params.max_order
        )
        return AgentOutput(
            order_bins=order_bins,
            slates=slates,
            logp={"replenishment": lp_o.sum(-1), "recommendation": lp_s.sum(-1)},
            entropy={"replenishment": ent_o.mean(-1), "recommendation": ent_s.mean(-1)},
            hidden={"replenishment": h_ops, "recommendation": h_mkt},
            orders=orders,
            order_logits=logits,
            scores=scores,
            stop=stop,
        )


class AgentPolicy:
    """The trained agents as a :class:`~coordopt.policies.Policy` (keeps memory and last slates)."""

    def __init__(
        self,
        agents: Agents,
        params: SimParams,
        deterministic: bool = True,
        seed: int = 0,
        name: str = "rl",
    ) -> None:
        self.agents = agents.to(device=params.device, dtype=params.dtype).eval()
        self.params = params
        self.ctx = build_context(params, agents.bins)
        self.deterministic = deterministic
        self.seed = seed
        self.name = name
        self.generator = torch.Generator(device=params.device)
        self.reset(1)

    def reset(self, batch_size: int) -> None:
        self.generator.manual_seed(self.seed)
        self.hidden = self.agents.initial_hidden(batch_size, self.params.device)
        self.last_slates = empty_slates(self.params, batch_size)

    def act(self, state: SimState) -> Action:
        if self.last_slates.shape[0] != state.batch_size:
            self.reset(state.batch_size)
        with torch.no_grad():
            obs = observe(self.ctx, state, self.last_slates, self.agents.information)
            out = self.agents.step(
                obs, self.ctx, self.hidden, generator=self.generator, greedy=self.deterministic
            )
        self.hidden = out.hidden
        self.last_slates = out.slates
        return Action(orders=out.orders, slates=out.slates)


def build_agents(config: Any) -> Agents:
    """The agents described by a :class:`~coordopt.rl.config.TrainConfig`."""
    return Agents(
        hidden=config.hidden_size,
        bins=config.order_bins,
        information=config.information,
        allow_short=config.allow_short_slates,
        independent=config.timescales == "independent",
        scorer=config.scorer,
    )


def load_policy(
    path: Path,
    params: SimParams,
    deterministic: bool = True,
    seed: int = 0,
    checkpoint: str | None = None,
    **_: Any,
) -> AgentPolicy:
    """The policy of a training run directory (``coordopt train --out DIR``).

    Loads ``DIR/best.pt`` (the agents of the best greedy evaluation during training, written
    when training evaluates), else ``DIR/final.pt``, else the latest ``DIR/checkpoint.pt``;
    ``checkpoint`` picks one of those three files (never another path). The file is read as
    tensors and plain data only (:mod:`coordopt.rl.checkpoint`); anything else is refused.
    ``deterministic`` picks greedy actions (argmax order bins, top-K scores); otherwise
    actions are sampled from a generator seeded with ``seed`` at every reset. The agents are
    size-agnostic, so ``params`` may describe a different instance than the one trained on.
    """
    from coordopt.rl.checkpoint import load, run_file

    path = Path(path)
    agents = load(run_file(path, checkpoint)).agents()
    return AgentPolicy(
        agents, params, deterministic=deterministic, seed=seed, name=f"rl:{path.name}"
    )
