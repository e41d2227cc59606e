"""The fluid program as sparse matrices, loaded into ``highspy`` in one bulk call.

:func:`assemble_fluid_lp` builds, with numpy and scipy.sparse, exactly the rows and
columns of ``coordopt.models.fluid.build_fluid_model`` (same families, same data). The Pyomo
model is the specification: :func:`differences_from_model` compiles it with Pyomo's
standard-form compiler and compares every coefficient, bound and cost with these arrays,
rows and columns matched by name (``tests/models/test_standard_form.py`` runs it on every
variant). The compiler itself takes longer than the solve on ``medium``, so the fast path
assembles the arrays directly from :class:`~coordopt.models.fluid.FluidData`.

:class:`BulkFluidLP` keeps one HiGHS model alive: :meth:`BulkFluidLP.set_state` moves it
to a new start state by changing bounds only (periods already past are fixed to zero, the
on-hand stock and pipeline enter the right-hand sides), so a re-solve starts from the
previous optimal basis. That is what model-predictive control needs.

Every HiGHS run stops within moments of Ctrl-C (:func:`stop_on_interrupt`, :func:`run_highs`)
and the interruption reaches the caller as ``KeyboardInterrupt`` (the command line's exit 130),
never as a solver error.

Column layout (0-based period t, segment k, product i), each block flattened C-order::

    alpha (H,M,N) | beta (H,M,N) | y (H,M) | q (H,N) | s (H,N) | l (H,N) | I (H,N) | z (H,N)

(no q..z without inventory; z only with order indicators). Row layout::

    choice_balance (H,M) | offer_once (H,M,N) | slate_capacity (H,M) | demand_split (H,N)
    | inventory_flow (H,N) | warehouse_capacity (H,) | order_indicator (H,N)
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from coordopt.economics import PERIOD_FLOWS, Flow
from coordopt.models.fluid import FLOW_VARIABLES, FluidData, FluidStart
from coordopt.periods import order_arrivals

INF = math.inf


def new_highs() -> Any:
    """A silent ``highspy.Highs``.

    HiGHS prints a banner on standard output when the first instance of a process is made,
    before any option can be set; that would break ``--json`` output. The construction runs
    with file descriptor 1 pointed at standard error, so the banner lands there.
    """
    import ctypes

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        highs = highspy.Highs()
        ctypes.CDLL(None).fflush(None)  # flush C stdio while fd 1 still points at stderr
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    highs.setOptionValue("output_flag", False)
    return highs


class _Interrupt:
    """Ctrl-C while HiGHS runs: the signal handler only records it (an exception raised inside
    HiGHS's callback would unwind through its C++ and end the solve as an error); HiGHS's
    interrupt callbacks -- every simplex, interior-point and MIP iteration -- then stop it."""

    def __init__(self) -> None:
        self.pressed = False

    def handler(self, signum: int, frame: Any) -> None:
        self.pressed = True

    def check(self, event: Any) -> None:
        if self.pressed:
            event.interrupt()


_INTERRUPT_CALLBACKS = ("cbSimplexInterrupt", "cbIpmInterrupt", "cbMipInterrupt")


@contextmanager
def stop_on_interrupt(*highs: Any) -> Iterator[None]:
    """Run HiGHS (the ``highs`` objects) in the block so that Ctrl-C stops it at its next
    iteration and raises ``KeyboardInterrupt`` when the block ends.

    Python runs a signal handler only between bytecodes of the main thread, never while HiGHS
    computes; the interrupt callbacks subscribed here give it those moments, thousands of
    times a second. Elsewhere (another thread; Ctrl-C ignored, or handled by someone else)
    the block runs unchanged.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    state = _Interrupt()
    for h in highs:
        for name in _INTERRUPT_CALLBACKS:
            getattr(h, name).subscribe(state.check)
    previous = signal.signal(signal.SIGINT, state.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for h in highs:
            for name in _INTERRUPT_CALLBACKS:
                getattr(h, name).unsubscribe(state.check)
    if state.pressed:
        raise KeyboardInterrupt


def run_highs(h: Any) -> None:
    """``h.run()``, stopped by Ctrl-C within moments (:func:`stop_on_interrupt`)."""
    with stop_on_interrupt(h):
        h.run()


def add_inventory_flow(
    add: Any,
    rows: np.ndarray,
    inv: np.ndarray,
    sales: np.ndarray,
    orders: np.ndarray,
    lead_time: np.ndarray,
) -> None:
    """Coefficients of ``I_t - I_{t-1} - q_{t-L_i} + s_t`` on rows ``(H, N)``.

    ``add(rows, cols, value)`` records entries; ``inv``, ``sales``, ``orders`` hold the
    column indices ``(H, N)`` of I, s and q. Orders placed before the first period do not
    exist, so ``q_{t-L}`` only enters where ``t >= L``.
    """
    add(rows, inv, 1.0)
    add(rows[1:], inv[:-1], -1.0)
    add(rows, sales, 1.0)
    t, i, placed = order_arrivals(lead_time, rows.shape[0])
    add(rows[t, i], orders[placed, i], -1.0)


@dataclass(frozen=True, eq=False)
class Layout:
    """Offsets of each variable block (columns) and constraint family (rows)."""

    H: int
    M: int
    N: int
    cols: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    rows: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    n_cols: int = 0
    n_rows: int = 0

    def col(self, name: str) -> np.ndarray:
        """Column indices of block ``name`` with the block's shape."""
        start, shape = self.cols[name]
        return start + np.arange(int(np.prod(shape))).reshape(shape)

    def row(self, name: str) -> np.ndarray:
        """Row indices of family ``name`` with the family's shape."""
        start, shape = self.rows[name]
        return start + np.arange(int(np.prod(shape))).reshape(shape)


def _layout(d: FluidData) -> Layout:
    h, m, n = d.horizon, d.n_segments, d.n_products
    cols: dict[str, tuple[int, tuple[int, ...]]] = {}
    rows: dict[str, tuple[int, tuple[int, ...]]] = {}
    pos = 0
    col_blocks: list[tuple[str, tuple[int, ...]]] = [
        ("alpha", (h, m, n)),
        ("beta", (h, m, n)),
        ("y", (h, m)),
    ]
    if d.has_inventory:
        col_blocks += [("q", (h, n)), ("s", (h, n)), ("l", (h, n)), ("inv", (h, n))]
        if d.order_indicators:
            col_blocks.append(("z", (h, n)))
    for name, shape in col_blocks:
        cols[name] = (pos, shape)
        pos += int(np.prod(shape))
    n_cols = pos
    pos = 0
    row_blocks: list[tuple[str, tuple[int, ...]]] = [
        ("choice_balance", (h, m)),
        ("offer_once", (h, m, n)),
        ("slate_capacity", (h, m)),
    ]
    if d.has_inventory:
        row_blocks += [("demand_split", (h, n)), ("inventory_flow", (h, n))]
        if d.warehouse_capacity is not None:
            row_blocks.append(("warehouse_capacity", (h,)))
        if d.order_indicators:
            row_blocks.append(("order_indicator", (h, n)))
    for name, shape in row_blocks:
        rows[name] = (pos, shape)
        pos += int(np.prod(shape))
    return Layout(h, m, n, cols, rows, n_cols, pos)


@dataclass(frozen=True, eq=False)
class FluidLPArrays:
    """The fluid program as ``max c'x  s.t. row_lower <= A x <= row_upper,
    col_lower <= x <= col_upper`` (``A`` in CSC), with integrality flags."""

    layout: Layout
    cost: np.ndarray
    matrix: sp.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column


def flow_rhs(on_hand: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """Right-hand side of the inventory flow rows ``(H, N)``: pipeline arrivals, plus the
    start stock in the first period."""
    rhs = np.array(arrivals, dtype=float, copy=True)
    rhs[0] += on_hand
    return rhs


def warehouse_rhs(d: FluidData, on_hand: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """Upper bound of the warehouse rows ``(H,)``: capacity less the fixed stock entering."""
    assert d.warehouse_capacity is not None
    return d.warehouse_capacity - flow_rhs(on_hand, arrivals).sum(axis=1)


def assemble_fluid_lp(d: FluidData) -> FluidLPArrays:
    """Sparse matrices of the fluid program of ``d`` (the same rows as the Pyomo model)."""
    lay = _layout(d)
    h, m, n = lay.H, lay.M, lay.N
    wr, wn = d.rec_attraction, d.base_attraction
    a, b, y = lay.col("alpha"), lay.col("beta"), lay.col("y")
    ri: list[np.ndarray] = []
    ci: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def add(rows: np.ndarray, cols: np.ndarray, v: np.ndarray | float) -> None:
        rows, cols = np.broadcast_arrays(rows, cols)
        ri.append(rows.ravel())
        ci.append(cols.ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), rows.shape).ravel())

    row_lo = np.zeros(lay.n_rows)
    row_up = np.zeros(lay.n_rows)
    # choice balance: w0 y + sum_i (wR alpha + wN beta) = lambda
    cb = lay.row("choice_balance")
    add(cb, y, np.broadcast_to(d.no_purchase, (h, m)))
    add(cb[..., None], a, np.broadcast_to(wr, (h, m, n)))
    add(cb[..., None], b, np.broadcast_to(wn, (h, m, n)))
    row_lo[cb] = row_up[cb] = np.broadcast_to(d.arrival_rate, (h, m))
    # offer once: alpha + beta - y (= 0 lost, <= 0 hidden)
    oo = lay.row("offer_once")
    add(oo, a, 1.0)
    add(oo, b, 1.0)
    add(oo, np.broadcast_to(y[..., None], (h, m, n)), -1.0)
    row_lo[oo] = -INF if d.hidden else 0.0
    # slate capacity: sum_i alpha - K y <= 0
    sc = lay.row("slate_capacity")
    add(sc[..., None], a, 1.0)
    add(sc, y, -float(d.slate_size))
    row_lo[sc] = -INF

    cost = np.zeros(lay.n_cols)
    col_lo = np.zeros(lay.n_cols)
    col_up = np.full(lay.n_cols, INF)
    integer = np.zeros(lay.n_cols, dtype=bool)
    g = d.discount

    if d.slate_mask is not None:
        fixed_zero = np.where(d.slate_mask[None], b, a)
        col_up[fixed_zero] = 0.0

    u = d.unit_value
    if not d.has_inventory:
        cost[a] = g[:, None, None] * u[Flow.SOLD][None, None, :] * wr[None]
        cost[b] = g[:, None, None] * u[Flow.SOLD][None, None, :] * wn[None]
    else:
        q, s, l, inv = lay.col("q"), lay.col("s"), lay.col("l"), lay.col("inv")
        # demand split: s + l - sum_k (wR alpha + wN beta) = 0
        ds = lay.row("demand_split")
        add(ds, s, 1.0)
        add(ds, l, 1.0)
        add(np.broadcast_to(ds[:, None, :], (h, m, n)), a, -np.broadcast_to(wr, (h, m, n)))
        add(np.broadcast_to(ds[:, None, :], (h, m, n)), b, -np.broadcast_to(wn, (h, m, n)))
        # inventory flow: I_t - I_{t-1} - q_{t-L} + s_t = P_t (+ on-hand at t = 0)
        fl = lay.row("inventory_flow")
        add_inventory_flow(add, fl, inv, s, q, d.lead_time)
        row_lo[fl] = row_up[fl] = flow_rhs(d.on_hand, d.arrivals)
        if d.warehouse_capacity is not None:
            wh = lay.row("warehouse_capacity")
            add(np.broadcast_to(wh[1:, None], (h - 1, n)), inv[:-1], 1.0)
            t_arr, i_arr, placed = order_arrivals(d.lead_time, h)
            add(wh[t_arr], q[placed, i_arr], 1.0)
            row_lo[wh] = -INF
            row_up[wh] = warehouse_rhs(d, d.on_hand, d.arrivals)
        col_up[q] = np.broadcast_to(d.max_order, (h, n))
        integer[q] = d.integer_quantities
        if d.order_indicators:
            z = lay.col("z")
            oi = lay.row("order_indicator")
            add(oi, q, 1.0)
            add(oi, z, -d.big_m)
            row_lo[oi] = -INF
            col_up[z] = 1.0
            integer[z] = d.integer_orders
        for flow in PERIOD_FLOWS:  # the objective: money per unit of each flow
            if FLOW_VARIABLES[flow] in lay.cols:
                cost[lay.col(FLOW_VARIABLES[flow])] = g[:, None] * u[flow][None, :]
        cost[lay.col(FLOW_VARIABLES[Flow.LEFT_OVER])[-1]] += g[-1] * u[Flow.LEFT_OVER]

    rows = np.concatenate(ri)
    cols = np.concatenate(ci)
    data = np.concatenate(vals)
    keep = data != 0.0
    matrix = sp.csc_matrix((data[keep], (rows[keep], cols[keep])), shape=(lay.n_rows, lay.n_cols))
    matrix.sum_duplicates()
    return FluidLPArrays(lay, cost, matrix, row_lo, row_up, col_lo, col_up, integer)


# --------------------------------------------------------------------------- highspy


def to_highs(arrays: FluidLPArrays, highs: object) -> None:
    """Load ``arrays`` into a ``highspy.Highs`` object with one ``passModel`` call."""
    import highspy

    lp = highspy.HighsLp()
    lay = arrays.layout
    lp.num_col_ = lay.n_cols
    lp.num_row_ = lay.n_rows
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = arrays.cost
    lp.col_lower_ = arrays.col_lower
    lp.col_upper_ = arrays.col_upper
    lp.row_lower_ = arrays.row_lower
    lp.row_upper_ = arrays.row_upper
    mat = arrays.matrix
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr.astype(np.int32)
    lp.a_matrix_.index_ = mat.indices.astype(np.int32)
    lp.a_matrix_.value_ = mat.data
    lp.a_matrix_.num_col_ = lay.n_cols
    lp.a_matrix_.num_row_ = lay.n_rows
    if arrays.integer.any():
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if f else highspy.HighsVarType.kContinuous
            for f in arrays.integer
        ]
    status = highs.passModel(lp)  # type: ignore[attr-defined]
    if status != highspy.HighsStatus.kOk:
        raise RuntimeError(f"HiGHS refused the fluid model (passModel returned {status})")


def state_bounds(
    d: FluidData, arrays: FluidLPArrays, start: FluidStart
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column and row bounds that move a full-horizon model to ``start``.

    Periods before ``start.t0`` are fixed to zero (columns at 0, their rows at 0); the
    flow row of period ``t0`` receives the on-hand stock, and pipeline column j the flow
    row of period ``t0 + j``. Returns ``(col_lower, col_upper, row_lower, row_upper)``.
    """
    if d.t0 != 0:
        raise ValueError("state_bounds needs a model built over the full horizon (t0 = 0)")
    lay = arrays.layout
    h, n = lay.H, lay.N
    t0 = int(start.t0)
    if not 0 <= t0 < h:
        raise ValueError(f"start period t0={t0} is outside the horizon 0..{h - 1}")
    col_lo, col_up = arrays.col_lower.copy(), arrays.col_upper.copy()
    row_lo, row_up = arrays.row_lower.copy(), arrays.row_upper.copy()
    past = slice(0, t0)
    for name in lay.cols:
        col_up[lay.col(name)[past]] = 0.0
    for name in lay.rows:
        rows = lay.row(name)[past]
        row_lo[rows] = 0.0
        row_up[rows] = 0.0
    if d.has_inventory:
        on_hand, arrivals = start.stock(n, h - t0)
        fl = lay.row("inventory_flow")
        row_lo[fl[t0:]] = row_up[fl[t0:]] = flow_rhs(on_hand, arrivals)
        if d.warehouse_capacity is not None:
            wh = lay.row("warehouse_capacity")
            row_lo[wh] = -INF
            row_up[wh[t0:]] = warehouse_rhs(d, on_hand, arrivals)
            row_up[wh[past]] = INF
    return col_lo, col_up, row_lo, row_up


# --------------------------------------------------------------------------- the specification


def differences_from_model(
    arrays: FluidLPArrays,
    model: Any,
    *,
    offset: int = 0,
    cost_scale: float = 1.0,
    rtol: float = 1e-12,
) -> list[str]:
    """How ``arrays`` differ from the Pyomo ``model`` they should encode; empty when equal.

    The model (:func:`~coordopt.models.fluid.build_fluid_model`, the specification) is
    compiled by Pyomo's ``LinearStandardFormCompiler`` and compared coefficient by
    coefficient, rows and columns matched by name (``alpha[t,k,i]`` is column
    ``layout.col("alpha")[t - 1 + offset, k, i]``; constraint families likewise): the
    matrix, the row bounds (``==``/``<=``), the column bounds, fixed variables (Pyomo folds
    them into the right-hand sides; here they are columns fixed at their value), integrality
    and the objective (times ``cost_scale``). With ``offset = t0`` the arrays are a
    full-horizon program moved to a start at ``t0`` (:func:`state_bounds`) and the model is
    built from that start: the ``offset`` past periods must be fixed at zero, and the
    objective is compared in start-period money (``cost_scale = gamma^-t0``); past rows may
    touch past columns only and must admit zero.
    """
    import pyomo.environ as pyo
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    lay = arrays.layout
    out: list[str] = []

    def periods(blocks: dict[str, tuple[int, tuple[int, ...]]], size: int) -> np.ndarray:
        per = np.empty(size, dtype=np.int64)
        for start, shape in blocks.values():
            n = int(np.prod(shape))
            per[start : start + n] = np.repeat(np.arange(shape[0]), n // shape[0])
        return per

    def position(component: Any, blocks: Layout, kind: str) -> int:
        idx = component.index()
        idx = idx if isinstance(idx, tuple) else (idx,)
        name = component.parent_component().local_name
        if name not in (blocks.cols if kind == "col" else blocks.rows):
            raise KeyError(name)
        grid = blocks.col(name) if kind == "col" else blocks.row(name)
        return int(grid[(int(idx[0]) - 1 + offset, *idx[1:])])

    col_period = periods(lay.cols, lay.n_cols)
    row_period = periods(lay.rows, lay.n_rows)
    # columns: every model variable is one column with the same bounds and integrality
    col_of: dict[int, int] = {}
    for var in model.component_data_objects(pyo.Var, descend_into=True):
        try:
            j = position(var, lay, "col")
        except KeyError:
            out.append(f"variable {var.name} has no column block")
            continue
        col_of[id(var)] = j
        if var.fixed and var.value != 0:
            out.append(f"{var.name} is fixed at {var.value}: only zeros fold out of the rows")
        lo = var.value if var.fixed else (-INF if var.lb is None else var.lb)
        up = var.value if var.fixed else (INF if var.ub is None else var.ub)
        if not (
            np.isclose(lo, arrays.col_lower[j], rtol=rtol)
            and np.isclose(up, arrays.col_upper[j], rtol=rtol)
        ):
            out.append(
                f"bounds of {var.name}: model [{lo}, {up}], arrays "
                f"[{arrays.col_lower[j]}, {arrays.col_upper[j]}]"
            )
        if bool(var.is_integer()) != bool(arrays.integer[j]):
            out.append(
                f"integrality of {var.name}: model {var.is_integer()}, arrays {arrays.integer[j]}"
            )
    present = np.zeros(lay.n_cols, dtype=bool)
    present[list(col_of.values())] = True
    if len(set(col_of.values())) != len(col_of):
        out.append("two model variables map to one column")
    if (present != (col_period >= offset)).any():
        out.append(
            f"columns without a model variable: {np.flatnonzero(~present & (col_period >= offset))[:10].tolist()}"
        )
    past = col_period < offset
    if (arrays.col_lower[past] != 0).any() or (arrays.col_upper[past] != 0).any():
        out.append("past-period columns are not fixed at zero")
    # rows and coefficients, through the compiled standard form
    info = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
    cols = np.array([col_of[id(v)] for v in info.columns], dtype=np.int64)
    rows = []
    for entry in info.rows:
        try:
            rows.append(position(entry.constraint, lay, "row"))
        except KeyError:
            out.append(f"constraint {entry.constraint.name} has no row family")
            return out
    rows_arr = np.array(rows, dtype=np.int64)
    expected_rows = np.flatnonzero(row_period >= offset)
    if sorted(rows) != expected_rows.tolist():
        missing = sorted(set(expected_rows.tolist()) - set(rows))
        out.append(f"rows without a model constraint (or repeated): {missing[:10]}")
    mine = arrays.matrix.tocsr()[rows_arr][:, cols]
    theirs = sp.csr_matrix(info.A)
    diff = abs(mine - theirs) - rtol * abs(theirs)
    bad_rows, bad_cols, _ = sp.find(diff > 1e-15)
    for r, c in list(zip(bad_rows, bad_cols, strict=True))[:10]:
        out.append(
            f"coefficient of {info.columns[c].name} in {info.rows[r].constraint.name}: model "
            f"{theirs[r, c]}, arrays {mine[r, c]}"
        )
    lo = np.where([e.bound_type == 0 for e in info.rows], info.rhs, -INF)
    up = np.asarray(info.rhs, dtype=float)
    if any(e.bound_type not in (0, 1) for e in info.rows):
        out.append("unexpected >= rows in the compiled model")
    for name, model_side, array_side in (
        ("lower", lo, arrays.row_lower[rows_arr]),
        ("upper", up, arrays.row_upper[rows_arr]),
    ):
        wrong = ~np.isclose(model_side, array_side, rtol=rtol, atol=1e-12)
        for r in np.flatnonzero(wrong)[:10]:
            out.append(
                f"{name} bound of {info.rows[r].constraint.name}: model {model_side[r]}, arrays "
                f"{array_side[r]}"
            )
    past_rows = row_period < offset
    touched = arrays.matrix.tocsr()[past_rows][:, ~past]
    if (
        touched.nnz
        or (arrays.row_lower[past_rows] > 0).any()
        or (arrays.row_upper[past_rows] < 0).any()
    ):
        out.append("past-period rows are not trivially met by the zero past columns")
    # objective
    c_model = np.asarray(info.c.toarray()).ravel()
    c_arrays = arrays.cost[cols] * cost_scale
    for j in np.flatnonzero(~np.isclose(c_model, c_arrays, rtol=rtol, atol=1e-12))[:10]:
        out.append(
            f"objective coefficient of {info.columns[j].name}: model {c_model[j]}, arrays {c_arrays[j]}"
        )
    if np.any(np.asarray(info.c_offset) != 0):
        out.append(f"the model's objective has a constant {info.c_offset}")
    return out
