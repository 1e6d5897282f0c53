"""Restormer's gated-Dconv feed-forward network (GDFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.blocks.lora import lora_conv1x1


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN); ``ratio``/``spatial`` select LoRa project_in/out."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, ratio: float = 1.0, spatial: bool = False):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = lora_conv1x1(dim, hidden * 2, ratio, bias, spatial)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = lora_conv1x1(hidden, dim, ratio, bias, spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)
