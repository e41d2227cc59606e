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
    prefix is scored (a partial PL likelihood, used to imitate experts' short slates). The
    products of a slate are distinct. Returns ``(log_prob, entropy)``, both of shape ``...``.

    One pass over the items: with ``R`` the items the slate does not draw, the items left
    at step j are ``R`` plus the drawn ``x_j, x_(j+1), ...``, so every step's normaliser is
    a log-sum-exp of ``lse(R)`` and ``K`` picked logits (a suffix ``logcumsumexp``), never a
    difference of sums (no cancellation), and no ``K`` passes over the catalog.
    """
    n = scores.shape[-1]
    logits = slate_logits(scores, stop)
    k = slates.shape[-1]
    if stop is None:  # no stop item: score the filled prefix only
        valid = (slates >= 0).long().cummin(dim=-1).values.bool()
        chosen = slates.clamp(min=0)
    else:  # -1 is the stop item; it is drawn once, the slots after it are ignored
        chosen = torch.where(slates < 0, torch.full_like(slates, n), slates)
        drawn = (chosen == n).long()
        valid = (drawn.cumsum(dim=-1) - drawn) == 0
    width = logits.shape[-1]
    drawn_idx = torch.where(valid, chosen, torch.full_like(chosen, width))  # width: a dump slot
    taken = torch.zeros((*logits.shape[:-1], width + 1), dtype=torch.bool, device=logits.device)
    taken = taken.scatter(-1, drawn_idx, True)[..., :width]
    rest = logits.masked_fill(taken, NEG)
    rest_lse = torch.logsumexp(rest, dim=-1, keepdim=True)  # (..., 1)
    picked = logits.gather(-1, chosen).masked_fill(~valid, NEG)  # (..., K)
    # denom[j] = log sum over the items left at step j = lse(picked[j:], rest_lse)
    both = torch.cat([picked, rest_lse], dim=-1)
    denom = torch.logcumsumexp(both.flip(-1), dim=-1).flip(-1)[..., :k]
    act = valid.to(logits.dtype)
    logp = ((picked - denom) * act).sum(-1)
    # entropy of step j = denom[j] - E_j[score], the mean over the items left at step j
    rest_mean = (torch.softmax(rest, dim=-1) * rest).sum(-1, keepdim=True)  # 0 weight on taken
    later = torch.ones(k, k, dtype=torch.bool, device=logits.device).triu()  # [j, m]: m >= j
    w_pick = torch.exp(picked.unsqueeze(-2) - denom.unsqueeze(-1)).masked_fill(~later, 0.0)
    mean = (w_pick * picked.unsqueeze(-2)).sum(-1) + torch.exp(rest_lse - denom) * rest_mean
    ent = ((denom - mean) * act).sum(-1)
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
