"""The Pyomo model is the specification: the bulk arrays equal its compiled standard form.

Every coefficient, row bound, column bound, integrality flag and objective coefficient of
:func:`~coordopt.solvers.highs_bulk.assemble_fluid_lp` (and of a full-horizon program moved
to a mid-horizon start by :func:`~coordopt.solvers.highs_bulk.state_bounds`) is compared
with Pyomo's ``LinearStandardFormCompiler`` output, rows and columns matched by name, on
tiny, small and generated instances in every variant. A wrong coefficient in a family that
is slack at the optimum fails here, where equal optima would not notice it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coordopt.generator import generate_instance
from coordopt.instance import Instance, Stockout, load_instance
from coordopt.models.fluid import FluidStart, build_fluid_model, fluid_data
from coordopt.solvers.highs_bulk import (
    FluidLPArrays,
    assemble_fluid_lp,
    differences_from_model,
    state_bounds,
)


def _generated() -> Instance:
    inst = generate_instance(seed=3, n_products=5, n_segments=3, horizon=6, max_lead_time=2)
    return inst.replace(name="generated")


def _variants() -> list[tuple[str, Instance]]:
    tiny, small, gen = load_instance("tiny"), load_instance("small"), _generated()
    stock = float(tiny.initial_inventory.sum()) + 4.0
    return [
        ("tiny", tiny),
        ("tiny-hidden", tiny.replace(stockout=Stockout.HIDDEN)),
        ("tiny-capacity", tiny.replace(warehouse_capacity=stock)),
        ("tiny-fixed-costs", tiny.replace(fixed_order_cost=[2.0, 0.0])),
        ("small", small),
        ("generated", gen),
        (
            "generated-all",
            gen.replace(
                stockout=Stockout.HIDDEN,
                warehouse_capacity=float(gen.initial_inventory.sum()) * 2.0,
                fixed_order_cost=np.linspace(0.0, 3.0, gen.n_products),
                max_order=np.full(gen.n_products, 50.0),
                discount=0.97,
            ),
        ),
    ]


VARIANTS = _variants()
PROGRAMS = ("coordinated", "siloed-slates", "unlimited-stock")


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name,inst", VARIANTS, ids=[n for n, _ in VARIANTS])
def test_bulk_arrays_equal_the_compiled_model(name: str, inst: Instance, program: str) -> None:
    model = build_fluid_model(inst, variant=program)
    arrays = assemble_fluid_lp(fluid_data(inst, variant=program))
    assert differences_from_model(arrays, model) == []


@pytest.mark.parametrize("integer", ["orders", "quantities"])
@pytest.mark.parametrize("name", ["tiny-fixed-costs", "generated-all"])
def test_milp_arrays_equal_the_compiled_model(name: str, integer: str) -> None:
    inst = dict(VARIANTS)[name]
    flags = {"integer_orders": integer == "orders", "integer_quantities": integer == "quantities"}
    model = build_fluid_model(inst, **flags)
    arrays = assemble_fluid_lp(fluid_data(inst, **flags))
    assert arrays.integer.any()
    assert differences_from_model(arrays, model) == []


def _start(inst: Instance, t0: int, seed: int) -> FluidStart:
    rng = np.random.default_rng(seed)
    width = max(1, inst.max_lead_time)
    return FluidStart(
        t0,
        rng.integers(0, 6, inst.n_products).astype(float),
        rng.integers(0, 4, (inst.n_products, width)).astype(float),
    )


@pytest.mark.parametrize("program", ["coordinated", "siloed-slates"])
@pytest.mark.parametrize("name", ["tiny", "tiny-capacity", "generated-all"])
def test_mid_horizon_starts_equal_the_model_built_from_that_start(name: str, program: str) -> None:
    inst = dict(VARIANTS)[name]
    for t0 in (1, inst.horizon // 2, inst.horizon - 1):
        start = _start(inst, t0, seed=t0)
        model = build_fluid_model(inst, variant=program, start=start)
        # built from the start directly
        direct = assemble_fluid_lp(fluid_data(inst, variant=program, start=start))
        assert differences_from_model(direct, model) == [], t0
        # a full-horizon program moved to the start by bounds only (what MPC re-solves)
        full = fluid_data(inst, variant=program)
        arrays = assemble_fluid_lp(full)
        col_lo, col_up, row_lo, row_up = state_bounds(full, arrays, start)
        moved = dataclasses.replace(
            arrays, col_lower=col_lo, col_upper=col_up, row_lower=row_lo, row_upper=row_up
        )
        scale = 1.0 / full.discount[t0]
        assert differences_from_model(moved, model, offset=t0, cost_scale=scale) == [], t0


def _broken(arrays: FluidLPArrays, **changes: object) -> FluidLPArrays:
    return dataclasses.replace(arrays, **changes)  # type: ignore[arg-type]


def test_the_comparison_catches_a_wrong_coefficient_a_bound_and_a_cost() -> None:
    inst = dict(VARIANTS)["tiny-capacity"]
    model = build_fluid_model(inst)
    arrays = assemble_fluid_lp(fluid_data(inst))
    lay = arrays.layout
    # a coefficient in the warehouse family (slack at the optimum of tiny)
    matrix = arrays.matrix.tolil()
    row, col = int(lay.row("warehouse_capacity")[2]), int(lay.col("inv")[1, 0])
    assert matrix[row, col] == 1.0
    matrix[row, col] = 1.5
    found = differences_from_model(_broken(arrays, matrix=matrix.tocsc()), model)
    assert len(found) == 1 and "inv[2,0] in warehouse_capacity[3]" in found[0]
    # a missing coefficient
    matrix = arrays.matrix.tolil()
    matrix[row, col] = 0.0
    assert differences_from_model(_broken(arrays, matrix=matrix.tocsc()), model)
    # a row bound, a column bound, an objective coefficient, an integrality flag
    row_up = arrays.row_upper.copy()
    row_up[int(lay.row("slate_capacity")[0, 0])] = 1.0
    assert (
        "upper bound of slate_capacity[1,0]"
        in differences_from_model(_broken(arrays, row_upper=row_up), model)[0]
    )
    col_up = arrays.col_upper.copy()
    col_up[int(lay.col("q")[0, 1])] = 3.0
    assert "bounds of q[1,1]" in differences_from_model(_broken(arrays, col_upper=col_up), model)[0]
    cost = arrays.cost.copy()
    cost[int(lay.col("l")[4, 0])] -= 1e-6
    assert (
        "objective coefficient of l[5,0]"
        in differences_from_model(_broken(arrays, cost=cost), model)[0]
    )
    integer = arrays.integer.copy()
    integer[int(lay.col("q")[0, 0])] = True
    assert (
        "integrality of q[1,0]"
        in differences_from_model(_broken(arrays, integer=integer), model)[0]
    )
