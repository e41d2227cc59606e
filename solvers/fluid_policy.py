"""Play the fluid plan open loop, and turn fluid frequencies into slates.

:class:`FluidPlanPolicy` solves the fluid program once from the initial state and then, in
period t, orders the plan's ``orders[t]`` (rounded) whatever happened, and draws each
segment's slate so that product i is on it with probability ``rec_frequency[t, k, i]``
(:func:`sample_slates`). It is the open-loop reference for MPC, which re-plans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coordopt.simulator import Action, SimParams, SimState
from coordopt.solvers.fluid import FluidSolution, solve_fluid


def sample_slates(freq: np.ndarray, slate_size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one slate per segment with inclusion probabilities ``freq``, ``(M, K)``.

    ``freq (M, N)`` in [0, 1] with row sums at most K (rows summing above K are scaled
    down). Systematic sampling over a random product order: with cumulative sums ``C`` and
    one uniform ``u`` in (0, 1], product j is drawn when a point ``u + m`` falls in
    ``(C_{j-1}, C_j]``; as each interval is at most 1 long the products are distinct, at
    most ``ceil(sum freq) <= K`` are drawn, and product j is drawn with probability exactly
    ``freq[j]``. Slots are filled most-frequent first and padded with -1.
    """
    freq = np.clip(np.asarray(freq, dtype=float), 0.0, 1.0)
    m, n = freq.shape
    out = np.full((m, slate_size), -1, dtype=np.int64)
    for k in range(m):
        f = freq[k]
        total = f.sum()
        if total <= 1e-12:
            continue
        if total > slate_size:
            f = f * (slate_size / total)
            total = float(slate_size)
        perm = rng.permutation(n)
        cum = np.cumsum(f[perm])
        u = 1.0 - rng.random()
        points = u + np.arange(int(np.ceil(total)) + 1)
        points = points[points <= cum[-1]]
        picked = perm[np.minimum(np.searchsorted(cum, points, side="left"), n - 1)]
        picked = np.unique(picked[f[picked] > 0])
        picked = picked[np.argsort(-f[picked], kind="stable")][:slate_size]
        out[k, : picked.size] = picked
    return out


def round_orders(orders: np.ndarray, max_order: np.ndarray) -> np.ndarray:
    """Nearest whole orders within ``[0, max_order]``."""
    return np.clip(np.rint(orders), 0.0, max_order)


class FluidPlanPolicy:
    """The period-1 fluid plan played open loop (orders from the plan, slates drawn from its
    recommendation frequencies with the policy's own generator, seeded by ``seed``).

    Options: ``seed`` (slate sampling), ``variant`` and ``method`` (passed to
    :func:`~coordopt.solvers.fluid.solve_fluid`), ``plan`` (a solved :class:`FluidSolution`
    to play instead of solving).
    """

    name = "fluid"

    def __init__(
        self,
        params: SimParams,
        *,
        seed: int = 0,
        variant: str = "coordinated",
        method: str = "auto",
        plan: FluidSolution | None = None,
        **solve_options: Any,
    ) -> None:
        self.params = params
        inst = params.instance
        self.plan = (
            plan
            if plan is not None
            else solve_fluid(inst, method=method, variant=variant, **solve_options)
        )
        self.plan.require()
        self.rng = np.random.default_rng(seed)
        self.slate_size = max(params.slate_size, 1)
        self.max_order = inst.max_order

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: the plan is fixed (the generator keeps running)."""

    def act(self, state: SimState) -> Action:
        t = min(state.t - self.plan.t0, self.plan.orders.shape[0] - 1)
        b = state.batch_size
        orders = round_orders(self.plan.orders[t], self.max_order)
        slates = np.stack(
            [sample_slates(self.plan.rec_frequency[t], self.slate_size, self.rng) for _ in range(b)]
        )
        p = self.params
        return Action(
            orders=torch.tensor(orders, dtype=p.dtype, device=p.device).expand(b, -1).clone(),
            slates=torch.tensor(slates, dtype=torch.long, device=p.device),
        )
