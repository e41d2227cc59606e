"""Size thresholds, defined once: how big a full fluid program may get before a path refuses
or changes strategy."""

from __future__ import annotations

from coordopt.instance import Instance

__all__ = ["FULL_LP_CELLS", "plan_cells"]

FULL_LP_CELLS = 2_000_000
"""Period x segment x product cells above which the full fluid program is refused without
``--force`` (``coordopt solve``) and the decomposition stops keeping every block's HiGHS
model in memory."""


def plan_cells(inst: Instance) -> int:
    """``T * M * N``: the (period, segment, product) cells of the fluid program of ``inst``."""
    return inst.horizon * inst.n_segments * inst.n_products
