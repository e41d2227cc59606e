"""One solution contract for every solver: a status enum and one result shape.

Every solver (the fluid LP and MILP, the exact DP, the decomposition and what comes next)
reports through :class:`Solution`: callers -- the CLI, the insights, the studies -- read
only these fields and never probe a solver's own type. A solver keeps its own rich type
for its own extras (a HiGHS basis, the DP's policy tables) and exposes the contract with
one method, ``.result()``.

Axes of :class:`Plan`: ``T`` period (row 0 = the plan's first period), ``M`` segment,
``N`` product.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GAP_TOLERANCE",
    "PLAN_AXES",
    "Plan",
    "Solution",
    "SolveError",
    "SolveStatus",
    "slates_from_frequency",
]

GAP_TOLERANCE = 1e-6
"""Relative gap at or below which a plan with a bound counts as optimal."""


class SolveStatus(enum.StrEnum):
    """Outcome of a solve, read from the solver's own report.

    OPTIMAL: the value is optimal (and, for a relaxation, a valid bound).
    OPTIMAL_RESTRICTED: optimal over a restricted decision set (the DP's truncated state
    space): a lower bound on the true optimum, with the restriction in the message.
    FEASIBLE: a feasible plan and a valid bound whose relative gap exceeds
    :data:`GAP_TOLERANCE` (the decomposition; a stopped search).
    TIME_LIMIT: the time or iteration limit stopped the solver (a MILP may still carry an
    incumbent plan). The rest: no solution.
    """

    OPTIMAL = "optimal"
    OPTIMAL_RESTRICTED = "optimal_restricted"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"
    ERROR = "error"
    SOLVER_MISSING = "solver_missing"


class SolveError(RuntimeError):
    """A solve that produced no usable solution; ``status`` says why."""

    def __init__(self, status: SolveStatus, message: str) -> None:
        super().__init__(f"fluid solve {status.value}: {message}")
        self.status = status


PLAN_AXES: dict[str, tuple[str, ...]] = {
    "orders": ("period", "product"),
    "alpha": ("period", "segment", "product"),
    "beta": ("period", "segment", "product"),
    "x": ("period", "segment", "product"),
    "y": ("period", "segment"),
    "rec_frequency": ("period", "segment", "product"),
    "sales": ("period", "product"),
    "lost": ("period", "product"),
    "inventory": ("period", "product"),
    "inventory_price": ("period", "product"),
}
"""The named axes of every :class:`Plan` array (period is the first axis)."""


@dataclass(frozen=True, eq=False)
class Plan:
    """A plan over periods as arrays with named axes (see :data:`PLAN_AXES`).

    ``orders, sales, lost, inventory (T,N)``: order quantity q, sales s, lost demand l, end
    inventory I. ``alpha, beta, x (T,M,N)``: recommended-offered mass, offered-not-
    recommended mass, expected demand; ``y (T,M)``: no-purchase mass; ``rec_frequency
    (T,M,N)``: how often product i is on segment k's slate. ``inventory_price (T,N)``: the
    objective's gain from one more unit arriving at the start of a period (NaN where the
    method has no duals).
    """

    orders: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    x: np.ndarray
    y: np.ndarray
    rec_frequency: np.ndarray
    sales: np.ndarray
    lost: np.ndarray
    inventory: np.ndarray
    inventory_price: np.ndarray

    @classmethod
    def filled(cls, periods: int, segments: int, products: int, value: float = np.nan) -> Plan:
        """A plan of arrays full of ``value`` (NaN: no solution), shaped by :data:`PLAN_AXES`."""
        size = {"period": periods, "segment": segments, "product": products}
        return cls(
            **{name: np.full([size[a] for a in axes], value) for name, axes in PLAN_AXES.items()}
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (for ``.npz`` output)."""
        return {name: getattr(self, name) for name in PLAN_AXES}


def slates_from_frequency(
    rec_frequency: np.ndarray, slate_size: int | None = None, tol: float = 1e-9
) -> list[list[int]]:
    """Per segment, the products recommended in one period from ``rec_frequency (M,N)``: the
    top ``slate_size`` among those with frequency above ``tol``, most frequent first (ties:
    the lower index). Default size: the largest frequency sum, rounded up."""
    freq = np.asarray(rec_frequency, dtype=float)
    if not np.isfinite(freq).all():
        return []
    if slate_size is None:
        slate_size = max(1, math.ceil(freq.sum(axis=1).max() - 1e-6))
    out = []
    for row in freq:
        order = np.argsort(-row, kind="stable")
        out.append([int(i) for i in order if row[i] > tol][:slate_size])
    return out


@dataclass(frozen=True, eq=False)
class Solution:
    """What every solver reports.

    Attributes
    ----------
    method
        The method that produced it ("fluid", "milp", "dp", "decompose", ...).
    status
        :class:`SolveStatus`.
    objective
        The optimal value for exact methods; a valid upper bound for relaxations (the fluid
        LP, the decomposition's Lagrangian); NaN without a solution.
    bound
        A valid upper bound on the method's problem where there is one, else None.
    plan_value
        The objective of the returned exactly-feasible plan where there is one, else None.
    seconds, message
        Wall-clock time; what happened (and what to do about a failure).
    first_orders
        ``(N,)`` orders of the first period (NaN without a solution).
    first_slates
        Per segment, the product indices recommended in the first period.
    plan
        The plan arrays where the method has them, else None.
    details
        Method-specific facts, JSON-ready (the fluid variant and path, a MILP's gap, the
        decomposition's block count, the DP's state count).
    """

    method: str
    status: SolveStatus
    objective: float
    seconds: float
    message: str
    first_orders: np.ndarray
    first_slates: list[list[int]]
    bound: float | None = None
    plan_value: float | None = None
    plan: Plan | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        """Whether an objective (and first decisions) came back."""
        return bool(math.isfinite(self.objective))

    @property
    def gap(self) -> float | None:
        """``(bound - plan_value) / |bound|`` where both exist, else None."""
        if self.bound is None or self.plan_value is None:
            return None
        return (self.bound - self.plan_value) / max(abs(self.bound), 1e-12)

    def require(self) -> Solution:
        """Return self if it holds a solution, else raise :class:`SolveError`."""
        if not self.has_solution:
            raise SolveError(self.status, self.message)
        return self
