"""Cross-scale feature fusion at decoder skips."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CSFF(nn.Module):
    """Cross-Scale Feature Fusion at a decoder skip: per-channel softmax weights over the two sources
    (decoder, encoder) from their pooled descriptors (SK-style), weighted sum, then a refinement conv
    (depthwise 3x3 + 1x1 to ``c_out``). Replaces concat + 1x1 reduce."""

    def __init__(self, dim: int, c_out: int, reduction: int = 8, bias: bool = False):
        super().__init__()
        hidden = max(8, dim // reduction)
        self.squeeze = nn.Linear(dim, hidden)
        self.select = nn.Linear(hidden, 2 * dim)
        self.refine_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.refine_pw = nn.Conv2d(dim, c_out, 1, bias=bias)

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        b, c = dec.shape[:2]
        s = (dec + enc).mean(dim=(2, 3))
        w = torch.softmax(self.select(F.gelu(self.squeeze(s))).view(b, 2, c), dim=1)
        fused = dec * w[:, 0].view(b, c, 1, 1).to(dec.dtype) + enc * w[:, 1].view(b, c, 1, 1).to(enc.dtype)
        return self.refine_pw(self.refine_dw(fused))
