"""Restormer's gated-Dconv feed-forward network (GDFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from aio.models.blocks.lora import DENSE, LoRaPlan


class _GeluGate(torch.autograd.Function):
    """``gelu(z1) * z2`` for ``z1, z2 = z.chunk(2, dim=1)``, with the gradient written into one buffer.

    The same kernels as autograd's ``chunk -> gelu -> mul`` (``grad * z2`` then ``gelu_backward``, and
    ``grad * gelu(z1)``), so values and gradients are bitwise the plain expression's; what it saves is the
    ``SplitBackward`` concatenation of the two half gradients (a full-size copy per block, strided in the
    channels_last layout) and two temporaries.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        z1, z2 = z.chunk(2, dim=1)
        g = F.gelu(z1)
        ctx.save_for_backward(z, g)
        return g * z2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        z, g = ctx.saved_tensors
        z1, z2 = z.chunk(2, dim=1)
        grad_z = torch.empty_like(z)  # keeps z's memory format
        grad_z1, grad_z2 = grad_z.chunk(2, dim=1)
        torch.ops.aten.gelu_backward.grad_input(grad * z2, z1, approximate="none", grad_input=grad_z1)
        torch.mul(grad, g, out=grad_z2)
        return grad_z


def gelu_gate(z: torch.Tensor) -> torch.Tensor:
    """GDFN's gate ``gelu(z1) * z2`` over the two channel halves of ``z`` (see :class:`_GeluGate`).

    Under ``torch.compile`` the plain expression is traced instead: inductor fuses it itself (and cannot lower
    the Function's strided ``out=`` writes with symbolic shapes).
    """
    if torch.is_grad_enabled() and z.requires_grad and not torch.compiler.is_compiling():
        return _GeluGate.apply(z)
    z1, z2 = z.chunk(2, dim=1)
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
        return self.project_out(gelu_gate(self.dwconv(self.project_in(x))))
