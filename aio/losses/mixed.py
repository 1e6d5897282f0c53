"""Mixed loss: Charbonnier + w_p * VGG19 perceptual + w_e * Sobel edge (terms l_pix, l_percep, l_edge)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from aio.losses.perceptual import PerceptualLoss
from aio.losses.pixel import _fp32, charbonnier, sobel_gradients


class MixedLoss(nn.Module):
    def __init__(self, eps: float = 1e-3, perceptual_weight: float = 0.1, edge_weight: float = 0.05,
                 perceptual: Mapping | None = None, weight: float = 1.0):
        super().__init__()
        self.eps = float(eps)
        self.perceptual_weight = float(perceptual_weight)
        self.edge_weight = float(edge_weight)
        self.weight = float(weight)
        self.perceptual = None
        if self.perceptual_weight:
            self.perceptual = PerceptualLoss(**dict(perceptual or {}))
        self.random_init = bool(self.perceptual is not None and self.perceptual.random_init)

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        pred, target = _fp32(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            l_pix = self.weight * charbonnier(pred, target, self.eps)
            terms = {"l_pix": l_pix.detach()}
            total = l_pix
            if self.perceptual is not None:
                l_p = self.weight * self.perceptual_weight * self.perceptual.distance(pred, target)
                terms["l_percep"] = l_p.detach()
                total = total + l_p
            if self.edge_weight:
                l_e = self.weight * self.edge_weight * F.l1_loss(sobel_gradients(pred), sobel_gradients(target))
                terms["l_edge"] = l_e.detach()
                total = total + l_e
        return total, terms
