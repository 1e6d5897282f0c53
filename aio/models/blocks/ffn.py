"""Restormer's gated-Dconv feed-forward network (GDFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.blocks.lora import DENSE, LoRaPlan


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
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)
