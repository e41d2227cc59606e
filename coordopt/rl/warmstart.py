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

from coordopt.evaluation import Evaluation, compare, evaluate
from coordopt.guards import estimate
from coordopt.instance import Instance
from coordopt.policies import Policy, PolicySpec, make_policy
from coordopt.rl.config import teacher_spec
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


TRIAL_CANDIDATES = (
    "bidprice",
    "siloed:inventory=dp;max_states=4096",
    "static:max_states=4096",
    "lagrangian:iterations=8;max_states=64",
)
"""The teachers ``--warm-start auto`` tries where the exact DP does not fit (the teacher
trial, :func:`teacher_trial`), with the options the scale study runs them with at 10,000
products: no one is strongest at every size (32 episodes, seed 5, paired: on ``small`` the
best siloed firm 20,997, bid price 20,957, the decomposition policy 20,958; on ``medium`` bid
price 128,465, the decomposition policy 128,135, the best siloed firm 127,991; on ``large``
the static-margin firm at 4,096 states 842,163, +0.25% over the best siloed firm and +0.43%
over the decomposition policy; at 10,000 products the static-margin firm +13.1% over bid
price, the best siloed firm +12.9%, the decomposition policy +9.6%)."""

TRIAL_SECONDS = 300.0
"""The most seconds the size guard's estimate (:func:`coordopt.guards.estimate` of the
candidate's declared work over the trial's episodes, as ``evaluate --policy`` prices it) may
give a candidate of the teacher trial: one priced above is skipped, and the trial says so.
The skip is by estimate, never by measured time, so the choice depends only on the instance,
the options and the seed. At 10,000 products the decomposition policy is priced at about
510 s (skipped; measured there 2.9% below the best siloed firm), on ``large`` at 51 s."""

TRIAL = "auto (teacher trial)"
"""What :func:`expert_name` says of ``auto`` where the teacher is only known once the trial
ran."""


@dataclass
class TeacherTrial:
    """The teacher trial of ``--warm-start auto``: the candidates simulated greedily on the
    same episodes (common random numbers), ranked by mean profit, best first."""

    episodes: int
    seed: int
    ranked: list[dict[str, Any]]
    """Per candidate, best first: ``teacher`` (its spec), ``mean`` profit and its ``ci95``
    half-width, ``vs_winner`` (the paired mean difference to the winner, episode by episode)
    and its ``vs_winner_ci95``, and ``seconds`` (building and simulating it; not used to choose)."""
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """Candidates not tried: ``teacher`` and ``reason`` (``estimated_seconds`` where the
    size guard priced it above :data:`TRIAL_SECONDS`)."""
    plan_teacher: Policy | None = field(default=None, repr=False)
    """The bid-price candidate, whose initial solve the plan the agents observe reuses
    (:func:`~coordopt.rl.features.teacher_plan`); not reported."""

    @property
    def winner(self) -> str:
        """The chosen teacher's spec: the highest mean profit."""
        return str(self.ranked[0]["teacher"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "seed": self.seed,
            "winner": self.winner,
            "candidates": self.ranked,
            "skipped": self.skipped,
            "seconds_cap": TRIAL_SECONDS,
        }

    def line(self) -> str:
        """The trial in one line: the candidates best first, each after the first with its
        paired difference to the winner and 95% half-width; then those skipped."""

        def money(x: float) -> str:
            return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"

        parts = []
        for i, r in enumerate(self.ranked):
            text = f"{r['teacher']} {money(r['mean'])}"
            if i:
                sign = ">" if self.ranked[i - 1]["mean"] > r["mean"] else "="
                diff = f"{money(r['vs_winner'])} ± {money(r['vs_winner_ci95'])}"
                text = f"{sign} {text} ({diff})"
            parts.append(text)
        line = f"teacher trial ({self.episodes} episodes, seed {self.seed}): " + " ".join(parts)
        if self.skipped:
            line += "; skipped " + ", ".join(
                f"{s['teacher']} ({s['reason']})" for s in self.skipped
            )
        return line


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
    """Environment steps simulated by the warm start (DAgger and critic rollouts; the
    teacher trial's simulations of the candidate teachers are counted in ``trial``)."""
    trial: dict[str, Any] | None = None
    """The teacher trial that chose the expert (:meth:`TeacherTrial.as_dict`; ``None``: no
    trial, the expert was named or the exact DP)."""

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
            "trial": self.trial,
        }


def expert_name(name: str, inst: Instance) -> str:
    """The expert of ``--warm-start name`` on ``inst`` as far as it is known before training:
    a named teacher's spec as given, ``none``, or for ``auto`` the exact DP (``dp``) where it
    fits (:func:`~coordopt.solvers.dp.reference_method`), else :data:`TRIAL`.

    ``auto`` stands for the strongest optimiser policy measured on the instance: the DP's
    policy is optimal where it fits; elsewhere no one teacher is strongest at every size (bid
    price beat fluid MPC on ``small``, ``medium`` and ``tafeng-50``; at 10,000 products the
    best siloed firm beat it by 12.9%, the decomposition policy by 9.6%), so the candidates
    (:data:`TRIAL_CANDIDATES`) are measured on the instance itself before training, the
    strongest teaching (:func:`teacher_trial`; :func:`choose_expert` runs it).
    """
    if name != "auto":
        return name
    return "dp" if reference_method(inst) == "dp" else TRIAL


def _options(spec: PolicySpec, reoptimize: int) -> dict[str, Any]:
    """``reoptimize_every`` for a teacher that declares it (beneath the spec's own options)."""
    takes = "reoptimize_every" in spec.entry.options
    return {"reoptimize_every": reoptimize} if takes and reoptimize >= 0 else {}


def trial_seconds(text: str, inst: Instance, episodes: int, reoptimize: int = -1) -> float:
    """The size guard's estimate of building candidate ``text`` and simulating it for
    ``episodes`` episodes on ``inst`` (its entry's declared work, as ``evaluate`` prices it)."""
    spec = teacher_spec(text)
    work: dict[str, Any] = spec.workload(_options(spec, reoptimize)).workload(
        episodes, inst.horizon
    )
    sizes = (inst.horizon, inst.n_segments, inst.n_products)
    return estimate(*sizes, episodes=episodes, batch=episodes, **work).seconds


def trial_candidates(
    inst: Instance, episodes: int, reoptimize: int = -1
) -> tuple[list[str], list[dict[str, Any]]]:
    """The teacher trial's candidates on ``inst`` priced within :data:`TRIAL_SECONDS`
    (:func:`trial_seconds`), in the order of :data:`TRIAL_CANDIDATES`, and those skipped:
    ``teacher``, ``reason``, ``estimated_seconds``."""
    kept: list[str] = []
    skipped: list[dict[str, Any]] = []
    for text in TRIAL_CANDIDATES:
        seconds = trial_seconds(text, inst, episodes, reoptimize)
        if seconds > TRIAL_SECONDS:
            reason = f"estimated {seconds:,.0f} s > {TRIAL_SECONDS:,.0f} s"
            skipped.append({"teacher": text, "reason": reason, "estimated_seconds": seconds})
        else:
            kept.append(text)
    return kept, skipped


def _make(text: str, params: SimParams, reoptimize: int) -> Policy:
    spec = teacher_spec(text)
    return make_policy(spec, params, **_options(spec, reoptimize))


def teacher_trial(
    params: SimParams, episodes: int, seed: int, reoptimize: int = -1
) -> tuple[Policy, TeacherTrial]:
    """The strongest of :data:`TRIAL_CANDIDATES` on ``params``' instance, and the trial.

    Each candidate priced within :data:`TRIAL_SECONDS` (:func:`trial_candidates`) is built on
    ``params`` (with ``reoptimize``, as :func:`make_expert` builds an expert) and simulated
    greedily for ``episodes`` episodes of the demand stream ``seed``
    (:func:`coordopt.evaluation.evaluate`: every candidate faces the same customers); the
    highest mean profit wins (the earlier candidate on a tie), deterministic for the seed.
    The winner's policy is the expert (not built again); the others are dropped as soon as
    they are beaten. One line on stderr gives the ranking with paired 95% intervals.
    """
    inst = params.instance
    candidates, skipped = trial_candidates(inst, episodes, reoptimize)
    tried: list[tuple[str, Evaluation, float]] = []
    best: Policy | None = None
    best_eval: Evaluation | None = None
    plan_teacher: Policy | None = None
    for text in candidates:
        began = time.perf_counter()
        try:
            policy = _make(text, params, reoptimize)
        except ModuleNotFoundError as exc:
            skipped.append({"teacher": text, "reason": f"not available ({exc})"})
            continue
        ev = evaluate(params, policy, episodes=episodes, seed=seed)
        tried.append((text, ev, time.perf_counter() - began))
        if best_eval is None or ev.mean > best_eval.mean:
            best, best_eval = policy, ev
        if text.partition(":")[0] == "bidprice":
            plan_teacher = policy
    if best is None or best_eval is None:
        why = "; ".join(f"{s['teacher']}: {s['reason']}" for s in skipped)
        raise ValueError(
            f"--warm-start auto: no candidate teacher could be tried on {inst.name} ({why}); "
            "name one with --warm-start NAME[:KEY=VALUE;...] or use --warm-start none"
        )
    ranked = []
    for text, ev, seconds in sorted(tried, key=lambda x: -x[1].mean):  # stable: ties in order
        diff = compare(ev, best_eval)
        ranked.append(
            {
                "teacher": text,
                "mean": ev.mean,
                "ci95": ev.ci95,
                "vs_winner": diff["mean"],
                "vs_winner_ci95": diff["ci95"],
                "seconds": seconds,
            }
        )
    trial = TeacherTrial(episodes, seed, ranked, skipped, plan_teacher)
    print(trial.line(), file=sys.stderr)
    return best, trial


def choose_expert(
    name: str, params: SimParams, reoptimize: int = -1, episodes: int = 8, seed: int = 12345
) -> tuple[Policy, TeacherTrial | None]:
    """The expert of ``--warm-start name`` (not ``none``) on ``params``, and the teacher trial
    that chose it (``None`` where there was none): ``auto`` is :func:`expert_name`'s choice,
    by :func:`teacher_trial` (``episodes`` of the stream ``seed``) where the exact DP does not
    fit; a teacher's spec ``NAME[:KEY=VALUE;...]`` is built with its own options.

    ``reoptimize >= 0`` sets the periods between re-optimisations of an expert that declares
    the option ``reoptimize_every`` (bid-price control; 0: keep the initial stock values;
    labels then cost one slate search per period), beneath the spec's own options.
    """
    text = expert_name(name, params.instance)
    if text == TRIAL:
        return teacher_trial(params, episodes, seed, reoptimize)
    try:
        return _make(text, params, reoptimize), None
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"warm-start expert '{text}' is not available ({exc}); use --warm-start siloed or none"
        ) from exc


def make_guide(text: str, params: SimParams, expert: Policy | None, reoptimize: int) -> Policy:
    """The teacher ``text`` as the agents see it (``teacher_inputs``): deciding from the state
    alone, so that the same state always shows the same decision -- a bid-price teacher keeps
    its initial stock values (``reoptimize_every=0``). ``expert``, the warm start's expert
    of the same spec built with ``reoptimize``, is reused where that is the same policy."""
    spec = teacher_spec(text)
    if expert is not None and _options(spec, reoptimize) == _options(spec, 0):
        return expert
    try:
        return _make(text, params, 0)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the agents' teacher '{text}' is not available ({exc})") from exc


def make_expert(
    name: str, params: SimParams, reoptimize: int = -1, episodes: int = 8, seed: int = 12345
) -> Policy:
    """The expert policy of ``--warm-start name`` (:func:`choose_expert`, without its trial)."""
    return choose_expert(name, params, reoptimize, episodes, seed)[0]


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
        ret = discounted_returns(ro.rewards[name], gamma)
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
