"""Credit per decision: each product's order and each segment's slate rewarded with its own
share of the firm's profit (``TrainConfig.credit = "decision"``).

With joint credit one env-period's PPO ratio is the product of ``N`` order ratios and ``M``
slate ratios, all scored by one advantage of the firm's profit; at catalog scale that ratio
leaves the clip range after a few steps and the update throws almost every sample away. But
the firm's profit is a sum over products, and so it splits exactly into two families of
streams, each summing to the profit of every period ``t`` and environment:

- **per product** ``i``: its own money (:func:`product_profits`, from the one declaration of
  the money terms, :mod:`coordopt.economics`)::

      r_ti = p_i s_ti - c_i q_ti - F_i 1{q_ti > 0} - h_i I_ti - b_i l_ti (+ v_i I_iT after T),
      sum_i r_ti = Profit_t;

- **per segment** ``k``: each product's money split between the segments in proportion to
  their expected demand for it in that period (:func:`segment_profits`)::

      d_tki = lambda_kt P_ki(S_tk),  d_ti = sum_k d_tki  (the simulator's demand rate),
      r_tk = sum_i (d_tki / d_ti) r_ti   (1 / M of r_ti where d_ti = 0),
      sum_k r_tk = sum_i r_ti = Profit_t.

  By Poisson thinning ``d_tki / d_ti`` is the expected fraction of product i's realised
  demand that came from segment k's customers, so ``r_tk`` is the expected money of the
  purchases (and of the stock-outs) of segment k's customers, each product's costs shared like
  its demand. The slate ``S_tk`` moves the segment's share toward the products it shows: a
  slate of profitable, stocked products earns its segment more, one that sends customers to
  empty shelves costs it their lost-sale penalties.

The replenishment actor's order for product i is scored by the advantage of stream ``r_i``
(value head per product, :class:`~coordopt.rl.networks.Critic`), the recommendation actor's
slate for segment k by that of ``r_k`` (value head per segment); GAE runs on every stream
at once (:func:`coordopt.rl.rollout.gae` works on ``(T, B, ...)`` tensors, no loop over
products or segments). PPO's clipped loss of an env-period is the sum of its decisions'
(:func:`coordopt.rl.ppo.ppo_update`): at ratio 1 its gradient ``sum_i A_ti grad log pi_i``
has the scale of the joint one, ``A_t sum_i grad log pi_i``, so the entropy and imitation
weights keep their meaning.
"""

from __future__ import annotations

import torch

from coordopt import economics
from coordopt.simulator import SimParams, StepResult, choice_terms, period_flows

Tensor = torch.Tensor

PRODUCTS = "products"
SEGMENTS = "segments"
STREAMS = (PRODUCTS, SEGMENTS)
"""The per-decision reward streams (and value heads), ``(..., N)`` and ``(..., M)``."""
STREAM_OF = {"replenishment": PRODUCTS, "recommendation": SEGMENTS}
"""The stream whose advantage scores each actor's decisions."""


def product_profits(res: StepResult, t: int, params: SimParams) -> Tensor:
    """Each product's money in period ``t``, ``(B, N)``: the signed sum of its terms
    (:func:`coordopt.economics.product_term_values` on the step's flows); the sum over
    products is ``res.reward``."""
    flows = period_flows(res.orders, res.sales, res.lost, res.available - res.sales, t, params)
    values = economics.product_term_values(flows, params.money, zero=torch.zeros_like(res.sales))
    return economics.profit(values)


def segment_rates(available: Tensor, slates: Tensor, params: SimParams, t: int) -> Tensor:
    """Expected demand of every segment for every product in period ``t``,
    ``d_ki = lambda_kt P_ki(S_k)``, ``(B, M, N)``: the terms whose sum over segments is
    :func:`coordopt.simulator.demand_rates`, from the same coefficients
    (:func:`coordopt.simulator.choice_terms`; hidden mode: products without stock weigh 0).
    A slate's products are distinct; its ``-1`` slots add nothing."""
    coef, uplift, in_stock = choice_terms(available, slates, params, t)
    b, m, _ = slates.shape
    weights = params.base_attraction.expand(b, m, -1)  # (B, M, N)
    weights = weights * in_stock.unsqueeze(1) if in_stock is not None else weights.clone()
    weights.scatter_add_(2, slates.clamp(min=0), uplift)
    return weights * coef.unsqueeze(-1)


def segment_profits(
    product_profit: Tensor, available: Tensor, slates: Tensor, params: SimParams, t: int
) -> Tensor:
    """Each segment's share of the period's profit, ``(B, M)``: every product's money
    ``product_profit (B, N)`` split in proportion to the segments' expected demand for it
    (:func:`segment_rates`), equally where no segment demands it; sums to the profit over
    segments."""
    rates = segment_rates(available, slates, params, t)
    total = rates.sum(1)  # (B, N)
    demanded = total > 0
    per_rate = torch.where(
        demanded, product_profit / total.clamp(min=torch.finfo(total.dtype).tiny), 0
    )
    undemanded = torch.where(demanded, 0, product_profit).sum(-1, keepdim=True)
    return (rates @ per_rate.unsqueeze(-1)).squeeze(-1) + undemanded / rates.shape[1]


def decision_rewards(
    res: StepResult, slates: Tensor, t: int, params: SimParams, scale: float
) -> dict[str, Tensor]:
    """The per-decision reward streams of one period, scaled like the firm's: ``products``
    ``(B, N)`` and ``segments`` ``(B, M)``, each summing to ``res.reward / scale``."""
    money = product_profits(res, t, params)
    return {
        PRODUCTS: money / scale,
        SEGMENTS: segment_profits(money, res.available, slates, params, t) / scale,
    }
