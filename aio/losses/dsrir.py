"""DSRIR's training loss (Wang et al., IPM 2025; reference ``losses/loss.py`` and ``train.py``).

``total = mean_k U(x_k, s_k) + P(x_3) + 0.5 * (P(x_2) + P(x_1)) / 2 + 0.2 * C`` over the three stage outputs
``x_3`` (final), ``x_2``, ``x_1`` and variance maps ``s_k`` of :class:`aio.models.dsrir.DSRIR`:

* uncertainty loss ``U(x, s) = L1(x * exp(-s), y * exp(-s)) + 2 * mean(s)`` (term ``l_uncert``);
* PSNR loss ``P(x) = 10 / ln(10) * mean_b ln(mse_b(x, y) + 1e-8)``, i.e. minus the PSNR (term ``l_psnr``);
* positive contrastive loss (term ``l_contrast``) on VGG19 features relu1_1, relu2_1, relu3_1, relu4_1,
  relu5_1 (layer weights 1/32, 1/16, 1/8, 1/4, 1): per layer
  ``(L1(a, y) + 0.25 L1(a, x_2) + 0.125 L1(a, x_1)) / (L1(a, n) + 1e-7)`` with anchor ``a = phi(x_3)``,
  ``y`` the clean target and ``n`` the degraded input (both without gradient); gradients reach ``x_2`` and
  ``x_1`` through their features, as in the reference.

As in the reference, the VGG sees images in [0, 1] without ImageNet normalisation. Its weights are read
like the perceptual loss's (``loss.perceptual.weights``: a local VGG19 state dict, or ``random`` for tests
and demos, which sets ``random_init`` so the trainer tags the run). The loss needs the whole model output
and the batch (``uses_model_output = True``; called through :func:`aio.losses.contract.compute_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aio.losses.perceptual import VGG19_RELU, load_vgg19_features
from aio.models.output import ModelOutput

CONTRAST_LAYERS = {"relu1_1": 1.0 / 32, "relu2_1": 1.0 / 16, "relu3_1": 1.0 / 8, "relu4_1": 1.0 / 4, "relu5_1": 1.0}
POSITIVE_WEIGHTS = (1.0, 0.25, 0.125)  # target, stage-2 image, stage-1 image
STAGE_KEYS = (("restored", "var3"), ("restored2", "var2"), ("restored1", "var1"))
PSNR_SCALE = 10.0 / math.log(10.0)


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 / ln(10) * mean over the batch of ln(MSE + 1e-8): minus the PSNR (in dB, peak 1) per image."""
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return PSNR_SCALE * torch.log(mse + 1e-8).mean()


def uncertainty_loss(pred: torch.Tensor, target: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """L1 between prediction and target, both scaled by exp(-s), plus 2 * mean(s)."""
    scale = torch.exp(-log_var)
    return F.l1_loss(pred * scale, target * scale) + 2.0 * log_var.mean()


class PositiveContrastLoss(nn.Module):
    """The reference's positive contrastive regularisation (see the module docstring)."""

    def __init__(self, weights: Any = None, layers: Mapping[str, float] | None = None,
                 positive_weights: Sequence[float] = POSITIVE_WEIGHTS):
        super().__init__()
        layers = dict(layers or CONTRAST_LAYERS)
        unknown = [k for k in layers if k not in VGG19_RELU]
        if unknown:
            raise ValueError(f"loss.contrast.layers: unknown {unknown}; choose from {list(VGG19_RELU)}")
        if len(positive_weights) != 3:
            raise ValueError(f"loss.contrast.positive_weights needs 3 values (target, stage 2, stage 1), "
                             f"got {list(positive_weights)}")
        self.layer_weights = {VGG19_RELU[k]: float(v) for k, v in layers.items()}
        self.positive_weights = tuple(float(w) for w in positive_weights)
        self.vgg, self.random_init = load_vgg19_features(weights, max(self.layer_weights))

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()  # frozen feature extractor
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of the weighted layers, in layer order."""
        out = []
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.layer_weights:
                out.append(x)
        return out

    def forward(self, anchor: torch.Tensor, target: torch.Tensor, positive2: torch.Tensor,
                positive1: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        b = anchor.shape[0]
        with torch.autocast(device_type=anchor.device.type, enabled=False):
            restored = self.features(torch.cat([anchor, positive2, positive1]).float())
            with torch.no_grad():
                fixed = self.features(torch.cat([target, negative]).float())
            w_t, w_2, w_1 = self.positive_weights
            total = anchor.new_zeros(())
            for weight, f, g in zip(self.layer_weights.values(), restored, fixed):
                a, p2, p1 = f[:b], f[b:2 * b], f[2 * b:]
                pos = w_t * F.l1_loss(a, g[:b]) + w_2 * F.l1_loss(a, p2) + w_1 * F.l1_loss(a, p1)
                total = total + weight * pos / (F.l1_loss(a, g[b:]) + 1e-7)
        return total


class DSRIRLoss(nn.Module):
    """Uncertainty + PSNR + positive contrastive loss of DSRIR; terms ``l_uncert``, ``l_psnr``,
    ``l_contrast`` (each its weighted contribution to the total)."""

    uses_model_output = True

    def __init__(self, uncertainty_weight: float = 1.0, psnr_weight: float = 1.0,
                 intermediate_weight: float = 0.5, contrast_weight: float = 0.2,
                 perceptual: Mapping | None = None, contrast: Mapping | None = None, weight: float = 1.0):
        super().__init__()
        self.uncertainty_weight = float(uncertainty_weight)
        self.psnr_weight = float(psnr_weight)
        self.intermediate_weight = float(intermediate_weight)
        self.contrast_weight = float(contrast_weight)
        self.weight = float(weight)
        weights = dict(perceptual or {}).get("weights")
        self.contrast = PositiveContrastLoss(weights, **dict(contrast or {})) if self.contrast_weight else None
        self.random_init = bool(self.contrast is not None and self.contrast.random_init)

    @staticmethod
    def _stages(output: ModelOutput) -> list[tuple[torch.Tensor, torch.Tensor]]:
        missing = [k for k in ("restored2", "restored1", "var3", "var2", "var1") if k not in output.extras]
        if missing:
            raise ValueError(f"loss=dsrir needs the stage outputs of backbone=dsrir; the model output lacks "
                             f"{missing} (use backbone=dsrir or another loss)")
        return [(output.restored if img == "restored" else output.extras[img], output.extras[var])
                for img, var in STAGE_KEYS]

    def forward(self, output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any] | None = None):
        (x3, s3), (x2, s2), (x1, s1) = self._stages(output)
        target = target.float()
        l_uncert = sum(uncertainty_loss(x, target, s) for x, s in ((x3, s3), (x2, s2), (x1, s1))) / 3.0
        l_psnr = psnr_loss(x3, target) + self.intermediate_weight * (psnr_loss(x2, target)
                                                                     + psnr_loss(x1, target)) / 2.0
        terms = {"l_uncert": self.weight * self.uncertainty_weight * l_uncert,
                 "l_psnr": self.weight * self.psnr_weight * l_psnr}
        if self.contrast is not None:
            if batch is None or "input" not in batch:
                raise ValueError("loss=dsrir needs the degraded input (batch['input']) for its contrastive term")
            degraded = batch["input"].to(target.device, torch.float32)
            terms["l_contrast"] = self.weight * self.contrast_weight * self.contrast(x3, target, x2, x1, degraded)
        total = sum(terms.values())
        return total, {k: v.detach() for k, v in terms.items()}
