"""The agents' networks: the two actors and the centralised critic.

Both actors are size-agnostic: their weights are shared across products (replenishment)
or (segment, product) pairs (recommendation), and what they know of the whole catalog comes
through mean-pooled summaries and a GRU memory. The same weights therefore act on any
``N`` and ``M``.

- :class:`ReplenishmentActor`: per-product MLP on ``[product embedding, catalog mean,
  GRU state]`` -> ``G`` order-bin logits (see :mod:`coordopt.rl.distributions`).
- :class:`RecommendationActor`: a score for every (segment, product) from additive
  segment / product / pair / memory embeddings and a second layer (or their factorised
  inner product), plus a per-segment stop score; slates are Plackett-Luce top-K draws.
  With the teacher's plan, a learned multiple of the teacher's own slate gains is added.
- :class:`Critic`: pooled product and segment embeddings -> one value (centralised when fed
  the whole firm's features); with credit per decision also a value per product and per
  segment (:mod:`coordopt.rl.credit`), from the same embeddings.

Their input widths are those of the named features (:func:`~coordopt.rl.features.feature_names`);
the layers are :mod:`coordopt.rl.layers`; :mod:`coordopt.rl.policy` runs them as a policy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from coordopt.rl import distributions as D
from coordopt.rl.config import TrainConfig
from coordopt.rl.credit import PRODUCTS, SEGMENTS, STREAMS
from coordopt.rl.features import (
    GLOBAL,
    PAIR,
    SEGMENT,
    Context,
    Observation,
    feature_names,
    teacher_gain,
)
from coordopt.rl.layers import broadcast_mlp, linear_tanh, mlp, tanh, unroll
from coordopt.simulator import SimParams

Tensor = torch.Tensor
AGENTS = ("replenishment", "recommendation")
GAIN_LOGITS = 30.0
"""Logits per unit of the teacher's normalised slate gain per unit of the recommendation
actor's ``gain_weight``: Adam moves a weight by about its learning rate a step, so at unit
scale a few hundred cloning steps could not make the gain decisive."""
FACTORISED_FROM = 1_000
"""Product-segment pairs from which ``scorer="auto"`` picks the factorised scorer. Below it the
additive scorer, whose tiny and small targets are measured; at ``large`` (100,000 pairs) the
factorised one trains 10x faster, and the tiny target holds with it too."""


def choose_scorer(
    scorer: str, n_products: int, n_segments: int
) -> Literal["factorised", "additive"]:
    """The concrete scorer of a config value (``auto`` resolved by catalog size)."""
    if scorer == "additive" or (scorer == "auto" and n_products * n_segments < FACTORISED_FROM):
        return "additive"
    return "factorised"


class ReplenishmentActor(nn.Module):
    """Orders: shared per-product MLP + catalog mean + GRU memory -> order-bin logits.

    ``skip`` adds a linear map of the features to the logits (a wide-and-deep head): with the
    plan's order in bins among the features, ``a_g x + b_g`` with ``a_g`` linear and ``b_g``
    quadratic in ``g`` peaks at the bin ``x`` names, which the deep part alone learns slowly.
    ``guide`` adds ``GAIN_LOGITS * guide_weight`` to the logit of the teacher's own bin
    (:func:`guide_logits`).
    """

    def __init__(
        self, in_dim: int, hidden: int, bins: int, skip: bool = False, guide: bool = False
    ) -> None:
        super().__init__()
        self.skip = nn.Linear(in_dim, bins) if skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
        self.guide_weight = nn.Parameter(torch.zeros(())) if guide else None
        self.hidden = hidden
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(hidden + len(GLOBAL), hidden)
        # Default init, not a zeroed last layer: with zero output weights the hidden layers get
        # (near-)zero gradients that Adam normalises into full, coherent steps; the hidden
        # tanh units then saturate and the actor can only learn the marginal order law.
        self.head = mlp([3 * hidden, hidden, bins])

    def forward(self, obs: Observation, ctx: Context, h: Tensor) -> tuple[Tensor, Tensor]:
        """Masked order logits ``(T, B, N, G)`` and memories ``(T, B, H)`` over ``T`` periods
        (observations ``(T, B, ...)``, memory ``h (B, H)`` before the first)."""
        e = self.embed(obs.ops)  # (T, B, N, H): every period at once
        pooled = e.mean(-2)
        h_seq = unroll(self.gru, torch.cat([pooled, obs.glob], -1), h)
        logits = broadcast_mlp(self.head, e, torch.cat([pooled, h_seq], -1))
        if self.skip is not None:
            logits = logits + self.skip(obs.ops)
        if self.guide_weight is not None:
            bins = None if obs.guide_bins is None else obs.guide_bins.unsqueeze(-1)
            logits = logits + guide_logits(self.guide_weight, bins, logits.shape[-1])
        return D.masked_order_logits(logits, ctx.order_valid), h_seq


class RecommendationActor(nn.Module):
    """Slates: a score per (segment, product) from shared weights, Plackett-Luce top-K.

    ``gain`` (with the teacher's plan among the observations) adds ``GAIN_LOGITS *
    gain_weight`` times the teacher's normalised slate gain (:func:`teacher_gain`) to the
    scores: a wide part whose greedy top-K is the teacher's slate once the weight is large,
    which the factorised scorer cannot represent (the gain is bilinear in state-dependent
    margins and thresholds). The weight starts at zero: the initial scores are the network's.
    ``guide`` adds ``GAIN_LOGITS * guide_weight`` to the score of every product on the
    teacher's own slate of the segment (:func:`guide_logits`).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        allow_short: bool,
        scorer: str = "additive",
        gain: bool = False,
        guide: bool = False,
    ) -> None:
        super().__init__()
        if scorer not in ("additive", "factorised"):
            raise ValueError(
                f"scorer={scorer!r}: allowed values are 'additive' and 'factorised' "
                "(resolve 'auto' with choose_scorer first)"
            )
        self.hidden = hidden
        self.allow_short = allow_short
        self.scorer = scorer
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.seg_embed = mlp([len(SEGMENT), hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(2 * hidden + len(GLOBAL), hidden)
        self.w_seg = nn.Linear(hidden, hidden)
        self.w_prod = nn.Linear(hidden, hidden, bias=False)
        self.w_pair = nn.Linear(len(PAIR), hidden if scorer == "additive" else 1, bias=False)
        self.w_mem = nn.Linear(hidden, hidden, bias=False)
        self.score = nn.Linear(hidden, 1)
        self.stop = mlp([3 * hidden, hidden, 1])
        self.gain_weight = nn.Parameter(torch.zeros(())) if gain else None
        self.guide_weight = nn.Parameter(torch.zeros(())) if guide else None

    def forward(
        self, obs: Observation, ctx: Context, h: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Scores ``(T, B, M, N)``, stop scores ``(T, B, M)`` (or ``None``) and memories
        ``(T, B, H)`` over ``T`` periods (observations ``(T, B, ...)``, ``h (B, H)``)."""
        e = self.embed(obs.mkt)  # (T, B, N, H)
        s = self.seg_embed(ctx.segment)  # (M, H)
        pooled = e.mean(-2)
        h_seq = unroll(self.gru, torch.cat([pooled, s.mean(0).expand_as(pooled), obs.glob], -1), h)
        seg = self.w_seg(s)  # (M, H)
        if self.scorer == "additive":  # builds (B, M, N, H): one period at a time
            pair = self.w_pair(ctx.pair)  # (M, N, H)
            prod, mem = self.w_prod(e), self.w_mem(h_seq)
            scores = torch.stack(
                [
                    self.score(
                        tanh(seg[:, None] + prod[t, :, None] + pair + mem[t, :, None, None])
                    ).squeeze(-1)
                    for t in range(e.shape[0])
                ]
            )
        else:  # <seg_k + memory_b, product_bi> / sqrt(H) + pair_ki: no (B, M, N, H) tensor
            query = tanh(seg + self.w_mem(h_seq).unsqueeze(-2))  # (T, B, M, H)
            keys = linear_tanh(e, self.w_prod)  # (T, B, N, H)
            pair = self.w_pair(ctx.pair).squeeze(-1) + self.score.bias  # (M, N)
            # the scaling on the small query, the pair term added inside the matmul
            lead = query.shape[:-2]
            scores = torch.baddbmm(
                pair,
                (query / self.hidden**0.5).flatten(0, -3),
                keys.flatten(0, -3).transpose(1, 2),
            ).unflatten(0, lead)
        if self.gain_weight is not None:
            if ctx.plan is None or obs.margin is None or obs.threshold is None:
                raise ValueError("the slate-gain skip needs the teacher's plan in the context")
            gain = teacher_gain(ctx.plan, obs.margin, obs.threshold)
            scores = scores + gain.mul_(GAIN_LOGITS) * self.gain_weight
        if self.guide_weight is not None:
            scores = scores + guide_logits(self.guide_weight, obs.guide_slates, scores.shape[-1])
        stop = None
        if self.allow_short:
            stop = broadcast_mlp(self.stop, s, torch.cat([pooled, h_seq], -1)).squeeze(-1)
        return scores, stop, h_seq


def guide_logits(weight: Tensor, chosen: Tensor | None, size: int) -> Tensor:
    """``GAIN_LOGITS * weight`` at the teacher's choices, 0 elsewhere, ``(..., size)``, from
    ``chosen (..., J)``: indices into the last axis (an order bin per product with ``J = 1``,
    a slate's products with ``J = K``; ``-1``, an empty slot, chooses nothing). A weight of
    0.3 makes each of the teacher's choices 9 logits likelier than the network alone says."""
    if chosen is None:
        raise ValueError("the teacher-decision skip needs the teacher's decisions (ctx.guide)")
    idx = torch.where(chosen < 0, size, chosen)
    hot = weight.new_zeros((*chosen.shape[:-1], size + 1)).scatter_(-1, idx, 1.0)
    return hot[..., :size] * (GAIN_LOGITS * weight)


def purchase_mix(params: SimParams) -> Tensor:
    """Each segment's attraction to each product, recommended or not, as shares of its row,
    ``(M, N)`` (rows summing to 1; zero for a segment attracted to nothing)."""
    base = params.base_attraction
    weights = 2 * base + params.uplift_flat.view_as(base)  # base + recommended attraction
    return weights / weights.sum(-1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)


class Critic(nn.Module):
    """Value of a state from mean-pooled product and segment embeddings (scales with N, M).

    ``decisions`` adds the values of the per-decision streams (:mod:`coordopt.rl.credit`),
    their weights shared across products and segments like the actors': a product's from its
    embedding and the pooled ones; a segment's from its embedding, the product embeddings
    pooled with its purchase mix (:func:`purchase_mix`) and the pooled ones. They are created
    after the firm value's layers, so a critic without them has the same parameters and
    initial values.
    """

    def __init__(self, in_dim: int, hidden: int, decisions: bool = False) -> None:
        super().__init__()
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.seg_embed = mlp([len(SEGMENT), hidden], last_act=True)
        self.head = mlp([2 * hidden + len(GLOBAL), hidden, hidden, 1])
        self.product_head = self.segment_head = None
        if decisions:
            shared = 2 * hidden + len(GLOBAL)
            self.product_head = mlp([hidden + shared, hidden, 1])
            self.segment_head = mlp([2 * hidden + shared, hidden, 1])

    def forward(self, features: Tensor, glob: Tensor, ctx: Context) -> dict[str, Tensor]:
        """Normalised values for features ``(..., N, F)`` and globals ``(..., G)``: the
        state's ``value`` ``(...)`` and, with the per-decision heads, ``products`` ``(..., N)``
        and ``segments`` ``(..., M)``."""
        items = self.embed(features)
        e = items.mean(-2)
        segments = self.seg_embed(ctx.segment)
        s = segments.mean(0).expand(*e.shape[:-1], -1)
        shared = torch.cat([e, s, glob], -1)
        out = {"value": self.head(shared).squeeze(-1)}
        if self.product_head is not None and self.segment_head is not None:
            out[PRODUCTS] = broadcast_mlp(self.product_head, items, shared).squeeze(-1)
            bought = torch.matmul(purchase_mix(ctx.params).to(items.dtype), items)  # (..., M, H)
            own = torch.cat([segments.expand(*bought.shape[:-1], -1), bought], -1)
            out[SEGMENTS] = broadcast_mlp(self.segment_head, own, shared).squeeze(-1)
        return out


@dataclass
class AgentOutput:
    """Both actors over one period (leading dims ``L = (B,)``, :meth:`Agents.step`) or a
    sequence (``L = (T, B)``, :meth:`Agents.evaluate`): actions, log-probs, entropies, memories.

    An actor that was not evaluated has no ``logp`` / ``decision_logp`` / ``entropy`` /
    ``hidden`` entry and
    ``None`` for its ``order_logits`` or ``scores`` (and ``stop``).
    """

    order_bins: Tensor  # (L, N) long
    slates: Tensor  # (L, M, K) long
    logp: dict[str, Tensor]  # agent -> (L)
    decision_logp: dict[str, Tensor]  # agent -> (L, N) per order / (L, M) per slate; sum: logp
    entropy: dict[str, Tensor]  # agent -> (L) (per-product / per-segment mean)
    hidden: dict[str, Tensor]  # agent -> (L, H) after each period
    orders: Tensor  # (L, N) units
    order_logits: Tensor | None  # (L, N, G) masked
    scores: Tensor | None  # (L, M, N)
    stop: Tensor | None  # (L, M)

    def period(self, t: int) -> AgentOutput:
        """The output of period ``t`` of a sequence."""

        def at(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: v[t] for k, v in x.items()}
            return x[t] if isinstance(x, Tensor) else x

        return AgentOutput(**{f.name: at(getattr(self, f.name)) for f in fields(self)})

    def imitation_nll(
        self, expert_bins: Tensor, expert_slates: Tensor, rows: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Negative log-likelihood of expert actions per labelled env, ``(..., E)``.

        ``rows`` picks the envs (along the batch dimension) the labels belong to (default:
        all). Per-product mean for orders and per-segment mean for slates, so the penalty's
        weight does not depend on the catalog size. Only the evaluated actors are scored.
        """
        out = {}
        if self.order_logits is not None:
            logits = self.order_logits if rows is None else self.order_logits[..., rows, :, :]
            out["replenishment"] = -D.order_log_prob(logits, expert_bins)[0].mean(-1)
        if self.scores is not None:
            scores, stop = self.scores, self.stop
            if rows is not None:
                scores = scores[..., rows, :, :]
                stop = stop[..., rows, :] if stop is not None else None
            out["recommendation"] = -D.slate_log_prob(scores, stop, expert_slates)[0].mean(-1)
        return out


class Agents(nn.Module):
    """Both actors and the critic(s), built from a training config's sizes.

    ``critics`` holds one centralised critic (``"firm"``) or, for independent learners, one
    per agent keyed by the agent's name; with ``decisions`` (credit per decision) the firm's
    critic also values the per-product and per-segment streams. ``value_streams`` names every
    value :meth:`values` returns (the reward stream each one learns). ``features`` names the
    inputs' features (:func:`~coordopt.rl.features.feature_names`): a checkpoint stores them.
    ``guide``: the actors add their teacher's decisions to their logits (``teacher_inputs``);
    ``teacher`` then names that teacher's spec, which a checkpoint stores too.
    """

    def __init__(
        self,
        hidden: int,
        bins: int,
        information: str,
        allow_short: bool,
        independent: bool,
        scorer: str = "additive",
        plan: bool = False,
        decisions: bool = False,
        guide: bool = False,
    ) -> None:
        super().__init__()
        if decisions and independent:
            raise ValueError("values per decision need the centralised critic (not independent)")
        self.information = information
        self.bins = bins
        self.hidden = hidden
        self.plan = plan
        self.guide = guide
        self.teacher: str | None = None  # with guide: the spec of the teacher they see
        self.features = feature_names(information, plan)
        ops, mkt = len(self.features["ops"]), len(self.features["mkt"])
        self.replenishment = ReplenishmentActor(ops, hidden, bins, skip=plan, guide=guide)
        self.recommendation = RecommendationActor(
            mkt, hidden, allow_short, scorer, gain=plan, guide=guide
        )
        if independent:
            self.critics = nn.ModuleDict(
                {"replenishment": Critic(ops, hidden), "recommendation": Critic(mkt, hidden)}
            )
        else:
            self.critics = nn.ModuleDict(
                {"firm": Critic(len(self.features["critic"]), hidden, decisions)}
            )
        self.value_streams = (*self.critics, *(STREAMS if decisions else ()))

    def actor(self, name: str) -> nn.Module:
        return self.replenishment if name == "replenishment" else self.recommendation

    def initial_hidden(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        dtype = next(self.parameters()).dtype
        return {a: torch.zeros(batch_size, self.hidden, device=device, dtype=dtype) for a in AGENTS}

    def values(self, obs: Observation, ctx: Context) -> dict[str, Tensor]:
        """Normalised value of every stream (:attr:`value_streams`)."""
        out = {}
        for name, critic in self.critics.items():
            feats = {"firm": obs.critic, "replenishment": obs.ops, "recommendation": obs.mkt}[name]
            values = critic(feats, obs.glob, ctx)
            out[name] = values.pop("value")
            out.update(values)
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

        def first(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.unsqueeze(0)

        seq = obs.map(lambda x: x.unsqueeze(0))
        out = self._act(
            seq, ctx, hidden, AGENTS, generator, greedy, first(order_bins), first(slates)
        )
        return out.period(0)

    def evaluate(
        self,
        obs: Observation,
        ctx: Context,
        hidden: dict[str, Tensor],
        order_bins: Tensor,
        slates: Tensor,
        actors: tuple[str, ...] = AGENTS,
    ) -> AgentOutput:
        """Score given actions ``(T, B, ...)`` over ``T`` periods, memories unrolled from
        ``hidden``; every period's product and segment layers run as one batch. Only
        ``actors`` are evaluated (PPO skips the one it is not updating)."""
        return self._act(obs, ctx, hidden, actors, None, False, order_bins, slates)

    def _act(
        self,
        obs: Observation,
        ctx: Context,
        hidden: dict[str, Tensor],
        actors: tuple[str, ...],
        generator: torch.Generator | None,
        greedy: bool,
        order_bins: Tensor | None,
        slates: Tensor | None,
    ) -> AgentOutput:
        each, entropy, memory = {}, {}, {}
        logits = scores = stop = None
        if "replenishment" in actors:
            logits, memory["replenishment"] = self.replenishment(obs, ctx, hidden["replenishment"])
            if order_bins is None:
                order_bins = D.sample_order_bins(logits, generator, greedy)
            lp, ent = D.order_log_prob(logits, order_bins)
            each["replenishment"], entropy["replenishment"] = lp, ent.mean(-1)
        if "recommendation" in actors:
            scores, stop, memory["recommendation"] = self.recommendation(
                obs, ctx, hidden["recommendation"]
            )
            if slates is None:
                k = max(ctx.params.slate_size, 1)
                slates = D.sample_slates(scores, stop, k, generator, greedy)
            lp, ent = D.slate_log_prob(scores, stop, slates)
            each["recommendation"], entropy["recommendation"] = lp, ent.mean(-1)
        if order_bins is None or slates is None:
            raise ValueError("actions of an actor that is not evaluated must be given")
        orders = torch.minimum(
            order_bins.to(ctx.order_step.dtype) * ctx.order_step, ctx.params.max_order
        )
        return AgentOutput(
            order_bins=order_bins,
            slates=slates,
            logp={a: lp.sum(-1) for a, lp in each.items()},
            decision_logp=each,
            entropy=entropy,
            hidden=memory,
            orders=orders,
            order_logits=logits,
            scores=scores,
            stop=stop,
        )


def build_agents(config: TrainConfig, params: SimParams | None = None) -> Agents:
    """The agents described by a :class:`~coordopt.rl.config.TrainConfig` (``params``, the
    instance trained on, resolves ``scorer="auto"``)."""
    scorer = config.scorer
    if scorer == "auto":
        if params is None:
            raise ValueError("scorer='auto' needs the instance (params) to choose a scorer")
        scorer = choose_scorer(scorer, params.n_products, params.n_segments)
    return Agents(
        hidden=config.hidden_size,
        bins=config.order_bins,
        information=config.information,
        allow_short=config.allow_short_slates,
        independent=config.timescales == "independent",
        scorer=scorer,
        plan=config.plan_inputs,
        decisions=config.per_decision,
        guide=config.teacher_inputs,
    )
