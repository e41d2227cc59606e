"""The trained agents as a :class:`~coordopt.policies.Policy`, and the loader of a training
run directory's agents (the entry point :data:`coordopt.policies.AGENT_ENTRY`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from coordopt.evaluation import ci_halfwidth, evaluate
from coordopt.rl.checkpoint import load, run_file
from coordopt.rl.features import Context, build_context, observe
from coordopt.rl.networks import Agents
from coordopt.rl.rundir import AGENTS_RUN, BEST, RunDir
from coordopt.rl.warmstart import make_guide
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
        self.ctx = ctx if ctx is not None else agents_context(agents, params)
        self.deterministic = deterministic
        self.seed = seed
        self.name = name
        self.generator = torch.Generator(device=params.device)
        self.reset(1)

    def reset(self, batch_size: int) -> None:
        if self.ctx.guide is not None:
            self.ctx.guide.reset(batch_size)
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


def agents_context(agents: Agents, params: SimParams) -> Context:
    """The context the agents act in on ``params``: their teacher's plan where they observe
    one, and their teacher rebuilt from its spec where they see its decisions."""
    guide = None
    if agents.guide:
        if agents.teacher is None:
            raise ValueError("these agents see their teacher's decisions but name no teacher")
        guide = make_guide(agents.teacher, params, None, 0)
    return build_context(params, agents.bins, plan=agents.plan, guide=guide)


def choose_decoding(
    run_dir: Path, params: SimParams, ctx: Context, episodes: int, seed: int
) -> dict[str, Any]:
    """Greedy or sampled actions for the run's best agents (``best.pt``): both evaluated on the
    training's evaluation stream (``episodes`` of ``seed``, common random numbers) and paired;
    sampled actions are chosen only where they earn more beyond the 95% interval.

    Greedy actions take each product's most likely order bin, so a product the agents order
    for with probability below one half is never ordered: at 10,000 products, where most sell
    a fifth of a unit a period, that under-ordered one clone by 4.7%, while another clone there
    and those on ``large`` earn more greedily; hence the measurement. :func:`load_policy` acts
    as the run chose. Returns each decoding's mean profit, ``sampled_minus_greedy`` with its
    ``ci95``, ``deterministic`` (the choice) and ``seconds``."""
    agents = load(run_file(run_dir, BEST)).agents()
    evs = {
        greedy: evaluate(
            params, AgentPolicy(agents, params, deterministic=greedy, ctx=ctx), episodes, seed
        )
        for greedy in (True, False)
    }
    diff = evs[False].profit - evs[True].profit
    gain, ci = float(diff.mean()), ci_halfwidth(diff)
    return {
        "greedy": evs[True].mean,
        "sampled": evs[False].mean,
        "sampled_minus_greedy": gain,
        "ci95": ci,
        "deterministic": not gain - ci > 0,
        "seconds": evs[True].seconds + evs[False].seconds,
    }


def run_decoding(path: Path, checkpoint: str | None) -> bool:
    """Whether the run's agents act greedily: what :func:`choose_decoding` chose at the end of
    training for ``best.pt`` (the checkpoint loaded unless ``checkpoint`` names another),
    greedy where it chose nothing (an unfinished run, one without evaluations, or one
    trained before the choice was made)."""
    run = RunDir(Path(path), AGENTS_RUN)
    if checkpoint not in (None, BEST) or not (run.finished and run.holds(BEST)):
        return True
    decoding = run.read_summary().get("decoding") or {}
    return bool(decoding.get("deterministic", True))


def load_policy(
    path: Path,
    params: SimParams,
    deterministic: bool | None = None,
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
    every reset; unset, the run's own choice (:func:`run_decoding`). The agents are
    size-agnostic, so ``params`` may describe a different instance than the one trained on.
    :func:`coordopt.policies.make_policy` checks the options against their declaration
    (:data:`coordopt.policies.AGENT_ENTRY`).
    """
    path = Path(path)
    name = f"rl:{path.name}"
    agents = load(run_file(path, checkpoint)).agents()
    if deterministic is None:
        deterministic = run_decoding(path, checkpoint)
    return AgentPolicy(agents, params, deterministic=deterministic, seed=seed, name=name)
