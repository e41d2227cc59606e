"""Solve the fluid program with HiGHS: readable Pyomo path or bulk matrix path.

``solve_fluid(inst, method="pyomo")`` builds ``coordopt.models.fluid.build_fluid_model``
and solves it through Pyomo's HiGHS interface (``pyomo.contrib.solver.solvers.highs``);
``method="bulk"`` assembles the same program as sparse arrays
(``coordopt.solvers.highs_bulk``) and hands them to ``highspy`` in one call. Both return a
:class:`FluidSolution` of numpy arrays; tests check that their optima agree.

Algorithm (measured on bundled ``medium``, 29,640 rows x 57,720 columns, 2 threads; see
``benchmarks/bench_fluid.py``): dual simplex ~35 s (the program is highly degenerate),
PAMI simplex ~10 s, PDLP ~6 s (first-order, 1e-7 relative accuracy, no basis),
interior point without crossover ~2.6 s, interior point with crossover ~2.4 s. The default
is interior point with crossover: fastest, and it ends at a vertex with an optimal basis,
so duals are exact and :class:`BulkFluidLP` re-solves warm-start dual simplex from it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coordopt.instance import Instance
from coordopt.models.fluid import (
    FluidData,
    FluidOptions,
    FluidStart,
    FluidVariant,
    build_fluid_model,
    fluid_data,
)
from coordopt.solution import (
    PLAN_AXES,
    Plan,
    Solution,
    SolveError,
    SolveStatus,
    slates_from_frequency,
)
from coordopt.solvers.highs_bulk import (
    FluidLPArrays,
    assemble_fluid_lp,
    new_highs,
    run_highs,
    state_bounds,
    stop_on_interrupt,
    to_highs,
)

ARRAY_FIELDS = tuple(PLAN_AXES)
"""The per-period arrays of a :class:`FluidSolution` (period is the first axis)."""

DEFAULT_ALGORITHM = "ipm"
"""HiGHS ``solver`` option for a cold LP solve (interior point, then crossover)."""


__all__ = [
    "ARRAY_FIELDS",
    "BulkFluidLP",
    "FluidSolution",
    "SolveError",
    "SolveStatus",
    "solve_fluid",
]
# SolveStatus and SolveError live in coordopt.solution (the contract every solver shares);
# they are re-exported here for compatibility.


@dataclass(frozen=True, eq=False)
class FluidSolution(Plan):
    """The fluid plan over the ``H`` periods from its start (row 0 = start period ``t0``).

    Axes: ``T`` local period, ``M`` segment, ``N`` product.

    - ``orders (T,N)``: q; ``sales, lost, inventory (T,N)``: s, l, end inventory I.
    - ``alpha, beta, x (T,M,N)``: recommended-offered mass, offered-not-recommended mass,
      expected demand ``w^R alpha + w^N beta``; ``y (T,M)``: no-purchase mass.
    - ``rec_frequency (T,M,N)``: ``alpha / y`` (0 where ``y = 0``), how often product i is on
      segment k's slate; sums over N to at most K.
    - ``inventory_price (T,N)``: dual of the inventory flow row, the objective's gain from
      one more unit arriving at the start of that period (money at ``t0``); NaN for MILPs
      and for the unlimited-stock variant.
    - ``objective``: optimal discounted profit from ``t0`` (discounted revenue for
      unlimited-stock); NaN when there is no solution.
    - ``mip_gap``: relative gap of a MILP (0 for an LP); ``mip_bound``: the MILP's dual
      bound (NaN for an LP, whose objective is its own bound). ``basis``/``column_values``: the bulk path's HiGHS
      basis and primal vector, for warm starts. ``slate_size``: the effective K.

    :meth:`result` gives the shared :class:`~coordopt.solution.Solution` contract.
    """

    objective: float
    status: SolveStatus
    message: str
    seconds: float
    mip_gap: float = 0.0
    mip_bound: float = math.nan
    slate_size: int | None = None
    variant: FluidVariant = FluidVariant.COORDINATED
    method: str = "bulk"
    t0: int = 0
    basis: Any = field(default=None, repr=False)
    column_values: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_solution(self) -> bool:
        return bool(np.isfinite(self.objective))

    def require(self) -> FluidSolution:
        """Return self if it holds a solution, else raise :class:`SolveError`."""
        if not self.has_solution:
            raise SolveError(self.status, self.message)
        return self

    def first_slates(self, slate_size: int | None = None, tol: float = 1e-9) -> list[list[int]]:
        """Per segment, the products recommended in the first period: the top ``slate_size``
        (default: the program's K) by ``rec_frequency`` among those with positive mass,
        most frequent first (see :func:`~coordopt.solution.slates_from_frequency`)."""
        if not self.has_solution:
            return []
        size = self.slate_size if slate_size is None else slate_size
        return slates_from_frequency(self.rec_frequency[0], size, tol)

    def result(self) -> Solution:
        """The shared solution contract: the fluid optimum is exact for the fluid program
        (``plan_value``) and, for an LP, a valid upper bound (``bound``); a MILP's bound is
        HiGHS's dual bound."""
        has = self.has_solution
        lp = not np.isfinite(self.mip_bound)
        bound = (self.objective if lp else self.mip_bound) if has else None
        return Solution(
            method="fluid",
            status=self.status,
            objective=self.objective,
            seconds=self.seconds,
            message=self.message,
            first_orders=self.orders[0] if has else np.full(self.orders.shape[1], np.nan),
            first_slates=self.first_slates(),
            bound=bound,
            plan_value=self.objective if has else None,
            plan=Plan(**self.arrays()) if has else None,
            details={"variant": self.variant.value, "path": self.method, "mip_gap": self.mip_gap},
        )


def _empty(
    d: FluidData, status: SolveStatus, message: str, seconds: float, method: str
) -> FluidSolution:
    nan = Plan.filled(d.horizon, d.n_segments, d.n_products)
    return _solution(d, nan.arrays(), math.nan, status, message, seconds, method, mip_gap=math.nan)


def _solution(
    d: FluidData,
    arrays: dict[str, np.ndarray],
    objective: float,
    status: SolveStatus,
    message: str,
    seconds: float,
    method: str,
    **extra: Any,
) -> FluidSolution:
    """A :class:`FluidSolution` of ``arrays`` (every :data:`ARRAY_FIELDS`) for program ``d``."""
    return FluidSolution(
        **arrays,  # type: ignore[arg-type]  # the Plan fields, all arrays
        objective=float(objective),
        status=status,
        message=message,
        seconds=seconds,
        slate_size=d.slate_size,
        variant=d.variant,
        method=method,
        t0=d.t0,
        **extra,
    )


def _assemble_solution(
    d: FluidData,
    *,
    alpha: np.ndarray,
    beta: np.ndarray,
    y: np.ndarray,
    inv_vars: tuple[np.ndarray, ...] | None,
    price: np.ndarray | None,
    objective: float,
    status: SolveStatus,
    message: str,
    seconds: float,
    mip_gap: float,
    method: str,
    mip_bound: float = math.nan,
    basis: Any = None,
    column_values: np.ndarray | None = None,
) -> FluidSolution:
    """Arrays with named axes from raw variable values (tiny negatives clipped)."""
    alpha, beta, y = (np.clip(v, 0.0, None) for v in (alpha, beta, y))
    x = d.rec_attraction[None] * alpha + d.base_attraction[None] * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        freq = np.where(y[..., None] > 1e-12, alpha / y[..., None], 0.0)
    freq = np.clip(freq, 0.0, 1.0)
    if inv_vars is None:  # unlimited stock: every unit of demand is sold
        zero = np.zeros((d.horizon, d.n_products))
        orders, sales, lost, inventory = zero, x.sum(axis=1), zero, zero
    else:
        orders, sales, lost, inventory = (np.clip(v, 0.0, None) for v in inv_vars)
    if price is None:
        price = np.full((d.horizon, d.n_products), np.nan)
    arrays = {
        "orders": orders,
        "alpha": alpha,
        "beta": beta,
        "x": x,
        "y": y,
        "rec_frequency": freq,
        "sales": sales,
        "lost": lost,
        "inventory": inventory,
        "inventory_price": price,
    }
    return _solution(
        d,
        arrays,
        objective,
        status,
        message,
        seconds,
        method,
        mip_gap=mip_gap,
        mip_bound=mip_bound,
        basis=basis,
        column_values=column_values,
    )


# --------------------------------------------------------------------------- bulk path

_HIGHS_STATUS = {
    "kOptimal": SolveStatus.OPTIMAL,
    "kInfeasible": SolveStatus.INFEASIBLE,
    "kUnbounded": SolveStatus.UNBOUNDED,
    "kTimeLimit": SolveStatus.TIME_LIMIT,
    "kIterationLimit": SolveStatus.TIME_LIMIT,
}


def _hint(status: SolveStatus, raw: str) -> str:
    """What a person can do about a failed solve."""
    return {
        SolveStatus.INFEASIBLE: "no plan satisfies the constraints (check warehouse_capacity "
        "against initial_inventory and arrivals)",
        SolveStatus.UNBOUNDED: "profit is unbounded (is a discounted salvage_value above "
        "unit_cost for a product with no max_order?)",
        SolveStatus.TIME_LIMIT: "the time limit was reached (raise time_limit or loosen mip_gap)",
    }.get(status, f"HiGHS ended with status {raw}")


def _highs_status(h: Any) -> tuple[SolveStatus, str]:
    """The status HiGHS reports for its last run, with a message a person can act on."""
    ms = h.getModelStatus()
    name = ms.name if hasattr(ms, "name") else str(ms).split(".")[-1]
    status = _HIGHS_STATUS.get(name, SolveStatus.ERROR)
    if status is SolveStatus.OPTIMAL:
        return status, "optimal"
    return status, f"HiGHS: {h.modelStatusToString(ms)}; {_hint(status, name)}"


def _run_highs(h: Any) -> tuple[SolveStatus, str]:
    """Run HiGHS; when presolve cannot tell infeasible from unbounded, ask simplex. Ctrl-C
    stops either run within moments and raises ``KeyboardInterrupt`` (:func:`run_highs`)."""
    run_highs(h)
    status, message = _highs_status(h)
    if status is SolveStatus.ERROR and "kUnboundedOrInfeasible" in message:
        h.setOptionValue("presolve", "off")
        h.setOptionValue("solver", "simplex")
        run_highs(h)
        h.setOptionValue("presolve", "choose")
        status, message = _highs_status(h)
    return status, message


def _uncapped_failure(d: FluidData) -> tuple[SolveStatus, str] | None:
    """The failure the order indicators' big-M caps (or a MILP solver) would hide, or None.

    With order indicators, an order of a product without ``max_order`` is capped at
    ``big_m`` (the most it can sell after arriving), which is non-binding only when the
    program is bounded; and HiGHS's MILP presolve can only say "infeasible or unbounded".
    So such a program is first solved as the LP without indicator rows or integrality
    (orders uncapped, ``z`` at 0): if that LP is unbounded, so is the program (orders of
    zero stay feasible; pay the fixed costs once, then follow the rational ray), and if it
    is infeasible, so is the program. Otherwise (optimal or stopped) the caps are sound.
    """
    if not (d.order_indicators or d.integer_quantities) or np.isfinite(d.max_order).all():
        return None
    relaxed = dataclasses.replace(
        d, order_indicators=False, integer_orders=False, integer_quantities=False
    )
    h = new_highs()
    to_highs(assemble_fluid_lp(relaxed), h)
    h.setOptionValue("solver", "simplex")
    status, message = _run_highs(h)
    if status in (SolveStatus.UNBOUNDED, SolveStatus.INFEASIBLE):
        return status, f"{message} (the LP without the order-indicator caps says so)"
    return None


class BulkFluidLP:
    """One fluid program held in a ``highspy.Highs`` object, re-solvable from new states.

    Built once over the full horizon; :meth:`set_state` moves it to a mid-horizon start by
    changing bounds only, and :meth:`solve` then warm-starts from the last optimal basis
    (dual simplex), which is what makes model-predictive control cheap.
    """

    def __init__(self, inst: Instance, *, threads: int | None = None, **options: Any) -> None:
        """``options``: the program, as :func:`~coordopt.models.fluid.fluid_data`'s keywords
        (:class:`~coordopt.models.fluid.FluidOptions`); ``threads``: HiGHS threads."""
        self.instance = inst
        self.data = fluid_data(inst, **options)
        self.arrays: FluidLPArrays = assemble_fluid_lp(self.data)
        self.highs = new_highs()
        if threads:
            self.highs.setOptionValue("threads", int(threads))
        to_highs(self.arrays, self.highs)
        self.is_mip = bool(self.arrays.integer.any())
        self.t0 = self.data.t0
        self._solved_once = False
        self._caps_checked = False

    def set_state(self, start: FluidStart) -> None:
        """Plan from ``start`` next time: fix past periods to 0, put stock in the rhs."""
        col_lo, col_up, row_lo, row_up = state_bounds(self.data, self.arrays, start)
        lay = self.arrays.layout
        self.highs.changeColsBounds(
            lay.n_cols, np.arange(lay.n_cols, dtype=np.int32), col_lo, col_up
        )
        self.highs.changeRowsBounds(
            lay.n_rows, np.arange(lay.n_rows, dtype=np.int32), row_lo, row_up
        )
        self.t0 = int(start.t0)

    def relax_warehouse(self) -> None:
        """Drop the warehouse rows (used by MPC when a state overfills the warehouse)."""
        if "warehouse_capacity" not in self.arrays.layout.rows:
            return
        rows = self.arrays.layout.row("warehouse_capacity").astype(np.int32)
        inf = np.full(rows.size, math.inf)
        self.highs.changeRowsBounds(rows.size, rows, -inf, inf)

    def solve(
        self,
        *,
        algorithm: str | None = None,
        time_limit: float | None = None,
        mip_gap: float | None = None,
        warm_start: FluidSolution | None = None,
    ) -> FluidSolution:
        """Solve from the current state. ``algorithm``: HiGHS ``solver`` option; default
        interior point + crossover for the first solve, dual simplex from the held basis
        after (or from ``warm_start.basis``)."""
        h = self.highs
        began = time.perf_counter()
        if warm_start is not None and warm_start.basis is not None and not self.is_mip:
            h.setBasis(warm_start.basis)
            self._solved_once = True
        if warm_start is not None and warm_start.column_values is not None and self.is_mip:
            import highspy

            start = highspy.HighsSolution()
            start.col_value = list(warm_start.column_values)
            start.value_valid = True
            h.setSolution(start)
        if self.is_mip:
            alg = "choose"
        elif algorithm is not None:
            alg = algorithm
        else:
            alg = "simplex" if self._solved_once else DEFAULT_ALGORITHM
        h.setOptionValue("solver", alg)
        h.setOptionValue("time_limit", math.inf if time_limit is None else float(time_limit))
        if mip_gap is not None:
            h.setOptionValue("mip_rel_gap", float(mip_gap))
        uncapped = None if self._caps_checked else _uncapped_failure(self.data)
        self._caps_checked = True
        if uncapped is not None:
            sol = _empty(self.data, *uncapped, time.perf_counter() - began, "bulk")
            return sol if self.t0 == self.data.t0 else _slice(sol, self.t0 - self.data.t0)
        status, message = _run_highs(h)
        seconds = time.perf_counter() - began
        sol = self._extract(status, message, seconds)
        if status is SolveStatus.OPTIMAL and not self.is_mip:
            self._solved_once = True
        return sol

    def _extract(self, status: SolveStatus, message: str, seconds: float) -> FluidSolution:
        d, lay, h = self.data, self.arrays.layout, self.highs
        info = h.getInfo()
        has_primal = status is SolveStatus.OPTIMAL or (
            status is SolveStatus.TIME_LIMIT and self.is_mip and info.primal_solution_status >= 2
        )
        if not has_primal:
            sol = _empty(d, status, message, seconds, "bulk")
            return sol if self.t0 == d.t0 else _slice(sol, self.t0 - d.t0)
        solution = h.getSolution()
        col = np.asarray(solution.col_value)
        scale = d.discount[self.t0 - d.t0] if self.t0 > d.t0 else 1.0

        def block(name: str) -> np.ndarray:
            return col[lay.col(name)]

        inv_vars = None
        price = None
        if d.has_inventory:
            inv_vars = (block("q"), block("s"), block("l"), block("inv"))
            if not self.is_mip:
                duals = np.asarray(solution.row_dual)[lay.row("inventory_flow")]
                price = duals / scale
        sol = _assemble_solution(
            d,
            alpha=block("alpha"),
            beta=block("beta"),
            y=block("y"),
            inv_vars=inv_vars,
            price=price,
            objective=info.objective_function_value / scale,
            status=status,
            message=message,
            seconds=seconds,
            mip_gap=float(info.mip_gap) if self.is_mip else 0.0,
            mip_bound=float(info.mip_dual_bound) / scale if self.is_mip else math.nan,
            method="bulk",
            basis=None if self.is_mip else h.getBasis(),
            column_values=col.copy(),
        )
        return sol if self.t0 == d.t0 else _slice(sol, self.t0 - d.t0)


def _slice(sol: FluidSolution, skip: int) -> FluidSolution:
    """Drop the first ``skip`` (past) periods of a full-horizon solution."""
    arrays = {name: getattr(sol, name)[skip:] for name in ARRAY_FIELDS}
    return dataclasses.replace(sol, **arrays, t0=sol.t0 + skip)


# --------------------------------------------------------------------------- Pyomo path

_PYOMO_STATUS = {
    "convergenceCriteriaSatisfied": SolveStatus.OPTIMAL,
    "maxTimeLimit": SolveStatus.TIME_LIMIT,
    "iterationLimit": SolveStatus.TIME_LIMIT,
    "provenInfeasible": SolveStatus.INFEASIBLE,
    "locallyInfeasible": SolveStatus.INFEASIBLE,
    "unbounded": SolveStatus.UNBOUNDED,
}


@contextmanager
def _quiet_interrupt() -> Iterator[None]:
    """Drop Pyomo's warning that HiGHS ended with an unhandled status when that status is
    kInterrupt (Ctrl-C: the caller raises ``KeyboardInterrupt``, reported by the command line)."""
    log = logging.getLogger("pyomo.contrib.solver.solvers.highs")

    def keep(record: logging.LogRecord) -> bool:
        return "kInterrupt" not in record.getMessage()

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _solve_pyomo(
    inst: Instance,
    program: FluidOptions,
    *,
    algorithm: str | None,
    time_limit: float | None,
    mip_gap: float | None,
    threads: int | None,
) -> FluidSolution:
    from pyomo.contrib.solver.solvers.highs import Highs

    began = time.perf_counter()
    model = build_fluid_model(inst, **program)
    d: FluidData = model.fluid_data
    new_highs()  # the process's first HiGHS prints a banner: let it go to stderr
    opt = Highs()
    if not opt.available():
        return _empty(
            d,
            SolveStatus.SOLVER_MISSING,
            "Pyomo cannot find highspy (pip install highspy)",
            time.perf_counter() - began,
            "pyomo",
        )
    uncapped = _uncapped_failure(d)
    if uncapped is not None:
        return _empty(d, *uncapped, time.perf_counter() - began, "pyomo")
    is_mip = d.integer_orders or d.integer_quantities
    options: dict[str, Any] = {"output_flag": False}
    if not is_mip:
        options["solver"] = algorithm or DEFAULT_ALGORITHM
    if mip_gap is not None:
        options["mip_rel_gap"] = float(mip_gap)
    if threads:
        options["threads"] = int(threads)
    kwargs: dict[str, Any] = {
        "load_solutions": False,
        "raise_exception_on_nonoptimal_result": False,
        "solver_options": options,
    }
    if time_limit is not None:
        kwargs["time_limit"] = float(time_limit)
    # load the model first, so that Ctrl-C can reach the HiGHS object Pyomo solves with
    opt.set_instance(model)
    highs = getattr(opt, "_solver_model", None)  # Pyomo's highspy.Highs (no public accessor)
    with stop_on_interrupt(*([highs] if highs is not None else [])), _quiet_interrupt():
        res = opt.solve(model, **kwargs)
        term = res.termination_condition.name
        if term == "infeasibleOrUnbounded":
            options.update(presolve="off", solver="simplex")
            res = opt.solve(model, **kwargs)
            term = res.termination_condition.name
    status = _PYOMO_STATUS.get(term, SolveStatus.ERROR)
    message = (
        "optimal"
        if status is SolveStatus.OPTIMAL
        else f"HiGHS via Pyomo: {term}; {_hint(status, term)}"
    )
    has_primal = res.solution_status.name in ("optimal", "feasible") and status in (
        SolveStatus.OPTIMAL,
        SolveStatus.TIME_LIMIT,
    )
    if not has_primal:
        return _empty(d, status, message, time.perf_counter() - began, "pyomo")
    res.solution_loader.load_vars()

    def values(var: Any) -> np.ndarray:
        return np.array([v.value if v.value is not None else 0.0 for v in var.values()])

    h, mm, n = d.horizon, d.n_segments, d.n_products
    inv_vars = None
    price = None
    if d.has_inventory:
        inv_vars = tuple(values(v).reshape(h, n) for v in (model.q, model.s, model.l, model.inv))
        if not is_mip:
            cons = list(model.inventory_flow.values())
            duals = res.solution_loader.get_duals(cons)
            price = np.array([duals[c] for c in cons]).reshape(h, n)
    gap, mip_bound = 0.0, math.nan
    if is_mip:
        bound, inc = res.objective_bound, res.incumbent_objective
        gap = abs(bound - inc) / max(abs(inc), 1e-10) if bound is not None else math.nan
        mip_bound = float(bound) if bound is not None else math.nan
    return _assemble_solution(
        d,
        alpha=values(model.alpha).reshape(h, mm, n),
        beta=values(model.beta).reshape(h, mm, n),
        y=values(model.y).reshape(h, mm),
        inv_vars=inv_vars,
        price=price,
        objective=float(res.incumbent_objective),
        status=status,
        message=message,
        seconds=time.perf_counter() - began,
        mip_gap=gap,
        mip_bound=mip_bound,
        method="pyomo",
    )


# --------------------------------------------------------------------------- entry point


def solve_fluid(
    inst: Instance,
    *,
    method: str = "auto",
    variant: str | FluidVariant = FluidVariant.COORDINATED,
    time_limit: float | None = None,
    mip_gap: float | None = None,
    warm_start: FluidSolution | None = None,
    start: FluidStart | None = None,
    integer_orders: bool = False,
    integer_quantities: bool = False,
    algorithm: str | None = None,
    threads: int | None = None,
    raise_on_failure: bool = True,
) -> FluidSolution:
    """Build and solve the fluid program of ``inst``; return the plan as arrays.

    ``method``: "pyomo" (readable model, Pyomo's HiGHS interface), "bulk" (same program
    as sparse arrays into highspy; fast) or "auto" (= bulk). ``variant``: see
    :class:`~coordopt.models.fluid.FluidVariant`. ``integer_orders`` makes the order
    indicators binary (a MILP); ``integer_quantities`` makes orders integer.
    ``warm_start``: a previous bulk solution of the same program (its basis or, for a
    MILP, its values seed the solve; ignored by the Pyomo path). ``algorithm``: HiGHS
    ``solver`` option for LPs (default "ipm": interior point + crossover; see module doc).
    ``threads``: HiGHS threads (default: HiGHS's choice; HiGHS keeps one thread pool per
    process, so mixing different explicit counts in one process fails).
    The status is always read from HiGHS: with ``raise_on_failure`` (default) a solve
    without a usable solution raises :class:`SolveError`; otherwise the returned
    solution carries the status, a message and NaN arrays. A MILP stopped by the time
    limit with an incumbent returns it with status TIME_LIMIT and its ``mip_gap``.
    """
    program: FluidOptions = {
        "variant": FluidVariant(variant),
        "start": start,
        "integer_orders": integer_orders,
        "integer_quantities": integer_quantities,
    }
    if method not in ("auto", "bulk", "pyomo"):
        raise ValueError(f"method '{method}' is not one of 'auto', 'bulk', 'pyomo'")
    try:
        import highspy  # noqa: F401
    except ImportError:
        d = fluid_data(inst, **program)
        sol = _empty(
            d,
            SolveStatus.SOLVER_MISSING,
            "highspy is not installed (pip install highspy)",
            0.0,
            method,
        )
        return sol.require() if raise_on_failure else sol
    if method == "pyomo":
        sol = _solve_pyomo(
            inst,
            program,
            algorithm=algorithm,
            time_limit=time_limit,
            mip_gap=mip_gap,
            threads=threads,
        )
    else:
        began = time.perf_counter()
        lp = BulkFluidLP(inst, threads=threads, **program)
        sol = lp.solve(
            algorithm=algorithm, time_limit=time_limit, mip_gap=mip_gap, warm_start=warm_start
        )
        sol = _with_seconds(sol, time.perf_counter() - began)
    if raise_on_failure:
        sol.require()
    return sol


def _with_seconds(sol: FluidSolution, seconds: float) -> FluidSolution:
    return dataclasses.replace(sol, seconds=seconds)
