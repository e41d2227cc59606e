"""Fused autograd layers of the agents' networks: the same functions as ``torch.tanh`` and
``Linear`` then ``Tanh``, with fewer passes over the activations (they dominate the agents'
time at catalog scale), and the tanh MLP built from them.

- :func:`tanh` and :func:`linear_tanh`: ``tanh(x) = 2 sigmoid(2x) - 1`` computed in place.
- :class:`MLP` / :func:`mlp`: ``Linear``/``Tanh`` stacks whose pairs run fused, with the
  parameters and names of the plain ``nn.Sequential``.
- :func:`broadcast_mlp`: an MLP on ``[items, shared]`` without building the concatenation.
- :func:`unroll`: a GRU cell run over a sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor

_MINUS_ONE = torch.tensor(-1.0)


def _tanh_from_doubled(z: Tensor) -> Tensor:
    """``tanh(z / 2) = 2 sigmoid(z) - 1`` in place on ``z`` (two passes, no allocation)."""
    return torch.add(_MINUS_ONE.to(z.dtype), z.sigmoid_(), alpha=2, out=z)


class _Tanh(torch.autograd.Function):
    """``tanh(x) = 2 sigmoid(2x) - 1``: the same function, several times faster than
    ``torch.tanh`` forward and backward on CPU (torch 2.x vectorises sigmoid, not tanh)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = _tanh_from_doubled(x * 2)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class _LinearTanh(torch.autograd.Function):
    """``tanh(x W^T + b + shift)`` as one operation: the weights are doubled (exact in binary
    floating point) so the matmul's own output becomes ``2 sigmoid(.) - 1`` in place, and the
    backward is the linear layer's matmuls after one ``tanh_backward`` pass. The same function
    as ``Linear`` then ``Tanh``, with four fewer passes over (and two fewer allocations of) the
    ``rows x hidden`` activation, which dominate the agents' time at catalog scale.

    ``shift (..., 1, H)`` (or ``None``) is added to every item of ``x (..., n, F)``: the
    per-batch part of a layer whose input concatenates item and shared features.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, shift: Tensor | None
    ) -> Tensor:
        z = F.linear(x, weight * 2, None if bias is None else bias * 2)
        if shift is not None:  # in place unless shift broadcasts z to more rows
            grows = torch.broadcast_shapes(z.shape, shift.shape) != z.shape
            z = z.add(shift, alpha=2) if grows else z.add_(shift, alpha=2)
        y = _tanh_from_doubled(z)
        ctx.save_for_backward(x, weight, y)
        ctx.has_bias, ctx.shift_shape = bias is not None, None if shift is None else shift.shape
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        gz = torch.ops.aten.tanh_backward(grad, y)
        rows = gz.reshape(-1, gz.shape[-1])
        gx = gw = gb = gs = None
        if ctx.needs_input_grad[0]:
            gx = (gz @ weight).sum_to_size(x.shape)
        if ctx.needs_input_grad[1]:
            gw = rows.t() @ x.expand(*gz.shape[:-1], x.shape[-1]).reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = rows.sum(0)
        if ctx.shift_shape is not None and ctx.needs_input_grad[3]:
            gs = gz.sum_to_size(ctx.shift_shape)
        return gx, gw, gb, gs


def linear_tanh(x: Tensor, layer: nn.Linear, shift: Tensor | None = None) -> Tensor:
    """``tanh(layer(x) + shift)`` (see :class:`_LinearTanh`)."""
    return _LinearTanh.apply(x, layer.weight, layer.bias, shift)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent (see :class:`_Tanh`)."""
    return _Tanh.apply(x)


class Tanh(nn.Module):
    """:func:`tanh` as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


class MLP(nn.Sequential):
    """``Linear``/``Tanh`` layers whose pairs run fused (:func:`linear_tanh`); the parameters and
    their names are those of the plain ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            fused = i + 1 < len(layers) and isinstance(layers[i + 1], Tanh)
            if fused and isinstance(layer, nn.Linear):
                x, i = linear_tanh(x, layer), i + 2
            else:
                x, i = layer(x), i + 1
        return x


def mlp(sizes: list[int], last_act: bool = False) -> MLP:
    """A tanh MLP (tanh keeps PPO's updates tame)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(Tanh())
    return MLP(*layers)


def broadcast_mlp(net: MLP, items: Tensor, shared: Tensor) -> Tensor:
    """``net(cat([items, shared], -1))`` with ``shared (..., S)`` the same for every item of
    ``items (..., n, F)``, without building the concatenation: the first layer's weight is
    split, so the shared part costs one row per batch instead of one per item."""
    first, act = net[0], net[1]
    assert isinstance(first, nn.Linear) and isinstance(act, Tanh)
    f = items.shape[-1]
    shift = F.linear(shared, first.weight[:, f:], first.bias).unsqueeze(-2)
    return net[2:](_LinearTanh.apply(items, first.weight[:, :f], None, shift))


def unroll(gru: nn.GRUCell, inputs: Tensor, h: Tensor) -> Tensor:
    """The memories ``(T, B, H)`` after each period of a GRU fed ``inputs (T, B, I)`` from ``h``."""
    out = []
    for x in inputs:
        h = gru(x, h)
        out.append(h)
    return torch.stack(out)
