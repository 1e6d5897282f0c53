"""Gates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


GATES = ("none", "elementwise", "channel")


class ElementwiseGate(nn.Module):
    """``sigmoid(g(x)) * f(x)`` with ``g`` a depthwise 3x3 conv of the branch input ``x``."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.g(x)) * fx


class ChannelGate(nn.Module):
    """Squeeze-excitation on the branch output: ``f(x) * sigmoid(W2 relu(W1 pool(f(x))))`` (reduction 16)."""

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        hidden = max(4, dim // reduction)
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=True)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        s = fx.mean(dim=(2, 3), keepdim=True)
        return fx * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


def make_gate(kind: str, dim: int) -> nn.Module | None:
    """The gate module for ``kind`` (``none`` gives None: the plain residual ``x + f(x)``)."""
    if kind == "none":
        return None
    if kind == "elementwise":
        return ElementwiseGate(dim)
    if kind == "channel":
        return ChannelGate(dim)
    raise ValueError(f"gate={kind!r}; valid: {', '.join(GATES)}")
