"""Restormer's channel LayerNorms (BiasFree / WithBias, official ``body`` names) and NAFNet's LayerNorm2d."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm over the last dim without mean subtraction or bias (Restormer's ``BiasFree``)."""

    def __init__(self, normalized_shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        var = x32.var(-1, keepdim=True, unbiased=False)
        return (x32 * torch.rsqrt(var + 1e-5) * self.weight.float()).to(x.dtype)


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the last dim (eps 1e-5), Restormer's ``WithBias``."""

    def __init__(self, normalized_shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class LayerNorm(nn.Module):
    """Channel LayerNorm of a ``[B, C, H, W]`` tensor, official names (``body.weight``/``body.bias``)."""

    def __init__(self, dim: int, layernorm_type: str = "WithBias"):
        super().__init__()
        if layernorm_type == "BiasFree":
            self.body = BiasFreeLayerNorm(dim)
        elif layernorm_type == "WithBias":
            self.body = WithBiasLayerNorm(dim)
        else:
            raise ValueError(f"LayerNorm_type={layernorm_type!r}; valid: BiasFree, WithBias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """NAFNet's channel LayerNorm (eps 1e-6) computed in channels-first layout."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)
