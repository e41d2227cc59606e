"""Size thresholds, defined once: how big a full fluid program may get before a path refuses
or changes strategy."""

from __future__ import annotations

from coordopt.instance import Instance

__all__ = ["FULL_LP_CELLS", "plan_cells"]

FULL_LP_CELLS = 2_000_000
"""Period x segment x product cells above which the full fluid program is too big to solve
routinely: ``coordopt solve`` refuses it without ``--force`` (pointing to the catalog
solver), the insights take the catalog solver's plan, and ``--warm-start auto`` picks
bid-price control instead of MPC."""


def plan_cells(inst: Instance) -> int:
    """``T * M * N``: the (period, segment, product) cells of the fluid program of ``inst``."""
    return inst.horizon * inst.n_segments * inst.n_products
