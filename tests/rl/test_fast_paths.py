"""The fused linear + tanh layers of the agents equal their plain reference computations."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from coordopt.rl.layers import _LinearTanh, broadcast_mlp, linear_tanh, mlp, tanh


def test_fused_linear_tanh_layers_equal_linear_then_tanh() -> None:
    """``linear_tanh`` (doubled weights, sigmoid in place), the fused ``MLP`` and the split
    first layer of ``broadcast_mlp``: values and gradients of inputs, weights, biases and the
    broadcast shared part equal ``torch.tanh(F.linear(...))`` (float64 gradcheck)."""
    torch.manual_seed(0)
    layer = nn.Linear(5, 4).double()
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        _LinearTanh.apply,
        (x, layer.weight, layer.bias, shift),
    )
    assert torch.allclose(
        linear_tanh(x, layer, shift), torch.tanh(F.linear(x, layer.weight, layer.bias) + shift)
    )
    assert torch.autograd.gradcheck(tanh, (x,))
    net = mlp([5, 4, 4, 2], last_act=False).double()
    plain = nn.Sequential(*list(net))  # the same layers, unfused (Tanh modules)
    shared = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    head = mlp([11, 4, 2]).double()

    def reference_head(items: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([items, shared.unsqueeze(-2).expand(*items.shape[:-1], -1)], -1)
        return nn.Sequential(*list(head))(cat)

    for got, want, inputs in [
        (net(x), plain(x), [x, *net.parameters()]),
        (
            broadcast_mlp(head, x, shared),
            reference_head(x, shared),
            [x, shared, *head.parameters()],
        ),
    ]:
        assert torch.allclose(got, want, atol=1e-12)
        w = torch.randn_like(got)
        for g, r in zip(
            torch.autograd.grad((w * got).sum(), inputs),
            torch.autograd.grad((w * want).sum(), inputs),
            strict=True,
        ):
            assert torch.allclose(g, r, atol=1e-12)
