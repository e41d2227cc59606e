"""The two agents, the centralised critic and the trained-agent :class:`Policy`.

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
  the whole firm's features).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from coordopt.rl import distributions as D
from coordopt.rl.features import (
    GLOBAL,
    PAIR,
    SEGMENT,
    Context,
    Observation,
    build_context,
    critic_dim,
    mkt_dim,
    observe,
    ops_dim,
    teacher_gain,
)
from coordopt.simulator import Action, SimParams, SimState, empty_slates

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


_MINUS_ONE = torch.tensor(-1.0)


def _tanh_from_doubled(z: Tensor) -> Tensor:
    """``tanh(z / 2) = 2 sigmoid(z) - 1`` in place on ``z`` (two passes, no allocation)."""
    return torch.add(_MINUS_ONE.to(z.dtype), z.sigmoid_(), alpha=2, out=z)


class _Tanh(torch.autograd.Function):
    """``tanh(x) = 2 sigmoid(2x) - 1``: the same function, several times faster than
    ``torch.tanh`` forward and backward on CPU (torch 2.x vectorises sigmoid, not tanh)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = _tanh_from_doubled(x * 2)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class _LinearTanh(torch.autograd.Function):
    """``tanh(x W^T + b + shift)`` as one operation: the weights are doubled (exact in binary
    floating point) so the matmul's own output becomes ``2 sigmoid(.) - 1`` in place, and the
    backward is the linear layer's matmuls after one ``tanh_backward`` pass. The same function
    as ``Linear`` then ``Tanh``, with four fewer passes over (and two fewer allocations of) the
    ``rows x hidden`` activation, which dominate the agents' time at catalog scale.

    ``shift (..., 1, H)`` (or ``None``) is added to every item of ``x (..., n, F)``: the
    per-batch part of a layer whose input concatenates item and shared features.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, shift: Tensor | None
    ) -> Tensor:
        z = F.linear(x, weight * 2, None if bias is None else bias * 2)
        if shift is not None:  # in place unless shift broadcasts z to more rows
            grows = torch.broadcast_shapes(z.shape, shift.shape) != z.shape
            z = z.add(shift, alpha=2) if grows else z.add_(shift, alpha=2)
        y = _tanh_from_doubled(z)
        ctx.save_for_backward(x, weight, y)
        ctx.has_bias, ctx.shift_shape = bias is not None, None if shift is None else shift.shape
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        gz = torch.ops.aten.tanh_backward(grad, y)
        rows = gz.reshape(-1, gz.shape[-1])
        gx = gw = gb = gs = None
        if ctx.needs_input_grad[0]:
            gx = (gz @ weight).sum_to_size(x.shape)
        if ctx.needs_input_grad[1]:
            gw = rows.t() @ x.expand(*gz.shape[:-1], x.shape[-1]).reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = rows.sum(0)
        if ctx.shift_shape is not None and ctx.needs_input_grad[3]:
            gs = gz.sum_to_size(ctx.shift_shape)
        return gx, gw, gb, gs


def linear_tanh(x: Tensor, layer: nn.Linear, shift: Tensor | None = None) -> Tensor:
    """``tanh(layer(x) + shift)`` (see :class:`_LinearTanh`)."""
    return _LinearTanh.apply(x, layer.weight, layer.bias, shift)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent (see :class:`_Tanh`)."""
    return _Tanh.apply(x)


class Tanh(nn.Module):
    """:func:`tanh` as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


class MLP(nn.Sequential):
    """``Linear``/``Tanh`` layers whose pairs run fused (:func:`linear_tanh`); the parameters and
    their names are those of the plain ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            fused = i + 1 < len(layers) and isinstance(layers[i + 1], Tanh)
            if fused and isinstance(layer, nn.Linear):
                x, i = linear_tanh(x, layer), i + 2
            else:
                x, i = layer(x), i + 1
        return x


def mlp(sizes: list[int], last_act: bool = False) -> MLP:
    """A tanh MLP (tanh keeps PPO's updates tame)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(Tanh())
    return MLP(*layers)


def broadcast_mlp(net: MLP, items: Tensor, shared: Tensor) -> Tensor:
    """``net(cat([items, shared], -1))`` with ``shared (..., S)`` the same for every item of
    ``items (..., n, F)``, without building the concatenation: the first layer's weight is
    split, so the shared part costs one row per batch instead of one per item."""
    first, act = net[0], net[1]
    assert isinstance(first, nn.Linear) and isinstance(act, Tanh)
    f = items.shape[-1]
    shift = F.linear(shared, first.weight[:, f:], first.bias).unsqueeze(-2)
    return net[2:](_LinearTanh.apply(items, first.weight[:, :f], None, shift))


def unroll(gru: nn.GRUCell, inputs: Tensor, h: Tensor) -> Tensor:
    """The memories ``(T, B, H)`` after each period of a GRU fed ``inputs (T, B, I)`` from ``h``."""
    out = []
    for x in inputs:
        h = gru(x, h)
        out.append(h)
    return torch.stack(out)


class ReplenishmentActor(nn.Module):
    """Orders: shared per-product MLP + catalog mean + GRU memory -> order-bin logits.

    ``skip`` adds a linear map of the features to the logits (a wide-and-deep head): with the
    plan's order in bins among the features, ``a_g x + b_g`` with ``a_g`` linear and ``b_g``
    quadratic in ``g`` peaks at the bin ``x`` names, which the deep part alone learns slowly.
    """

    def __init__(self, in_dim: int, hidden: int, bins: int, skip: bool = False) -> None:
        super().__init__()
        self.skip = nn.Linear(in_dim, bins) if skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
        self.hidden = hidden
        self.embed = mlp([in_dim, hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(hidden + GLOBAL, hidden)
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
        return D.masked_order_logits(logits, ctx.order_valid), h_seq


class RecommendationActor(nn.Module):
    """Slates: a score per (segment, product) from shared weights, Plackett-Luce top-K.

    ``gain`` (with the teacher's plan among the observations) adds ``GAIN_LOGITS *
    gain_weight`` times the teacher's normalised slate gain (:func:`teacher_gain`) to the
    scores: a wide part whose greedy top-K is the teacher's slate once the weight is large,
    which the factorised scorer cannot represent (the gain is bilinear in state-dependent
    margins and thresholds). The weight starts at zero: the initial scores are the network's.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        allow_short: bool,
        scorer: str = "additive",
        gain: bool = False,
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
        self.seg_embed = mlp([SEGMENT, hidden, hidden], last_act=True)
        self.gru = nn.GRUCell(2 * hidden + GLOBAL, hidden)
        self.w_seg = nn.Linear(hidden, hidden)
        self.w_prod = nn.Linear(hidden, hidden, bias=False)
        self.w_pair = nn.Linear(PAIR, hidden if scorer == "additive" else 1, bias=False)
        self.w_mem = nn.Linear(hidden, hidden, bias=False)
        self.score = nn.Linear(hidden, 1)
        self.stop = mlp([3 * hidden, hidden, 1])
        self.gain_weight = nn.Parameter(torch.zeros(())) if gain else None

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
        stop = None
        if self.allow_short:
            stop = broadcast_mlp(self.stop, s, torch.cat([pooled, h_seq], -1)).squeeze(-1)
        return scores, stop, h_seq


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
    """Both actors over one period (leading dims ``L = (B,)``, :meth:`Agents.step`) or a
    sequence (``L = (T, B)``, :meth:`Agents.evaluate`): actions, log-probs, entropies, memories.

    An actor that was not evaluated has no ``logp`` / ``entropy`` / ``hidden`` entry and
    ``None`` for its ``order_logits`` or ``scores`` (and ``stop``).
    """

    order_bins: Tensor  # (L, N) long
    slates: Tensor  # (L, M, K) long
    logp: dict[str, Tensor]  # agent -> (L)
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
        plan: bool = False,
    ) -> None:
        super().__init__()
        self.information = information
        self.bins = bins
        self.hidden = hidden
        self.plan = plan
        ops, mkt = ops_dim(information, plan), mkt_dim(information, plan)
        self.replenishment = ReplenishmentActor(ops, hidden, bins, skip=plan)
        self.recommendation = RecommendationActor(mkt, hidden, allow_short, scorer, gain=plan)
        if independent:
            self.critics = nn.ModuleDict(
                {"replenishment": Critic(ops, hidden), "recommendation": Critic(mkt, hidden)}
            )
        else:
            self.critics = nn.ModuleDict({"firm": Critic(critic_dim(plan), hidden)})

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
        logp, entropy, memory = {}, {}, {}
        logits = scores = stop = None
        if "replenishment" in actors:
            logits, memory["replenishment"] = self.replenishment(obs, ctx, hidden["replenishment"])
            if order_bins is None:
                order_bins = D.sample_order_bins(logits, generator, greedy)
            lp, ent = D.order_log_prob(logits, order_bins)
            logp["replenishment"], entropy["replenishment"] = lp.sum(-1), ent.mean(-1)
        if "recommendation" in actors:
            scores, stop, memory["recommendation"] = self.recommendation(
                obs, ctx, hidden["recommendation"]
            )
            if slates is None:
                k = max(ctx.params.slate_size, 1)
                slates = D.sample_slates(scores, stop, k, generator, greedy)
            lp, ent = D.slate_log_prob(scores, stop, slates)
            logp["recommendation"], entropy["recommendation"] = lp.sum(-1), ent.mean(-1)
        if order_bins is None or slates is None:
            raise ValueError("actions of an actor that is not evaluated must be given")
        orders = torch.minimum(
            order_bins.to(ctx.order_step.dtype) * ctx.order_step, ctx.params.max_order
        )
        return AgentOutput(
            order_bins=order_bins,
            slates=slates,
            logp=logp,
            entropy=entropy,
            hidden=memory,
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
        ctx: Context | None = None,
    ) -> None:
        self.agents = agents.to(device=params.device, dtype=params.dtype).eval()
        self.params = params
        # ctx: the instance's context already built (training passes its own: no second plan)
        self.ctx = ctx if ctx is not None else build_context(params, agents.bins, plan=agents.plan)
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


def build_agents(config: Any, params: SimParams | None = None) -> Agents:
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
    )


def load_policy(
    path: Path,
    params: SimParams,
    deterministic: bool = True,
    seed: int = 0,
    checkpoint: str | None = None,
) -> AgentPolicy:
    """The policy of a training run directory (``coordopt train --out DIR``).

    Loads ``DIR/best.pt`` (the agents of the best greedy evaluation during training, written
    when training evaluates), else ``DIR/final.pt``, else the latest ``DIR/checkpoint.pt``;
    ``checkpoint`` picks one of those three files (never another path). The run directory is
    read by :mod:`coordopt.rl.rundir` (tensors and plain data only, every file checked);
    anything else is refused. ``deterministic`` picks greedy actions (argmax order bins,
    top-K scores); otherwise actions are sampled from a generator seeded with ``seed`` at
    every reset. The agents are size-agnostic, so ``params`` may describe a different
    instance than the one trained on. Options are checked like any policy's
    (:func:`coordopt.policies.check_options`); one it does not take is a ``TypeError``.
    """
    from coordopt.guards import seed_int
    from coordopt.policies import check_options
    from coordopt.rl.checkpoint import load, run_file

    path = Path(path)
    name = f"rl:{path.name}"
    rules = {"deterministic": bool, "seed": seed_int}
    check_options(name, rules, {"deterministic": deterministic, "seed": seed})
    agents = load(run_file(path, checkpoint)).agents()
    return AgentPolicy(agents, params, deterministic=deterministic, seed=seed, name=name)
