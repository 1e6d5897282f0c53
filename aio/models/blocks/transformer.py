"""The Restormer transformer block and a stage of them."""

from __future__ import annotations

import torch
from torch import nn

from aio.models.blocks.attention import Attention
from aio.models.blocks.dfrg import DFRG
from aio.models.blocks.ffn import FeedForward
from aio.models.blocks.gates import make_gate
from aio.models.blocks.norm import LayerNorm


class TransformerBlock(nn.Module):
    """Restormer block ``x + attn(norm1(x))``, ``x + ffn(norm2(x))`` with optional branch gates and DFRG."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 (official spelling)
        gate: str = "none",
        ffn_ratio: float = 1.0,
        attn_ratio: float = 1.0,
        spatial_lora: bool = False,
        dfrg_experts: int = 0,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias, attn_ratio, spatial_lora)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias, ffn_ratio, spatial_lora)
        gate1, gate2 = make_gate(gate, dim), make_gate(gate, dim)
        if gate1 is not None:
            self.gate1, self.gate2 = gate1, gate2
        if dfrg_experts > 0:
            self.dfrg = DFRG(dim, dfrg_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.attn(self.norm1(x))
        x = x + (self.gate1(x, f) if hasattr(self, "gate1") else f)
        f = self.ffn(self.norm2(x))
        x = x + (self.gate2(x, f) if hasattr(self, "gate2") else f)
        if hasattr(self, "dfrg"):
            x = self.dfrg(x)
        return x


def transformer_stage(n: int, dim: int, heads: int, **block_kw) -> nn.Sequential:
    """``n`` TransformerBlocks in an ``nn.Sequential`` (official ``encoder_levelX`` layout)."""
    return nn.Sequential(*[TransformerBlock(dim, heads, **block_kw) for _ in range(n)])
