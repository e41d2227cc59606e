"""The two-agent game over the simulator, defined once for every multi-agent adapter.

Each period the ``replenishment`` agent chooses an order per product (an integer in
``0..cap_i``) and the ``recommendation`` agent a slate per segment (``K`` product indices,
``N`` marking an empty slot, repeated products dropped). What each agent observes, how its
raw action becomes a simulator :class:`~coordopt.simulator.Action` and what it is rewarded
live here, batched over environments, so that the PettingZoo adapter
(:mod:`coordopt.pettingzoo_env`), the TorchRL environment (:mod:`coordopt.torchrl_env`) and
the trained peers' policies (:mod:`coordopt.rl.peers`) cannot drift apart.

Observations (flat ``float32``; ``W`` = pipeline width):

- replenishment: on-hand ``(N)``, pipeline ``(N*W)``, last sales ``(N)``, last demand ``(N)``,
  ``t / T``, and with shared information last period's slates as an ``(M*N)`` indicator;
- recommendation: last sales ``(N)``, last demand ``(N)``, ``t / T``, and with shared
  information on-hand ``(N)`` and pipeline ``(N*W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from coordopt.economics import department_profits
from coordopt.instance import Instance
from coordopt.simulator import Action, SimParams, SimState, StepResult

Tensor = torch.Tensor
AGENTS = ("replenishment", "recommendation")
REWARDS = ("firm", "departmental")


def order_caps(inst: Instance, order_cap: int | None = None) -> np.ndarray:
    """Largest order per product, ``(N,)`` int64 (an action space must be finite).

    Default: ``max_order`` where set, else four periods of the mean demand at the peak arrival
    rates with every product recommended to every segment, plus one.
    """
    if order_cap is not None:
        return np.minimum(np.full(inst.n_products, order_cap), inst.max_order).astype(np.int64)
    mean = (
        inst.arrival_rate.max(axis=0)[:, None]
        * inst.rec_attraction
        / (inst.no_purchase[:, None] + inst.rec_attraction.sum(1, keepdims=True))
    ).sum(0)
    return np.where(np.isfinite(inst.max_order), inst.max_order, np.ceil(4 * mean) + 1).astype(
        np.int64
    )


def observation_dims(params: SimParams, share_information: bool) -> dict[str, int]:
    """Length of each agent's flat observation."""
    n, m, w = params.n_products, params.n_segments, params.pipeline_width
    return {
        "replenishment": n * (3 + w) + 1 + (m * n if share_information else 0),
        "recommendation": 2 * n + 1 + (n * (1 + w) if share_information else 0),
    }


def observe(
    state: SimState, last_slates: Tensor, horizon: int, share_information: bool
) -> dict[str, Tensor]:
    """Both agents' observations, ``(B, dim)`` float32 each.

    ``last_slates`` is last period's ``(B, M, N)`` recommendation indicator
    (:func:`slate_indicator`; zeros at ``t = 0``).
    """
    b = state.batch_size
    t = torch.full(
        (b, 1), state.t / horizon, dtype=state.on_hand.dtype, device=state.on_hand.device
    )
    pipe = state.pipeline.reshape(b, -1)
    flows = [state.last_sales, state.last_demand]
    rep = [state.on_hand, pipe, *flows, t] + (
        [last_slates.reshape(b, -1).to(t.dtype)] if share_information else []
    )
    rec = [*flows, t] + ([state.on_hand, pipe] if share_information else [])
    return {
        "replenishment": torch.cat(rep, 1).to(torch.float32),
        "recommendation": torch.cat(rec, 1).to(torch.float32),
    }


def clean_slates(raw: Tensor, n_products: int) -> Tensor:
    """``(B, M, K)`` raw slot choices -> simulator slates: ``-1`` for an empty slot (any value
    outside ``0..N-1``) and for a product already placed in an earlier slot of the segment."""
    slates = torch.where((raw >= 0) & (raw < n_products), raw, -1).long()
    k = slates.shape[-1]
    same = slates.unsqueeze(-1) == slates.unsqueeze(-2)  # (B, M, K, K)
    earlier = torch.ones(k, k, dtype=torch.bool, device=raw.device).tril(-1)
    repeated = (same & earlier).any(-1)
    return torch.where(repeated, -1, slates)


def decode_actions(orders: Tensor, raw_slates: Tensor, caps: Tensor, params: SimParams) -> Action:
    """Raw agent actions -> an :class:`Action`: orders clipped to ``[0, caps]``, slates cleaned."""
    q = torch.minimum(orders.to(params.dtype).clamp(min=0), caps.to(params.dtype))
    return Action(orders=q, slates=clean_slates(raw_slates, params.n_products))


def slate_indicator(slates: Tensor, n_products: int) -> Tensor:
    """``(B, M, N)``: 1 where product ``i`` is on segment ``k``'s slate (``-1`` slots ignored)."""
    b, m, _ = slates.shape
    out = torch.zeros(b, m, n_products + 1, device=slates.device)
    out.scatter_(2, torch.where(slates >= 0, slates, n_products), 1.0)
    return out[..., :n_products]


def agent_rewards(res: StepResult, rewards: str) -> dict[str, Tensor]:
    """Each agent's reward ``(B,)``: the firm's profit for both (``"firm"``), or its
    department's share of it (``"departmental"``, :func:`coordopt.economics.department_profits`:
    revenue for marketing, the rest for operations; the two add up to the profit)."""
    if rewards == "firm":
        return {"replenishment": res.reward, "recommendation": res.reward}
    if rewards != "departmental":
        raise ValueError(f"rewards={rewards!r}: allowed values are {', '.join(REWARDS)}")
    return department_profits(res.terms)
