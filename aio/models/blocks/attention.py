"""Restormer's multi-Dconv head transposed attention (MDTA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.blocks.lora import lora_conv1x1


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention across channels, linear in H*W."""

    def __init__(self, dim: int, num_heads: int, bias: bool, ratio: float = 1.0, spatial: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = lora_conv1x1(dim, dim * 3, ratio, bias, spatial)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = lora_conv1x1(dim, dim, ratio, bias, spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attn.to(v.dtype) @ v).reshape(b, c, h, w)
        return self.project_out(out)
