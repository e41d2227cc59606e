"""The trained agents as a :class:`~coordopt.policies.Policy`, and the loader of a training
run directory's agents (the entry point :data:`coordopt.policies.AGENT_ENTRY`)."""

from __future__ import annotations

from pathlib import Path

import torch

from coordopt.rl.checkpoint import load, run_file
from coordopt.rl.features import Context, build_context, observe
from coordopt.rl.networks import Agents
from coordopt.simulator import Action, SimParams, SimState, empty_slates


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
    instance than the one trained on. :func:`coordopt.policies.make_policy` checks the options
    against their declaration (:data:`coordopt.policies.AGENT_ENTRY`).
    """
    path = Path(path)
    name = f"rl:{path.name}"
    agents = load(run_file(path, checkpoint)).agents()
    return AgentPolicy(agents, params, deterministic=deterministic, seed=seed, name=name)
