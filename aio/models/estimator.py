"""ABAIR's lightweight degradation estimator: a small CNN mapping a degraded image to one logit per adapter.

Four stride-2 conv stages (3x3 conv, GELU) of ``width * (1, 2, 4, 8)`` channels, global average and max
pooling, and a linear layer to ``num_classes`` logits. It sees the input resized to ``input_size`` px
(bilinear, antialiased), so its cost does not grow with the image and its statistics match between training
crops and full test images. The paper calls it lightweight without giving the layout; this one is ours
(about 0.1 M parameters at the default width 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DegradationEstimator(nn.Module):
    """``forward(x [B,3,H,W]) -> logits [B, num_classes]`` (softmax = the probability of each degradation)."""

    def __init__(self, num_classes: int, width: int = 16, input_size: int = 128):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"the estimator needs at least one class, got {num_classes}")
        self.input_size = int(input_size)
        chans = [3] + [width * m for m in (1, 2, 4, 8)]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GELU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)
