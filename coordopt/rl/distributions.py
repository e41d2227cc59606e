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

from typing import Any

import torch

Tensor = torch.Tensor
NEG = -1e9


def _gumbel(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)`` (in place on one buffer)."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return u.clamp_(1e-12, 1 - 1e-7).log_().neg_().log_().neg_()


def sample_slates(
    scores: Tensor,
    stop: Tensor | None,
    k: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Tensor:
    """Plackett-Luce top-``k`` slates ``(..., k)`` (long, ``-1`` after a stop) by Gumbel-top-k.

    ``greedy`` takes the ``k`` highest scores (truncated at the stop item) instead of sampling.
    The stop item is ranked against the top ``k`` products afterwards, so the scores are never
    copied to append it.
    """
    n = scores.shape[-1]
    keys = scores if greedy else scores + _gumbel(scores.shape, scores, generator)
    top = keys.topk(min(k, n), dim=-1)
    idx = top.indices
    if k > n:
        idx = torch.cat([idx, idx.new_full((*idx.shape[:-1], k - n), -1)], dim=-1)
    if stop is None:
        return idx
    stop_key = stop if greedy else stop + _gumbel(stop.shape, stop, generator)
    ahead = (top.values > stop_key.unsqueeze(-1)).sum(-1, keepdim=True)  # products before stop
    slot = torch.arange(k, device=idx.device)
    return torch.where(slot < ahead, idx, torch.full_like(idx, -1))


def _rest_exp(x: Tensor, removed: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``exp(x - shift)`` with the removed items at 0, the shift and the sum, ``(..., n)``.

    The shift is the maximum over all items (one reading pass, no masked copy of ``x``); where
    the items left hold less than ``e^-69`` of it (a removed item dominates by more than 69
    nats) those rows are redone with the maximum over the items left, so ``exp`` never
    underflows the sum: the result is that of the masked computation in every case.
    """
    shift = x.amax(-1, keepdim=True)
    inf = torch.full(removed.shape, torch.inf, dtype=x.dtype, device=x.device)
    off = torch.where(keep, torch.zeros_like(inf), inf)
    e = (x - shift).exp_().scatter_reduce_(-1, removed, off, reduce="amin")
    z = e.sum(-1, keepdim=True)
    low = (z < 1e-30).squeeze(-1)
    if bool(low.any()):
        masked = x[low].scatter_reduce(
            -1, removed[low], torch.where(keep[low], -inf[low], inf[low]), reduce="amin"
        )
        s_low = masked.amax(-1, keepdim=True).clamp(min=torch.finfo(x.dtype).min)
        shift[low] = s_low
        e[low] = masked.sub_(s_low).exp_()
        z[low] = e[low].sum(-1, keepdim=True)
    return e, shift, z.clamp(min=torch.finfo(x.dtype).tiny)


class _SlateTerms(torch.autograd.Function):
    """The catalog-wide terms of a Plackett-Luce slate, in one pass over ``x (..., n)``: the
    log-sum-exp and the softmax-weighted mean of the items not removed, and the ``K`` picked
    values ``x[removed]``.

    ``removed (..., K)`` indexes the slate's items; those where ``keep`` is true are left out
    of the sums. Backward: one dense gradient ``p_r (g_lse + g_mean (1 + x_r - mean))``
    (``p`` the softmax of the items left) with the picked values' gradients added at their
    ``K`` positions, instead of a dense zero-filled gather gradient accumulated onto it.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, removed: Tensor, keep: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        e, shift, z = _rest_exp(x, removed, keep)
        mean = torch.linalg.vecdot(e, x).unsqueeze(-1) / z
        ctx.save_for_backward(x, e, z, mean, removed)
        return (shift + z.log()).squeeze(-1), mean.squeeze(-1), x.gather(-1, removed)

    @staticmethod
    def backward(
        ctx: Any, g_lse: Tensor, g_mean: Tensor, g_picked: Tensor
    ) -> tuple[Tensor, None, None]:
        x, e, z, mean, removed = ctx.saved_tensors
        gm = g_mean.unsqueeze(-1) / z
        c0 = g_lse.unsqueeze(-1) / z + gm * (1 - mean)
        grad = torch.addcmul(c0, gm, x).mul_(e)
        return grad.scatter_add_(-1, removed, g_picked), None, None


def slate_log_prob(scores: Tensor, stop: Tensor | None, slates: Tensor) -> tuple[Tensor, Tensor]:
    """Exact PL log-probability of ``slates (..., K)`` and the per-step entropy sum.

    A ``-1`` slot means the stop item was drawn there; slots after the first ``-1`` are
    ignored. Without a stop item (``stop=None``) a ``-1`` ends the slate and only the filled
    prefix is scored (a partial PL likelihood, used to imitate experts' short slates). The
    products of a slate are distinct. Returns ``(log_prob, entropy)``, both of shape ``...``.

    One pass over the catalog: with ``R`` the items the slate does not draw, the items left
    at step j are ``R`` plus the drawn ``x_j, x_(j+1), ...``, so every step's normaliser is
    a log-sum-exp of ``lse(R)`` and ``K`` picked logits (a suffix ``logcumsumexp``), never a
    difference of sums (no cancellation), and never ``K`` passes over the catalog. The
    entropy of step j is its normaliser minus the mean logit of the items left, from the
    softmax-weighted mean over ``R`` (:class:`_SlateTerms`) and the picked logits.
    """
    k = slates.shape[-1]
    if stop is None:  # no stop item: score the filled prefix only
        is_stop = torch.zeros_like(slates, dtype=torch.bool)
        valid = (slates >= 0).long().cummin(dim=-1).values.bool()
    else:  # -1 is the stop item; it is drawn once, the slots after it are ignored
        is_stop = slates < 0
        drawn = is_stop.long()
        valid = (drawn.cumsum(dim=-1) - drawn) == 0
    products = slates.clamp(min=0)
    rest_lse, rest_mean, picked = _SlateTerms.apply(scores, products, valid & ~is_stop)
    if stop is not None:  # the stop item is drawn, or it stays among the items left
        picked = torch.where(is_stop, stop.unsqueeze(-1), picked)
        with_stop = torch.logaddexp(rest_lse, stop)
        mean_with_stop = (
            torch.exp(rest_lse - with_stop) * rest_mean + torch.exp(stop - with_stop) * stop
        )
        stopped = (is_stop & valid).any(-1)
        rest_lse = torch.where(stopped, rest_lse, with_stop)
        rest_mean = torch.where(stopped, rest_mean, mean_with_stop)
    picked = picked.masked_fill(~valid, NEG)  # (..., K)
    # denom[j] = log sum over the items left at step j = lse(picked[j:], rest_lse)
    both = torch.cat([picked, rest_lse.unsqueeze(-1)], dim=-1)
    denom = torch.logcumsumexp(both.flip(-1), dim=-1).flip(-1)[..., :k]
    act = valid.to(scores.dtype)
    logp = ((picked - denom) * act).sum(-1)
    later = torch.ones(k, k, dtype=torch.bool, device=scores.device).triu()  # [j, m]: m >= j
    # masked before exp: an earlier pick may exceed a later normaliser by > 88 nats, and
    # exp's backward (grad * inf at a zeroed entry) would then be NaN
    w_pick = torch.exp((picked.unsqueeze(-2) - denom.unsqueeze(-1)).masked_fill(~later, NEG))
    mean = (w_pick * picked.unsqueeze(-2)).sum(-1) + torch.exp(
        rest_lse.unsqueeze(-1) - denom
    ) * rest_mean.unsqueeze(-1)
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
