"""Restormer's gated-Dconv feed-forward network (GDFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from aio.models.blocks.lora import DENSE, LoRaPlan


def _dense_half(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z.chunk(2, dim=1)`` with the first half made dense in ``z``'s layout.

    In channels_last a channel half is a strided view, and torch's CPU GELU (forward and backward) falls back
    from its vectorised kernel to a scalar loop on it: ~5x slower forward, ~10x backward at 128x128, and
    ulp-different values. A dense copy costs less than either and gives the values of the official NCHW
    layout's (dense) halves.
    """
    z1, z2 = z.chunk(2, dim=1)
    if z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous():
        z1 = z1.contiguous(memory_format=torch.channels_last)
    return z1, z2


class _GeluGate(torch.autograd.Function):
    """``gelu(z1) * z2`` for ``z1, z2 = z.chunk(2, dim=1)``, with the gradient written into one buffer.

    The same kernels as autograd's ``chunk -> gelu -> mul`` on the halves of :func:`_dense_half` (``grad * z2``
    then ``gelu_backward``, and ``grad * gelu(z1)``), so values and gradients are bitwise that expression's;
    what it saves is the ``SplitBackward`` concatenation of the two half gradients (a full-size copy per
    block, strided in the channels_last layout) and two temporaries.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        z1, z2 = _dense_half(z)
        g = F.gelu(z1)
        ctx.save_for_backward(z, z1, g)
        return g * z2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        z, z1, g = ctx.saved_tensors
        z2 = z.chunk(2, dim=1)[1]
        grad_z = torch.empty_like(z)  # keeps z's memory format
        grad_z1, grad_z2 = grad_z.chunk(2, dim=1)
        grad_z1.copy_(torch.ops.aten.gelu_backward(grad * z2, z1))  # dense operands: the vectorised kernel
        torch.mul(grad, g, out=grad_z2)
        return grad_z


def gelu_gate(z: torch.Tensor) -> torch.Tensor:
    """GDFN's gate ``gelu(z1) * z2`` over the two channel halves of ``z`` (see :class:`_GeluGate`).

    Under ``torch.compile`` the plain expression is traced instead: inductor fuses it itself (and cannot lower
    the Function's strided ``out=`` writes with symbolic shapes).
    """
    if torch.compiler.is_compiling():
        z1, z2 = z.chunk(2, dim=1)
        return F.gelu(z1) * z2
    if torch.is_grad_enabled() and z.requires_grad:
        return _GeluGate.apply(z)
    z1, z2 = _dense_half(z)
    return F.gelu(z1) * z2


class FeedForward(nn.Module):
    """GDFN: 1x1 ``project_in`` to 2x hidden, depthwise 3x3, ``gelu(x1) * x2``, 1x1 ``project_out``; the two
    1x1 convs are built by ``lora`` (roles ``ffn.project_in`` / ``ffn.project_out``)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, lora: LoRaPlan = DENSE):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = lora.conv1x1("ffn.project_in", dim, hidden * 2, bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = lora.conv1x1("ffn.project_out", hidden, dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.project_in) is nn.Conv2d and x.is_contiguous(memory_format=torch.channels_last) \
                and not x.is_contiguous():
            return self.project_out(self._gate_by_halves(x))
        return self.project_out(gelu_gate(self.dwconv(self.project_in(x))))

    def _gate_by_halves(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(x1) * x2`` with each half computed by its own slice of ``project_in`` and ``dwconv``.

        aio's CPU layout (channels_last, see ``OverlapPatchEmbed``): a channel half of one 2x-hidden output is
        a strided view (slow GELU, a copy or a concatenation in the backward), while two half-width convs give
        two dense halves at the same FLOPs. Every output channel is the same dot product as the fused conv's,
        so the forward is bitwise the official module's order of operations per channel; only the gradient of
        ``x`` sums the two halves' contributions in another order (~1e-7).
        """
        h = self.dwconv.out_channels // 2
        w_in, b_in = self.project_in.weight, self.project_in.bias
        w_dw, b_dw = self.dwconv.weight, self.dwconv.bias
        halves = []
        for part in (slice(0, h), slice(h, 2 * h)):
            u = F.conv2d(x, w_in[part], None if b_in is None else b_in[part])
            halves.append(F.conv2d(u, w_dw[part], None if b_dw is None else b_dw[part], padding=1, groups=h))
        return F.gelu(halves[0]) * halves[1]
