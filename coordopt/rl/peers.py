"""Peers: TorchRL's standard multi-agent PPO set-ups (MAPPO, IPPO) on coordopt.

What a practitioner would use instead of coordopt's agents, assembled from TorchRL's own
parts on the native batched environment (:class:`coordopt.torchrl_env.CoordoptEnv`):
``MultiAgentMLP`` actors and critics, ``ProbabilisticActor`` with independent categorical
order and slate-slot distributions, ``ClipPPOLoss`` with its GAE value estimator, a
``Collector`` and a replay buffer sampled without replacement for the epochs.

- ``mappo``: every agent's critic is centralised -- it sees the global ``state`` (everything
  either department could observe). With firm rewards the two groups share one critic (their
  value is the same function); with departmental rewards each group has its own.
- ``ippo``: independent learners; each group's critic sees only that group's observation.

Actors are decentralised in both. The run's lifecycle is the agents' own
(:mod:`coordopt.rl.lifecycle`: evaluations, best policy, time budget, one log schema), without
resume. Its run directory (:class:`~coordopt.rl.rundir.RunDir`) holds ``peer.json`` (the
metadata that makes :func:`coordopt.policies.make_policy` dispatch here), ``best.pt`` /
``final.pt`` (tensors and plain data only, loaded with ``torch.load(weights_only=True)``),
``log.csv`` and ``summary.json``; ``coordopt evaluate INSTANCE --policy DIR`` evaluates it like
any other policy. Everything that needs TorchRL imports it lazily, so this module imports
without it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.distributions import Categorical, Independent

from coordopt.guards import (
    MissingExtra,
    Range,
    SizeError,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from coordopt.instance import Instance
from coordopt.introspect import check_fields, ranged
from coordopt.marl import AGENTS, decode_actions, observation_dims, observe, order_caps
from coordopt.marl import slate_indicator as _slate_indicator
from coordopt.rl.lifecycle import Counters, Lifecycle, RunResult, Schedule
from coordopt.rl.rundir import (
    MAX_LAYERS,
    PEER_META,
    PEER_RUN,
    CheckpointError,
    RunDir,
    check_network_size,
    check_weights,
    check_widths,
    meta_state,
    read_checkpoint,
    reading,
    show,
)
from coordopt.simulator import Action, SimParams, SimState

Tensor = torch.Tensor
ALGORITHMS = ("mappo", "ippo")
FORMAT = "coordopt-torchrl-peer/1"


@dataclass
class PeerConfig:
    """TorchRL multi-agent PPO (MAPPO or IPPO) on the batched coordopt environment."""

    algorithm: Literal["mappo", "ippo"] = "mappo"
    """mappo: centralised critic(s) on the global state; ippo: each group's critic on its own observation."""
    iterations: int = ranged(60, nonneg_int)
    """PPO iterations (each: one full episode in every environment, then the epochs)."""
    seed: int = 0
    """Seed of the environments' demand stream and of the networks and sampling."""
    device: str = "cpu"
    """Torch device: cpu or cuda."""
    threads: int = 1
    """CPU threads of torch (0: torch's default)."""
    num_envs: int = ranged(64, positive_int)
    """Environments simulated in parallel (the environment's batch size B)."""
    hidden_size: int = ranged(64, positive_int)
    """Width of the actors' and critics' MLP layers."""
    depth: int = ranged(2, positive_int)
    """Hidden layers of the actors' and critics' MLPs."""
    information: Literal["coordinated", "siloed"] = "coordinated"
    """coordinated: each agent also sees the other department's signals; siloed: its own only."""
    rewards: Literal["firm", "departmental"] = "firm"
    """firm: both agents get the profit; departmental: revenue to marketing, costs to operations."""
    order_cap: int = ranged(0, nonneg_int)
    """Largest order per product and period (0: max_order, else four periods of mean demand)."""
    lr: float = ranged(3e-4, positive_float)
    """Adam learning rate of actors and critics."""
    epochs: int = ranged(4, positive_int)
    """PPO epochs over each batch."""
    minibatches: int = ranged(4, positive_int)
    """Minibatches per epoch (of the B x T transitions)."""
    gamma: float = -1.0
    """Discount of the returns (negative: the instance's discount)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip: float = ranged(0.2, Range(float, 0.0, 1.0, lo_open=True, hi_open=True))
    """PPO clipping range of the probability ratio."""
    entropy_coef: float = 0.01
    """Entropy bonus (TorchRL's entropy_coeff)."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    eval_every: int = ranged(10, nonneg_int)
    """Evaluate the greedy policy every this many iterations (0: never)."""
    eval_episodes: int = ranged(64, positive_int)
    """Episodes of each evaluation (common random numbers across iterations)."""
    eval_seed: int = 12345
    """Demand stream of the evaluations."""
    time_budget: float = ranged(0.0, nonneg_float)
    """Wall-clock budget in minutes (0: none): training stops after the iteration that leaves
    less than one more iteration's time, evaluated (a peer's run does not resume)."""

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeerConfig:
        """A config from saved values (unknown keys are an error naming them)."""
        extra = set(data) - {f.name for f in fields(cls)}
        if extra:
            raise ValueError(f"unknown peer config keys: {', '.join(sorted(extra))}")
        return cls(**data)


# --------------------------------------------------------------------------- networks


class IndependentCategorical(Independent):
    """Independent categoricals over the last ``event_dims`` batch dimensions of ``logits``
    (one per product's order, or per slate slot): a joint log-probability per agent."""

    def __init__(self, logits: Tensor, event_dims: int = 1) -> None:
        super().__init__(Categorical(logits=logits), event_dims)

    @property
    def deterministic_sample(self) -> Tensor:
        return self.base_dist.probs.argmax(-1)


class Scale(nn.Module):
    """Divide inputs by fixed positive scales (observations in units -> order-of-one)."""

    scale: Tensor

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.clamp(min=1.0))

    def forward(self, x: Tensor) -> Tensor:
        return x / self.scale


class Logits(nn.Module):
    """Flat network outputs ``(..., prod(shape))`` -> logits ``(..., *shape)``, infeasible
    values (orders above a product's cap) pushed to a large negative number."""

    penalty: Tensor

    def __init__(self, shape: tuple[int, ...], feasible: Tensor | None = None) -> None:
        super().__init__()
        self.shape = shape
        mask = torch.ones(shape, dtype=torch.bool) if feasible is None else feasible
        self.register_buffer("penalty", (~mask).float() * -1e9)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], *self.shape) + self.penalty


@dataclass(frozen=True)
class Layout:
    """Sizes of the game on one instance: what the networks are built for."""

    n_products: int
    n_segments: int
    slate_size: int
    pipeline_width: int
    caps: tuple[int, ...]
    obs_dims: dict[str, int]
    state_dim: int

    @classmethod
    def of(cls, params: SimParams, config: PeerConfig) -> Layout:
        caps = order_caps(params.instance, config.order_cap or None)
        return cls(
            n_products=params.n_products,
            n_segments=params.n_segments,
            slate_size=max(params.slate_size, 1),
            pipeline_width=params.pipeline_width,
            caps=tuple(int(c) for c in caps),
            obs_dims=observation_dims(params, config.information == "coordinated"),
            state_dim=observation_dims(params, True)["replenishment"],
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def torchrl_logs_to_stderr() -> None:
    """Point TorchRL's console log (stdout unless ``TORCHRL_CONSOLE_STREAM`` says otherwise) at
    stderr: stdout is ``--json``'s, one JSON object and nothing else."""
    for handler in logging.getLogger("torchrl").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def observation_scales(params: SimParams, layout: Layout, share: bool) -> dict[str, Tensor]:
    """Per-feature scales of the observations and the state: the order cap of the product
    for units, 1 for time and slate indicators (computed through :func:`observe` itself, so
    the layout is defined once)."""
    caps = torch.tensor(layout.caps, dtype=torch.float64).unsqueeze(0)
    w = layout.pipeline_width
    probe = SimState(
        t=params.horizon,
        on_hand=caps,
        pipeline=caps.unsqueeze(-1).expand(1, -1, w),
        last_sales=caps,
        last_demand=caps,
        last_orders=caps,
    )
    ones = torch.ones(1, layout.n_segments, layout.n_products)
    obs = observe(probe, ones, params.horizon, share)
    state = observe(probe, ones, params.horizon, True)["replenishment"]
    return {**{a: obs[a][0] for a in AGENTS}, "state": state[0]}


def build_networks(
    params: SimParams, layout: Layout, config: PeerConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two groups' ``ProbabilisticActor`` s and their critics (TensorDict modules)."""
    from tensordict.nn import TensorDictModule
    from torchrl.modules import MLP, MultiAgentMLP, ProbabilisticActor

    share = config.information == "coordinated"
    scales = observation_scales(params, layout, share)
    n, m, k = layout.n_products, layout.n_segments, layout.slate_size
    g = max(layout.caps) + 1
    feasible = torch.arange(g).unsqueeze(0) <= torch.tensor(layout.caps).unsqueeze(1)
    heads = {
        "replenishment": (Logits((n, g), feasible), 1),
        "recommendation": (Logits((m, k, n + 1)), 2),
    }

    def mlp(inputs: int, outputs: int) -> MultiAgentMLP:
        return MultiAgentMLP(
            n_agent_inputs=inputs,
            n_agent_outputs=outputs,
            n_agents=1,
            centralized=False,
            share_params=True,
            depth=config.depth,
            num_cells=config.hidden_size,
            activation_class=nn.Tanh,
        )

    actors, critics = {}, {}
    for a in AGENTS:
        head, event_dims = heads[a]
        net = nn.Sequential(Scale(scales[a]), mlp(layout.obs_dims[a], head.penalty.numel()), head)
        actors[a] = ProbabilisticActor(
            TensorDictModule(net, in_keys=[(a, "observation")], out_keys=[(a, "logits")]),
            in_keys=[(a, "logits")],
            out_keys=[(a, "action")],
            distribution_class=IndependentCategorical,
            distribution_kwargs={"event_dims": event_dims},
            return_log_prob=True,
        )
    if config.algorithm == "mappo":
        shared = config.rewards == "firm"
        central: nn.Module | None = None
        for a in AGENTS:
            if central is None or not shared:
                central = nn.Sequential(
                    Scale(scales["state"]),
                    MLP(
                        in_features=layout.state_dim,
                        out_features=torch.Size([1, 1]),
                        depth=config.depth,
                        num_cells=config.hidden_size,
                        activation_class=nn.Tanh,
                    ),
                )
            critics[a] = TensorDictModule(central, in_keys=["state"], out_keys=[(a, "state_value")])
    else:
        for a in AGENTS:
            net = nn.Sequential(Scale(scales[a]), mlp(layout.obs_dims[a], 1))
            critics[a] = TensorDictModule(
                net, in_keys=[(a, "observation")], out_keys=[(a, "state_value")]
            )
    return actors, critics


# --------------------------------------------------------------------------- the policy


class PeerPolicy:
    """Trained peer actors as a :class:`~coordopt.policies.Policy` (greedy by default)."""

    def __init__(
        self,
        actors: dict[str, Any],
        params: SimParams,
        layout: Layout,
        config: PeerConfig,
        deterministic: bool = True,
        seed: int = 0,
        name: str = "peer",
    ) -> None:
        from tensordict.nn import TensorDictSequential

        self.module = TensorDictSequential(*(actors[a] for a in AGENTS))
        self.params = params
        self.caps = torch.tensor(layout.caps, device=params.device)
        self.share = config.information == "coordinated"
        self.deterministic = deterministic
        self.seed = seed
        self.name = name
        self.reset(1)

    def reset(self, batch_size: int) -> None:
        p = self.params
        self.last_slates = torch.zeros(batch_size, p.n_segments, p.n_products, device=p.device)
        self.rng = torch.Generator().manual_seed(self.seed).get_state()

    def act(self, state: SimState) -> Action:
        from tensordict import TensorDict
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        b = state.batch_size
        if self.last_slates.shape[0] != b:
            self.reset(b)
        obs = observe(state, self.last_slates, self.params.horizon, self.share)
        td = TensorDict(
            {
                a: TensorDict({"observation": obs[a].unsqueeze(1)}, batch_size=(b, 1))
                for a in AGENTS
            },
            batch_size=(b,),
            device=self.params.device,
        )
        mode = ExplorationType.DETERMINISTIC if self.deterministic else ExplorationType.RANDOM
        with torch.no_grad(), set_exploration_type(mode), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)  # the policy's own stream, never the simulator's
            td = self.module(td)
            self.rng = torch.get_rng_state()
        action = decode_actions(
            td.get(("replenishment", "action")).squeeze(1),
            td.get(("recommendation", "action")).squeeze(1),
            self.caps,
            self.params,
        )
        self.last_slates = _slate_indicator(action.slates, self.params.n_products)
        return action


def load_peer_policy(
    path: Path,
    params: SimParams,
    deterministic: bool = True,
    seed: int = 0,
    checkpoint: str | None = None,
) -> PeerPolicy:
    """The policy of a peer run directory: ``best.pt`` (best greedy evaluation), else
    ``final.pt``; ``checkpoint`` names one of those two (never another path). The actors are
    sized for the instance they were trained on; another instance must have the same
    products, segments, slate size, pipeline width and order caps. The directory is read by
    :mod:`coordopt.rl.rundir` like an agents' run (:func:`read_peer_run`);
    :func:`coordopt.policies.make_policy` checks the options against their declaration
    (:data:`coordopt.policies.PEER_ENTRY`)."""
    path = Path(path)
    config = read_peer_config(path)
    name = f"{config.algorithm}:{path.name}"
    actors, layout = read_peer_run(path, params, config, checkpoint)
    for a in AGENTS:
        actors[a].to(params.device)
    return PeerPolicy(
        actors, params, layout, config, deterministic=deterministic, seed=seed, name=name
    )


def read_peer_config(path: Path) -> PeerConfig:
    """The :class:`PeerConfig` of a peer run directory's ``peer.json``, every field checked."""
    run_dir = RunDir(Path(path), PEER_RUN)
    meta = run_dir.read_config()
    where = run_dir.file(PEER_META)
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{where}: format {show(meta['format'])} is not {FORMAT!r}; refused")
    with reading(where, "its config is malformed"):
        config = PeerConfig.from_dict(meta["config"])
        for name, value in dataclasses.asdict(config).items():  # the fields without a range
            default = getattr(PeerConfig, name, None)
            if isinstance(default, (int, float)) and not (
                type(value) in (int, float) and math.isfinite(value)
            ):
                raise TypeError(f"{name} must be a finite number, got {show(value)}")
            if isinstance(default, str) and not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {show(value)}")
    return config


def read_peer_run(
    path: Path, params: SimParams, config: PeerConfig, checkpoint: str | None = None
) -> tuple[dict[str, Any], Layout]:
    """The trained actors of a peer run on ``params``' instance, from its checkpoint checked
    by the run-directory reader: the layout it was trained for, then its actors' weights
    against the networks its config describes (names, shapes, dtypes, finite), those networks
    within the size limit before any is built."""
    file = RunDir(Path(path), PEER_RUN).checkpoint(checkpoint)
    blob = read_checkpoint(file)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        fmt = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{file}: not a peer checkpoint (format {show(fmt)}); refused")
    if not isinstance(blob.get("layout"), dict) or not isinstance(blob.get("actors"), dict):
        raise CheckpointError(f"{file}: not a peer checkpoint (no layout or actors); refused")
    layout = Layout.of(params, config)
    if layout.as_dict() != blob["layout"]:
        raise ValueError(
            f"{file}: trained for layout {show(blob['layout'], 300)}, but instance "
            f"'{params.instance.name}' gives {show(layout.as_dict(), 300)}; evaluate it on the "
            "instance it was trained on (peer networks are sized to the catalog)"
        )
    check_widths(file, {"hidden_size": config.hidden_size})
    if config.depth > MAX_LAYERS:
        raise SizeError(
            f"{file}: its configuration's depth = {config.depth:,} is beyond the limit of "
            f"{MAX_LAYERS} layers; refused before building them"
        )
    try:  # imported before the meta device (tensordict computes at import)
        import tensordict.nn  # noqa: F401
        import torchrl.modules  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            f"{path}: a TorchRL peer's run needs the torchrl extra "
            f"(pip install 'coordopt[torchrl]'): {exc}"
        ) from None
    torchrl_logs_to_stderr()

    with reading(file, "its config describes no networks TorchRL can build"):
        expected = meta_state(lambda: build_networks(params, layout, config)[0])
    check_network_size(file, expected, f"hidden_size {config.hidden_size}, depth {config.depth}")
    for a in AGENTS:
        shapes = {k.removeprefix(f"{a}."): v for k, v in expected.items() if k.startswith(f"{a}.")}
        check_weights(file, blob["actors"].get(a), shapes, what=f"{a} weight")
    actors, _ = build_networks(params, layout, config)
    for a in AGENTS:
        actors[a].load_state_dict(blob["actors"][a])
    return actors, layout


# --------------------------------------------------------------------------- training


@dataclass(kw_only=True)
class PeerResult(RunResult):
    """What a peer run produced (also written to ``OUT/summary.json``); ``initial_eval``: the
    untrained actors (iteration -1, no environment steps)."""

    algorithm: str


def reward_unit(inst: Instance) -> float:
    """A money scale of one period: the mean arrival rate (per segment and period) times the
    mean price."""
    return float(max(inst.arrival_rate.mean() * inst.price.mean(), 1e-6))


def _blob(actors: dict[str, Any], critics: dict[str, Any], layout: Layout) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "layout": layout.as_dict(),
        "actors": {a: actors[a].state_dict() for a in AGENTS},
        "critics": {a: critics[a].state_dict() for a in AGENTS},
    }


def train_peer(
    instance: Instance, config: PeerConfig, out_dir: str | Path, progress: bool = True
) -> PeerResult:
    """Train MAPPO or IPPO on ``instance``; write the run directory (see the module doc).

    Every iteration collects one full episode in each of ``num_envs`` environments, computes
    GAE per group, and runs ``epochs`` x ``minibatches`` clipped-PPO steps on the sum of both
    groups' losses; the run's lifecycle (:class:`~coordopt.rl.lifecycle.Lifecycle`) logs,
    evaluates, keeps the best actors and stops at the time budget.
    """
    from tensordict.nn import TensorDictSequential
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.envs import RewardScaling, TransformedEnv
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    from coordopt.guards import resolve_device
    from coordopt.torchrl_env import CoordoptEnv

    torchrl_logs_to_stderr()
    started = time.perf_counter()  # --time-budget counts from here
    run_dir = RunDir(Path(out_dir), PEER_RUN)
    if run_dir.holds_run:
        raise ValueError(f"{run_dir.path} already holds a run; choose another --out")
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    params = SimParams.from_instance(instance, device)
    layout = Layout.of(params, config)
    horizon = instance.horizon
    gamma = instance.discount if config.gamma < 0 else config.gamma
    base = CoordoptEnv(
        instance,
        batch_size=config.num_envs,
        order_cap=config.order_cap or None,
        share_information=config.information == "coordinated",
        rewards=config.rewards,
        device=device,
    )
    base.set_seed(config.seed)
    env = TransformedEnv(
        base,
        RewardScaling(0.0, 1.0 / reward_unit(instance), in_keys=[(a, "reward") for a in AGENTS]),
    )
    actors, critics = build_networks(params, layout, config)
    for module in (*actors.values(), *critics.values()):
        module.to(device)
    policy = TensorDictSequential(*(actors[a] for a in AGENTS))
    losses = {}
    for a in AGENTS:
        loss = ClipPPOLoss(
            actors[a],
            critics[a],
            clip_epsilon=config.clip,
            entropy_coeff=config.entropy_coef,
            normalize_advantage=True,
            loss_critic_type="l2",
        )
        loss.set_keys(
            reward=(a, "reward"),
            action=(a, "action"),
            sample_log_prob=(a, "action_log_prob"),
            value=(a, "state_value"),
            done=(a, "done"),
            terminated=(a, "terminated"),
            advantage=(a, "advantage"),
            value_target=(a, "value_target"),
        )
        loss.make_value_estimator(ValueEstimators.GAE, gamma=gamma, lmbda=config.gae_lambda)
        losses[a] = loss
    unique = {id(p): p for loss in losses.values() for p in loss.parameters()}
    optimiser = torch.optim.Adam(list(unique.values()), lr=config.lr)
    frames = config.num_envs * horizon
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames,
        total_frames=frames * config.iterations,
        device=device,
        auto_register_policy_transforms=False,  # feed-forward actors: no InitTracker needed
    )
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames, device=device),
        sampler=SamplerWithoutReplacement(),
        batch_size=max(1, frames // config.minibatches),
    )
    run_dir.write_json(
        PEER_META,
        {"format": FORMAT, "config": dataclasses.asdict(config), "instance": instance.name},
    )
    eval_params = SimParams.from_instance(instance, device)
    life = Lifecycle(
        run_dir,
        Counters(),
        Schedule.of(config),
        eval_params,
        greedy=lambda: PeerPolicy(actors, eval_params, layout, config, deterministic=True),
        save=lambda name: run_dir.save(name, _blob(actors, critics, layout)),
        started=started,
    )
    life.begin()
    batches = iter(collector)
    for it in life.iterations(f"{config.algorithm} {instance.name}", False, progress):
        t0 = time.perf_counter()
        data = next(batches)
        profit = float(data.get(("next", "profit")).sum(-2).mean())
        with torch.no_grad():
            for loss in losses.values():
                loss.value_estimator(
                    data,
                    params=loss.critic_network_params,
                    target_params=loss.target_critic_network_params,
                )
        buffer.extend(data.reshape(-1))
        totals = {"loss_objective": 0.0, "loss_critic": 0.0, "loss_entropy": 0.0}
        for _ in range(config.epochs):
            for _ in range(config.minibatches):
                batch = buffer.sample()
                total = torch.zeros((), device=device)
                for loss in losses.values():
                    vals = loss(batch)
                    for key in totals:
                        total = total + vals[key]
                        totals[key] += float(vals[key].detach()) / (
                            config.epochs * config.minibatches
                        )
                if not bool(torch.isfinite(total)):
                    raise FloatingPointError(
                        f"iteration {it}: the PPO loss is NaN/inf; lower --lr or --max-grad-norm"
                    )
                optimiser.zero_grad()
                total.backward()
                nn.utils.clip_grad_norm_(list(unique.values()), config.max_grad_norm)
                optimiser.step()
        collector.update_policy_weights_()
        life.record({"train_profit": profit, **totals}, frames, time.perf_counter() - t0)
    collector.shutdown()
    return life.finish(PeerResult, algorithm=config.algorithm)
