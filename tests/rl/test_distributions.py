"""Plackett-Luce slates and order bins: exact probabilities, sampling law, greedy choice."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from coordopt.rl import distributions as D


def all_slates(n: int, k: int, short: bool) -> list[tuple[int, ...]]:
    """Every slate: ordered K-tuples of distinct products, plus (with a stop item) every
    shorter ordered prefix padded with -1."""
    out = [p for p in itertools.permutations(range(n), k)]
    if short:
        for j in range(k):
            out += [p + (-1,) * (k - j) for p in itertools.permutations(range(n), j)]
    return out


@pytest.mark.parametrize("short", [False, True])
def test_slate_probabilities_sum_to_one_and_match_sampling(short: bool) -> None:
    torch.manual_seed(0)
    n, k = 4, 2
    scores = torch.tensor([0.3, -0.5, 1.2, 0.0], dtype=torch.float64)
    stop = torch.tensor(0.4, dtype=torch.float64) if short else None
    slates = torch.tensor(all_slates(n, k, short))
    logp, ent = D.slate_log_prob(
        scores.expand(len(slates), n), None if stop is None else stop.expand(len(slates)), slates
    )
    probs = logp.exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    # exact entropy by enumeration equals the expectation of the per-step estimator
    exact_entropy = float(-(probs * logp).sum())
    assert float((probs * ent).sum()) == pytest.approx(exact_entropy, rel=1e-10)
    # sampling frequencies (Gumbel-top-k) match the sequential PL probabilities
    draws = 200_000
    gen = torch.Generator().manual_seed(1)
    sample = D.sample_slates(
        scores.expand(draws, n), None if stop is None else stop.expand(draws), k, generator=gen
    )
    index = {s: i for i, s in enumerate(map(tuple, slates.tolist()))}
    counts = torch.zeros(len(slates))
    for row, c in zip(*torch.unique(sample, dim=0, return_counts=True), strict=True):
        counts[index[tuple(row.tolist())]] = float(c)
    assert counts.sum() == draws  # every sample is a valid slate of the enumeration
    expected = probs.float() * draws
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = len(slates) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)  # far beyond the 99.9% quantile would fail


def test_hand_computed_slate_probability() -> None:
    scores = torch.tensor([math.log(1.0), math.log(2.0), math.log(3.0)])
    stop = torch.tensor(math.log(4.0))
    # (2, 0): 3/10 * 1/7;  (1, stop): 2/10 * 4/8
    lp, _ = D.slate_log_prob(scores.expand(2, 3), stop.expand(2), torch.tensor([[2, 0], [1, -1]]))
    assert lp.exp().tolist() == pytest.approx([3 / 10 / 7, 2 / 10 * 4 / 8], rel=1e-6)
    # without a stop item, a -1 scores only the filled prefix
    lp, _ = D.slate_log_prob(scores.expand(1, 3), None, torch.tensor([[1, -1]]))
    assert float(lp.exp()) == pytest.approx(2 / 6, rel=1e-6)


def test_greedy_slate_is_top_scores_truncated_at_stop() -> None:
    scores = torch.tensor([[0.1, 2.0, 1.0, -1.0]])
    assert D.sample_slates(scores, None, 2, greedy=True).tolist() == [[1, 2]]
    assert D.sample_slates(scores, torch.tensor([1.5]), 3, greedy=True).tolist() == [[1, -1, -1]]


def test_order_bins_log_prob_and_mask() -> None:
    logits = torch.zeros(1, 2, 5)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    masked = D.masked_order_logits(logits, valid)
    lp, ent = D.order_log_prob(masked, torch.tensor([[4, 2]]))
    assert lp.exp()[0].tolist() == pytest.approx([1 / 5, 1 / 3], rel=1e-6)
    assert ent[0].tolist() == pytest.approx([math.log(5), math.log(3)], rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    draws = D.sample_order_bins(masked.expand(1000, 2, 5), gen)
    assert int(draws[:, 1].max()) <= 2  # masked bins are never drawn
    step, n_valid = torch.tensor([2.0, 1.0]), torch.tensor([5, 3])
    assert D.order_bins(torch.tensor([[5.0, 9.0]]), step, n_valid).tolist() == [[2, 2]]


def sequential_slate_log_prob(
    scores: torch.Tensor, stop: torch.Tensor | None, slates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one masked log-softmax over the remaining items per slot (K passes)."""
    n = scores.shape[-1]
    logits = scores if stop is None else torch.cat([scores, stop.unsqueeze(-1)], dim=-1)
    removed = torch.zeros_like(logits, dtype=torch.bool)
    logp = torch.zeros(logits.shape[:-1], dtype=logits.dtype)
    ent = torch.zeros_like(logp)
    active = torch.ones_like(logp, dtype=torch.bool)
    for j in range(slates.shape[-1]):
        logsm = torch.log_softmax(logits.masked_fill(removed, D.NEG), dim=-1)
        probs = logsm.exp().masked_fill(removed, 0.0)
        step_ent = -(probs * logsm.masked_fill(removed, 0.0)).sum(-1)
        chosen = slates[..., j]
        if stop is None:
            active = active & (chosen >= 0)
            chosen = chosen.clamp(min=0)
        else:
            chosen = torch.where(chosen < 0, torch.full_like(chosen, n), chosen)
        act = active.to(logits.dtype)
        logp = logp + act * logsm.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
        ent = ent + act * step_ent
        removed = removed.scatter(-1, chosen.unsqueeze(-1), True)
        active = active & (chosen != n)
    return logp, ent


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("n", [3, 40])
def test_one_pass_slate_log_prob_equals_sequential_softmaxes(short: bool, n: int) -> None:
    """Differential: values and gradients of the one-pass PL likelihood against K softmaxes,
    on sampled slates and on slates cut short (-1) at random places, with wide score gaps."""
    gen = torch.Generator().manual_seed(n + short)
    k, rows = 3, 64
    scores = (6 * torch.randn(rows, 2, n, generator=gen, dtype=torch.float64)).requires_grad_()
    stop = torch.randn(rows, 2, generator=gen, dtype=torch.float64).requires_grad_()
    stop_in = stop if short else None
    slates = D.sample_slates(scores.detach(), None if stop_in is None else stop.detach(), k, gen)
    cut = torch.rand(rows, 2, 1, generator=gen) < 0.3
    slates = torch.where(cut & (torch.arange(k) >= 1), torch.full_like(slates, -1), slates)
    got = D.slate_log_prob(scores, stop_in, slates)
    want = sequential_slate_log_prob(scores, stop_in, slates)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-9, atol=1e-9)
    weights = torch.randn(2, rows, 2, generator=gen, dtype=torch.float64)
    inputs = [scores, stop] if short else [scores]
    grads_got = torch.autograd.grad((weights[0] * got[0] + weights[1] * got[1]).sum(), inputs)
    grads_want = torch.autograd.grad((weights[0] * want[0] + weights[1] * want[1]).sum(), inputs)
    for g, w in zip(grads_got, grads_want, strict=True):
        assert torch.allclose(g, w, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_slate_log_prob_when_a_drawn_item_dominates_by_hundreds_of_nats(dtype: torch.dtype) -> None:
    """The catalog sums are shifted by the maximum over all items; where a drawn item exceeds
    every item left by 200 nats that shift would underflow the sum of the rest, and those
    rows are redone with the maximum of the items left. A later step's normaliser is then
    ~200 nats below the earlier pick (exp overflows float32 there). Values and gradients are
    finite and equal the K-softmax reference in float64 (float32: to its rounding at 200)."""
    gen = torch.Generator().manual_seed(3)
    rows, n, k = 32, 50, 3
    scores = torch.randn(rows, n, generator=gen, dtype=torch.float64)
    slates = D.sample_slates(scores, None, k, gen)
    scores[:16].scatter_(-1, slates[:16, :1], 200.0)  # the first pick dominates in half the rows
    weights = torch.randn(2, rows, generator=gen, dtype=torch.float64)
    results = []
    for fn, dt in ((D.slate_log_prob, dtype), (sequential_slate_log_prob, torch.float64)):
        x = scores.to(dt).requires_grad_()
        lp, ent = fn(x, None, slates)
        (grad,) = torch.autograd.grad((weights[0] * lp + weights[1] * ent).sum(), x)
        results.append([lp.double(), ent.double(), grad.double()])
    tol = 5e-3 if dtype == torch.float32 else 1e-9
    for g, w in zip(*results, strict=True):
        assert torch.isfinite(g).all()
        assert torch.allclose(g, w, rtol=tol, atol=tol)
