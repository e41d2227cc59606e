"""Every insight source in one representation, :class:`InsightData`.

Per period ``t``, episode ``e``, segment ``k`` and product ``i``: a recommendation intensity
(a plan: ``alpha / y``; a simulated episode: 1 if i is on k's slate, so the mean over
episodes is the fraction of episodes in which i is recommended), the stock available after
arrivals, its cover (available divided by the product's mean demand per period with nothing
recommended, so cover is measured in periods and does not move mechanically with
recommendations), orders and arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coordopt.choice import expected_demand, product_similarity
from coordopt.evaluation import rollout
from coordopt.instance import Instance
from coordopt.periods import shift_by_lead_time
from coordopt.policies import make_policy
from coordopt.simulator import SimParams
from coordopt.sizes import FULL_LP_CELLS, plan_cells
from coordopt.solution import Plan, SolveError, SolveStatus


@dataclass(frozen=True, eq=False)
class InsightData:
    """One source in the common representation (episodes ``E``; ``E = 1`` for a plan).

    ``intensity (T,E,M,N)`` in [0,1]; ``available, orders, arrivals (T,E,N)`` units;
    ``base_demand (T,N)`` each period's mean demand with nothing recommended; ``weights (T,M)``
    arrival rates (to average intensity over segments); ``simulated`` whether episodes are
    random draws (then metrics get bootstrap intervals).
    """

    source: str
    intensity: np.ndarray
    available: np.ndarray
    orders: np.ndarray
    arrivals: np.ndarray
    base_demand: np.ndarray
    weights: np.ndarray
    lead_time: np.ndarray
    similarity: np.ndarray  # (N, N) product similarity (cosine of demand profiles)
    simulated: bool

    @property
    def cover(self) -> np.ndarray:
        """Available stock in periods of unrecommended mean demand, ``(T,E,N)``."""
        return self.available / np.maximum(self.base_demand, 1e-9)[:, None]

    @property
    def product_intensity(self) -> np.ndarray:
        """Share of arriving customers who see each product recommended, ``(T,E,N)``."""
        w = self.weights / self.weights.sum(axis=1, keepdims=True)
        return np.einsum("temn,tm->ten", self.intensity, w)

    def take(self, episodes: np.ndarray) -> InsightData:
        """The same source restricted to (or resampled at) ``episodes``."""

        def sl(a: np.ndarray) -> np.ndarray:
            return a[:, episodes]

        return InsightData(
            self.source,
            sl(self.intensity),
            sl(self.available),
            sl(self.orders),
            sl(self.arrivals),
            self.base_demand,
            self.weights,
            self.lead_time,
            self.similarity,
            self.simulated,
        )


def _common(inst: Instance) -> dict[str, Any]:
    empty = np.full((inst.n_segments, 1), -1, dtype=np.int64)
    return {
        "base_demand": expected_demand(inst, empty),
        "weights": inst.arrival_rate,  # (T, M)
        "lead_time": inst.lead_time.astype(int),
        "similarity": product_similarity(inst),
    }


def from_plan(inst: Instance, plan: Plan, source: str = "fluid") -> InsightData:
    """A plan (:class:`coordopt.solution.Plan`, from any solver's ``result().plan``) as one
    deterministic episode. Available stock is last period's end inventory plus the orders
    arriving now."""
    rec = np.asarray(plan.rec_frequency, dtype=float)
    orders = np.asarray(plan.orders, dtype=float)
    inv = np.asarray(plan.inventory, dtype=float)
    arrivals = shift_by_lead_time(orders, inst.lead_time)
    start = np.vstack([inst.initial_inventory[None].astype(float), inv[:-1]])
    return InsightData(
        source,
        rec[:, None],
        (start + arrivals)[:, None],
        orders[:, None],
        arrivals[:, None],
        simulated=False,
        **_common(inst),
    )


def from_trajectory(inst: Instance, traj: Any, source: str) -> InsightData:
    """Recorded episodes (:class:`coordopt.evaluation.Trajectory`) as simulated data: the
    intensity of (t, e, k, i) is 1 when i is on k's slate in episode e at t."""
    slates = np.asarray(traj.slates)  # (T,B,M,K)
    t_n, b, m, _ = slates.shape
    n = inst.n_products
    rec = np.zeros((t_n, b, m, n + 1))
    idx = np.where(slates >= 0, slates, n)
    np.put_along_axis(rec, idx, 1.0, axis=3)
    arrivals = np.asarray(traj.available) - np.asarray(traj.on_hand)
    return InsightData(
        source,
        rec[..., :n],
        np.asarray(traj.available, dtype=float),
        np.asarray(traj.orders, dtype=float),
        np.maximum(arrivals, 0.0),
        simulated=True,
        **_common(inst),
    )


def simulate(
    inst: Instance, policy: str, episodes: int = 64, seed: int = 0, **options: Any
) -> InsightData:
    """Simulate ``policy`` (a registered name or a trained agent's directory) and record it."""
    if episodes < 2:
        raise ValueError(f"episodes must be >= 2 for bootstrap intervals, got {episodes}")
    params = SimParams.from_instance(inst, dtype=torch.float64)
    pol = make_policy(policy, params, **options)
    stats = rollout(params, pol, episodes, seed=seed, record=True)
    assert stats.trajectory is not None
    return from_trajectory(inst, stats.trajectory, getattr(pol, "name", policy))


def fluid_plan(inst: Instance) -> InsightData:
    """The coordinated fluid optimum of ``inst`` as insight data; at catalog scale (above
    :data:`coordopt.sizes.FULL_LP_CELLS` cells) the catalog solver's plan (within 0.5% of
    its bound)."""
    from coordopt.solvers.catalog import solve_catalog
    from coordopt.solvers.fluid import solve_fluid

    if plan_cells(inst) > FULL_LP_CELLS:
        sol = solve_catalog(inst, gap=0.005).result()
        ok = sol.plan is not None
    else:
        sol = solve_fluid(inst, raise_on_failure=False).result()
        ok = sol.status is SolveStatus.OPTIMAL and sol.plan is not None
    if not ok or sol.plan is None:
        raise SolveError(sol.status, f"program of {inst.name!r} not solved: {sol.message}")
    return from_plan(inst, sol.plan, "fluid")
