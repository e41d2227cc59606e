"""Action distributions of the two agents, with exact log-probabilities.

Orders: a categorical per product over ``G`` bins, bin ``g`` meaning an order of
``g * step_i`` units (``step_i`` from the demand scale, so the same head serves products of
any size); bins above ``max_order`` are masked. Orders are integers and their
log-probability is exact.

Slates: Plackett-Luce over the products plus an optional *stop* item (index ``N``). A slate
is the ordered draw of up to ``K`` products without replacement; drawing *stop* ends it
early (the remaining slots are ``-1``). Its probability is the sequential PL product
``prod_j exp(s_{x_j}) / sum_{r in remaining_j} exp(s_r)``. Sampling uses Gumbel-top-k, which
has exactly this law. The entropy returned is the per-step conditional entropy summed over
the sampled prefix: by the chain rule its expectation is the exact slate entropy, so it is
an unbiased (single-sample) estimator that costs ``O(K N)`` instead of ``O(N^K)``.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
NEG = -1e9


def slate_logits(scores: Tensor, stop: Tensor | None) -> Tensor:
    """Item logits ``(..., N)`` with the stop logit appended as item ``N`` when given."""
    if stop is None:
        return scores
    return torch.cat([scores, stop.unsqueeze(-1)], dim=-1)


def _truncate_at_stop(idx: Tensor, n_products: int) -> Tensor:
    """Replace the stop item and everything after it with ``-1``."""
    stopped = (idx == n_products).long().cummax(dim=-1).values.bool()
    return torch.where(stopped, torch.full_like(idx, -1), idx)


def sample_slates(
    scores: Tensor,
    stop: Tensor | None,
    k: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Tensor:
    """Plackett-Luce top-``k`` slates ``(..., k)`` (long, ``-1`` after a stop) by Gumbel-top-k.

    ``greedy`` takes the ``k`` highest scores (truncated at the stop item) instead of sampling.
    """
    n = scores.shape[-1]
    logits = slate_logits(scores, stop)
    if not greedy:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        logits = logits - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))
    idx = logits.topk(k, dim=-1).indices
    return _truncate_at_stop(idx, n) if stop is not None else idx


def slate_log_prob(scores: Tensor, stop: Tensor | None, slates: Tensor) -> tuple[Tensor, Tensor]:
    """Exact PL log-probability of ``slates (..., K)`` and the per-step entropy sum.

    A ``-1`` slot means the stop item was drawn there; slots after the first ``-1`` are
    ignored. Without a stop item (``stop=None``) a ``-1`` ends the slate and only the filled
    prefix is scored (a partial PL likelihood, used to imitate experts' short slates). Returns ``(log_prob, entropy)``, both of shape ``...``.
    """
    n = scores.shape[-1]
    logits = slate_logits(scores, stop)
    removed = torch.zeros_like(logits, dtype=torch.bool)
    logp = torch.zeros(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    ent = torch.zeros_like(logp)
    active = torch.ones_like(logp, dtype=torch.bool)
    for j in range(slates.shape[-1]):
        masked = logits.masked_fill(removed, NEG)
        logsm = torch.log_softmax(masked, dim=-1)
        probs = logsm.exp().masked_fill(removed, 0.0)
        step_ent = -(probs * logsm.masked_fill(removed, 0.0)).sum(-1)
        chosen = slates[..., j]
        if stop is None:
            active = active & (chosen >= 0)  # no stop item: score the filled prefix only
            chosen = chosen.clamp(min=0)
        else:
            chosen = torch.where(chosen < 0, torch.full_like(chosen, n), chosen)
        act = active.to(logits.dtype)
        logp = logp + act * logsm.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
        ent = ent + act * step_ent
        removed = removed.scatter(-1, chosen.unsqueeze(-1), True)
        active = active & (chosen != n)
    return logp, ent


def order_bins(expert_orders: Tensor, step: Tensor, n_valid: Tensor) -> Tensor:
    """The bin ``round(q / step)`` of each order, clamped to the valid bins, ``(..., N)`` long."""
    b = torch.round(expert_orders / step)
    return torch.minimum(b.clamp(min=0), (n_valid - 1).to(b.dtype)).long()


def masked_order_logits(logits: Tensor, valid: Tensor) -> Tensor:
    """Logits ``(..., N, G)`` with the bins above ``max_order`` removed."""
    return logits.masked_fill(~valid, NEG)


def order_log_prob(logits: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """Per-product log-probability of ``bins (..., N)`` and entropy, both ``(..., N)``."""
    logsm = torch.log_softmax(logits, dim=-1)
    probs = logsm.exp()
    ent = -(probs * logsm).sum(-1)
    return logsm.gather(-1, bins.unsqueeze(-1)).squeeze(-1), ent


def sample_order_bins(
    logits: Tensor, generator: torch.Generator | None = None, greedy: bool = False
) -> Tensor:
    """A bin per product (Gumbel-max sample, or argmax when ``greedy``), ``(..., N)`` long."""
    if greedy:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (logits - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))).argmax(-1)
