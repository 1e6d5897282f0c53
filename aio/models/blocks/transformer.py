"""The Restormer transformer block (optionally the seed-000 reference's gated / DFRG / gamma variants) and a
stage of them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from aio.models.blocks.attention import Attention
from aio.models.blocks.ffn import FeedForward
from aio.models.blocks.lora import DENSE, LoRaPlan
from aio.models.blocks.norm import LayerNorm


class TransformerBlock(nn.Module):
    """``x + g1 * attn(norm1(x))``, ``x + g2 * ffn(norm2(x))``.

    ``gamma`` adds the learnable residual scales ``gamma1``/``gamma2`` (init 1) of the reference's
    ``EnhancedTransformerBlock``; without it ``g1 = g2 = 1`` (official Restormer, ``GatedTransformerBlock``).
    ``gate``, ``lora`` and ``dfrg`` are passed to :class:`Attention` (``lora`` also to :class:`FeedForward`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 (official spelling)
        gate: str = "none",
        lora: LoRaPlan = DENSE,
        dfrg: Mapping | None = None,
        gamma: bool = False,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias, gate, lora, dfrg)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias, lora)
        if gamma:
            self.gamma1 = nn.Parameter(torch.ones(1))
            self.gamma2 = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "gamma1"):
            x = x + self.gamma1 * self.attn(self.norm1(x))
            return x + self.gamma2 * self.ffn(self.norm2(x))
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def transformer_stage(n: int, dim: int, heads: int, **block_kw) -> nn.Sequential:
    """``n`` TransformerBlocks in an ``nn.Sequential`` (official ``encoder_levelX`` layout)."""
    return nn.Sequential(*[TransformerBlock(dim, heads, **block_kw) for _ in range(n)])
