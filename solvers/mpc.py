"""Fluid model-predictive control (docs/model.md, "Reference policies").

Every period, for every batch entry, re-solve the fluid program from the current state
(on-hand stock, pipeline) over the remaining horizon and apply its first-period
decisions: orders rounded to whole units, slates drawn so that product i is shown to
segment k with probability ``alpha / y`` (the policy's own generator).

Cost: one :class:`~coordopt.solvers.fluid.BulkFluidLP` is built and solved once (cold,
interior point + crossover) at construction; a new state changes only bounds (past
periods fixed to zero, stock in the right-hand sides), and HiGHS re-solves with dual
simplex from the previous optimal basis. On ``medium`` construction takes ~2.5 s and each
later re-solve ~0.05-0.1 s (see ``benchmarks/bench_fluid.py``). Identical states within a
period share one solve.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from coordopt.models.fluid import FluidStart
from coordopt.simulator import Action, SimParams, SimState
from coordopt.solvers.fluid import (
    DEFAULT_ALGORITHM,
    BulkFluidLP,
    FluidSolution,
    SolveError,
    SolveStatus,
)
from coordopt.solvers.fluid_policy import round_orders, sample_slates


class MPCPolicy:
    """Re-plan with the fluid program every period; apply the first period of the plan.

    Options: ``seed`` (slate sampling generator), ``variant`` ("coordinated" or
    "siloed-slates"), ``time_limit`` per solve (seconds), ``threads`` for HiGHS.
    ``solve_seconds`` records the time of every solve; ``cold_resolves`` counts the warm
    re-solves HiGHS could not finish, redone cold.
    """

    name = "mpc"

    def __init__(
        self,
        params: SimParams,
        *,
        seed: int = 0,
        variant: str = "coordinated",
        time_limit: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.params = params
        inst = params.instance
        self.lp = BulkFluidLP(inst, variant=variant, threads=threads)
        self.rng = np.random.default_rng(seed)
        self.time_limit = time_limit
        self.slate_size = max(params.slate_size, 1)
        self.max_order = inst.max_order
        self.solve_seconds: list[float] = []
        self.relaxed_warehouse = 0
        self.cold_resolves = 0  # warm re-solves that failed and were redone cold
        # The cold solve (interior point) from the initial state, done once here: every
        # decision after it re-solves with dual simplex from this basis.
        self.initial_plan = self.lp.solve(time_limit=time_limit).require()

    def reset(self, batch_size: int) -> None:
        """Nothing to clear: decisions depend on the current state only."""

    def plan(self, t0: int, on_hand: np.ndarray, pipeline: np.ndarray) -> FluidSolution:
        """Solve the fluid program from one state; raise :class:`SolveError` if none."""
        began = time.perf_counter()
        self.lp.set_state(FluidStart(t0, on_hand, pipeline))
        sol = self.lp.solve(time_limit=self.time_limit)
        if sol.status is SolveStatus.INFEASIBLE and self.params.warehouse_capacity is not None:
            # stock already committed overfills the warehouse: plan without the cap
            self.lp.relax_warehouse()
            self.relaxed_warehouse += 1
            sol = self.lp.solve(time_limit=self.time_limit)
        if sol.status is SolveStatus.ERROR:
            # the warm dual simplex can stall on a far-off state (HiGHS "unknown"): drop the
            # basis and solve cold by interior point + crossover, as the first solve did
            self.lp.highs.clearSolver()
            sol = self.lp.solve(algorithm=DEFAULT_ALGORITHM, time_limit=self.time_limit)
            self.cold_resolves += 1
        self.solve_seconds.append(time.perf_counter() - began)
        if not sol.has_solution:
            raise SolveError(sol.status, f"MPC at period {t0}: {sol.message}")
        return sol

    def act(self, state: SimState) -> Action:
        on_hand = state.on_hand.detach().cpu().double().numpy()
        pipeline = state.pipeline.detach().cpu().double().numpy()
        b = state.batch_size
        orders = np.zeros((b, on_hand.shape[1]))
        slates = np.full((b, self.params.n_segments, self.slate_size), -1, dtype=np.int64)
        cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        for j in range(b):
            key = on_hand[j].tobytes() + pipeline[j].tobytes()
            if key not in cache:
                sol = self.plan(state.t, on_hand[j], pipeline[j])
                cache[key] = (round_orders(sol.orders[0], self.max_order), sol.rec_frequency[0])
            orders[j], freq = cache[key]
            slates[j] = sample_slates(freq, self.slate_size, self.rng)
        p = self.params
        return Action(
            orders=torch.tensor(orders, dtype=p.dtype, device=p.device),
            slates=torch.tensor(slates, dtype=torch.long, device=p.device),
        )
