"""Cross-Scale Feature Fusion of the seed-000 reference (``CSFF`` in ``model_improved.py``).

At a decoder skip: ``merged = 1x1(concat(encoder, decoder))`` (no bias), ``refined = 3x3 -> GELU -> 3x3
(merged)`` (no biases), ``out = refined * SE(refined) + merged`` with SE = 1x1 C->C/4 -> ReLU -> 1x1 C/4->C ->
sigmoid (with biases, and — unlike a usual SE — no pooling: it is per pixel, as in the reference). The
reference resizes ``dec`` when the sizes differ; inside aio's padded networks they never do.
"""

from __future__ import annotations

import torch
from torch import nn

from aio.models.blocks.lora import DENSE, LoRaPlan


class CSFF(nn.Module):
    """The reference CSFF: ``forward(enc, dec)`` fuses ``enc`` (``enc_channels``) and ``dec`` into
    ``dec_channels``. Its 1x1 convs are built by ``lora`` (dense under the enhanced rule)."""

    def __init__(self, enc_channels: int, dec_channels: int, lora: LoRaPlan = DENSE):
        super().__init__()
        c = dec_channels
        self.conv_merge = lora.conv1x1("csff.merge", enc_channels + c, c, bias=False)
        self.conv_refine = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GELU(),
                                         nn.Conv2d(c, c, 3, padding=1, bias=False))
        self.attention = nn.Sequential(lora.conv1x1("csff.attention", c, c // 4, bias=True), nn.ReLU(),
                                       lora.conv1x1("csff.attention", c // 4, c, bias=True), nn.Sigmoid())

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        merged = self.conv_merge(torch.cat([enc, dec], dim=1))
        refined = self.conv_refine(merged)
        return refined * self.attention(refined) + merged
