"""Catalog-scale fluid solver: a Lagrangian dual on stock values, minimised in torch.

The parts, in the order a solve uses them:

- :mod:`.data`: the fluid program's arrays as tensors (:class:`CatalogData`);
- :mod:`.inventory`: the per-product inventory programs of the dual, in closed form;
- :mod:`.dual`: the bound -- the Lagrangian, its validity proof, and one evaluation
  (:func:`dual_value`) with the choice programs' best slates
  (:func:`coordopt.choice.best_slates`) and a subgradient;
- :mod:`.plan`: an exactly feasible plan recovered from the iterates' slates;
- :mod:`.solver`: :func:`solve_catalog`, the subgradient loop, and its result.
"""

from coordopt.solvers.catalog.data import INF, CatalogData, CatalogError, catalog_data
from coordopt.solvers.catalog.dual import (
    CHUNK_CELLS,
    DualValue,
    dual_value,
    period_chunks,
    period_slates,
    slate_demand,
    stock_value_box,
)
from coordopt.solvers.catalog.inventory import inventory_bound, inventory_flows, inventory_values
from coordopt.solvers.catalog.plan import (
    EXACT_FLOW_CELLS,
    FluidPoint,
    SlateAverage,
    choice_point,
    greedy_flows,
    plan_flows,
    plan_objective,
    plan_residuals,
    point_demand,
    recover_plan,
)
from coordopt.solvers.catalog.solver import (
    PLAN_EVERY,
    STOP_REASONS,
    CatalogSolution,
    initial_stock_values,
    iteration_bar,
    solve_catalog,
)

__all__ = [
    "CHUNK_CELLS",
    "EXACT_FLOW_CELLS",
    "INF",
    "PLAN_EVERY",
    "STOP_REASONS",
    "CatalogData",
    "CatalogError",
    "CatalogSolution",
    "DualValue",
    "FluidPoint",
    "SlateAverage",
    "catalog_data",
    "choice_point",
    "dual_value",
    "greedy_flows",
    "initial_stock_values",
    "inventory_bound",
    "inventory_flows",
    "inventory_values",
    "iteration_bar",
    "period_chunks",
    "period_slates",
    "plan_flows",
    "plan_objective",
    "plan_residuals",
    "point_demand",
    "recover_plan",
    "slate_demand",
    "solve_catalog",
    "stock_value_box",
]
