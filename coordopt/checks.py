"""Invariants shipped as functions: tests call them, users can too.

Each check raises :class:`InvariantError` with what broke, where (batch entry, product or
segment) and by how much; each returns ``None`` when all is well.
"""

from __future__ import annotations

import torch

from coordopt.simulator import Action, SimParams, SimState, StepResult


class InvariantError(AssertionError):
    """A simulator or policy invariant does not hold."""


def _first_bad(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(x) for x in torch.nonzero(mask)[0])


def check_action(action: Action, params: SimParams) -> None:
    """Orders are non-negative integers; each slate holds at most K distinct valid products."""
    q, s = action.orders, action.slates
    b = q.shape[0]
    if q.shape != (b, params.n_products):
        raise InvariantError(
            f"orders have shape {tuple(q.shape)}, expected (B, N) = ({b}, {params.n_products})"
        )
    if s.dim() != 3 or s.shape[:2] != (b, params.n_segments):
        raise InvariantError(
            f"slates have shape {tuple(s.shape)}, expected (B, M, K) = ({b}, {params.n_segments}, K)"
        )
    if (q < 0).any() or (q != q.floor()).any():
        bad = (q < 0) | (q != q.floor())
        raise InvariantError(
            f"orders must be non-negative integers; env/product {_first_bad(bad)} has {q[bad][0].item()}"
        )
    if ((s < -1) | (s >= params.n_products)).any():
        raise InvariantError(f"slate entries must be -1 or a product index < {params.n_products}")
    filled = (s >= 0).sum(-1)
    if (filled > params.slate_size).any():
        raise InvariantError(
            f"a slate holds {int(filled.max())} products; slate_size is {params.slate_size}"
        )
    srt = s.sort(-1).values
    dup = (srt[..., 1:] == srt[..., :-1]) & (srt[..., 1:] >= 0)
    if dup.any():
        raise InvariantError(
            f"slate of env/segment {_first_bad(dup.any(-1))} recommends a product twice"
        )


def check_step(
    before: SimState, result: StepResult, after: SimState, params: SimParams, atol: float = 1e-4
) -> None:
    """Inventory conservation and non-negativity across one step.

    ``available = on_hand + arrivals - overflow``; ``sales = min(available, demand)``;
    ``sales + lost = demand``; ``end = available - sales``; pipeline units only move
    forward: ``sum(pipeline') = sum(pipeline) - arrived_from_pipeline + new orders in transit``.
    """
    checks: list[tuple[str, torch.Tensor]] = [
        (
            "available = on_hand + arrivals - overflow",
            (result.available - (before.on_hand + result.arrivals - result.overflow)).abs() > atol,
        ),
        (
            "sales = min(available, demand)",
            (result.sales - torch.minimum(result.available, result.demand)).abs() > atol,
        ),
        ("sales + lost = demand", (result.sales + result.lost - result.demand).abs() > atol),
        (
            "end inventory = available - sales",
            (after.on_hand - (result.available - result.sales)).abs() > atol,
        ),
        ("on-hand >= 0", after.on_hand < -atol),
        ("lost >= 0", result.lost < -atol),
        ("pipeline >= 0", (after.pipeline < -atol).any(-1)),
    ]
    zero_lead = params.zero_lead.bool()
    in_transit = torch.where(zero_lead, torch.zeros_like(result.orders), result.orders)
    from_pipe = before.pipeline[..., 0]
    pipe_balance = after.pipeline.sum(-1) - (before.pipeline.sum(-1) - from_pipe + in_transit)
    checks.append(("pipeline conservation", pipe_balance.abs() > atol))
    for what, bad in checks:
        if bad.any():
            where = _first_bad(bad)
            raise InvariantError(f"period {before.t}: {what} fails at env/product {where}")
    if after.t != before.t + 1:
        raise InvariantError(f"time advanced from {before.t} to {after.t}")
