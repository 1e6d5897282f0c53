"""Low-rank (LoRa) 1x1 convolutions."""

from __future__ import annotations

import torch
from torch import nn


def lora_rank(c_in: int, c_out: int, ratio: float) -> int:
    """Rank of a LoRa conv: ``max(1, round(ratio * min(c_in, c_out)))``."""
    return max(1, round(ratio * min(c_in, c_out)))


class LowRankConv2d(nn.Module):
    """A 1x1 conv factored as ``c_in -> rank -> c_out`` (``down`` then ``up``)."""

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.down = nn.Conv2d(c_in, rank, 1, bias=False)
        self.up = nn.Conv2d(rank, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class SpatialLoRaConv2d(nn.Module):
    """Spatial-aware LoRa conv: down to ``rank``, add a 3x3 and a dilated 3x3 depthwise branch in the latent
    space, modulate by a global-context scale (pooled -> bottleneck MLP -> sigmoid), project up to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.down = nn.Conv2d(c_in, rank, 1, bias=False)
        self.local = nn.Conv2d(rank, rank, 3, padding=1, groups=rank, bias=False)
        self.dilated = nn.Conv2d(rank, rank, 3, padding=2, dilation=2, groups=rank, bias=False)
        hidden = max(4, rank // 16)
        self.context = nn.Sequential(nn.Conv2d(rank, hidden, 1), nn.GELU(), nn.Conv2d(hidden, rank, 1))
        self.up = nn.Conv2d(rank, c_out, 1, bias=bias)
        nn.init.zeros_(self.local.weight)  # starts as a plain low-rank conv (x 0.5 context scale)
        nn.init.zeros_(self.dilated.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.down(x)
        z = z + self.local(z) + self.dilated(z)
        scale = torch.sigmoid(self.context(z.mean(dim=(2, 3), keepdim=True)))
        return self.up(z * scale)


def lora_conv1x1(c_in: int, c_out: int, ratio: float = 1.0, bias: bool = False, spatial: bool = False) -> nn.Module:
    """A 1x1 conv ``c_in -> c_out``: plain ``nn.Conv2d`` at ratio 1.0 (official names), else a low-rank pair
    (``LowRankConv2d``), or ``SpatialLoRaConv2d`` when ``spatial`` (at any ratio)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"LoRa ratio={ratio} must be in (0, 1]")
    if spatial:
        return SpatialLoRaConv2d(c_in, c_out, lora_rank(c_in, c_out, ratio), bias)
    if ratio >= 1.0:
        return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)
    return LowRankConv2d(c_in, c_out, lora_rank(c_in, c_out, ratio), bias)
