"""Dynamic Feature Refinement Gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DFRG(nn.Module):
    """Dynamic Feature Refinement Gate: ``y + CA(y) * SA(y) * sum_k w_k E_k(y)``.

    - CA: ECA-style channel attention (1-D conv, k=3, over the pooled channel vector, sigmoid);
    - SA: spatial attention (3x3 conv of the channel mean and max maps, sigmoid);
    - experts E_k: K per-channel (depthwise) 1x1 convs, mixed by softmax routing weights ``w`` predicted by
      a linear router from the pooled features (averaged in groups to at most 16 values).
    At dim 48 this is 282 parameters for K=4, under 1% of a Restormer block. The routing logits of the last
    forward are kept in ``last_logits`` (for the routing loss and metrics); they are not copied or saved.
    """

    def __init__(self, dim: int, experts: int = 4, route_dim: int = 16):
        super().__init__()
        self.experts = experts
        self.route_dim = min(dim, route_dim)
        self.channel_conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.spatial_conv = nn.Conv2d(2, 1, 3, padding=1, bias=True)
        self.router = nn.Linear(self.route_dim, experts)
        self.expert_weight = nn.Parameter(torch.randn(experts, dim) * 0.02)
        self.last_logits: torch.Tensor | None = None

    def __getstate__(self):  # deepcopy/pickle (e.g. EMA copies) must not carry the autograd graph
        state = super().__getstate__()
        state["last_logits"] = None
        return state

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b, c = y.shape[:2]
        pooled = y.float().mean(dim=(2, 3))  # [B, C]
        ca = torch.sigmoid(self.channel_conv(pooled.unsqueeze(1))).view(b, c, 1, 1)
        sa_in = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)
        sa = torch.sigmoid(self.spatial_conv(sa_in))
        logits = self.router(F.adaptive_avg_pool1d(pooled.unsqueeze(1), self.route_dim).squeeze(1))
        self.last_logits = logits
        mixed = torch.softmax(logits, dim=-1) @ self.expert_weight  # [B, C]: sum_k w_k * E_k
        return y + (ca * sa * y * mixed.view(b, c, 1, 1)).to(y.dtype)
