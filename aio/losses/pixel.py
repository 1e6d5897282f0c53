"""Pixel and frequency losses: L1, Charbonnier, FFT amplitude (and phase), Sobel edge.

Every loss returns ``(total, terms)`` where ``terms`` maps a term name to a detached scalar. Inputs are
cast to fp32 so that bf16/fp16 autocast does not break FFTs or small differences.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

Terms = dict[str, torch.Tensor]


def _fp32(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"loss: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    return pred.float(), target.float()


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)); equals ``eps`` for identical images."""
    diff = pred - target
    return torch.sqrt(diff * diff + eps * eps).mean()


def fft_terms(pred: torch.Tensor, target: torch.Tensor, phase_weight: float = 0.0) -> torch.Tensor:
    """L1 between the (orthonormal) 2-D FFT amplitudes, plus ``phase_weight`` x L1 between the phases
    (wrapped to [-pi, pi])."""
    fp = torch.fft.rfft2(pred, norm="ortho")
    ft = torch.fft.rfft2(target, norm="ortho")
    loss = (fp.abs() - ft.abs()).abs().mean()
    if phase_weight:
        dphi = torch.angle(fp) - torch.angle(ft)
        dphi = torch.atan2(torch.sin(dphi), torch.cos(dphi))
        loss = loss + phase_weight * dphi.abs().mean()
    return loss


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradients [B, C, 2, H, W] (kornia, normalised kernels, replicate border)."""
    from kornia.filters import spatial_gradient

    return spatial_gradient(x, mode="sobel", order=1, normalized=True)


def _with_pixel_term(total: torch.Tensor, terms: dict, pred: torch.Tensor, target: torch.Tensor,
                     pixel_weight: float) -> tuple[torch.Tensor, dict]:
    """Add the optional ``pixel_weight * L1`` term (reported as ``l_pix``) to a loss and its terms."""
    if pixel_weight:
        l_pix = pixel_weight * F.l1_loss(pred, target)
        terms["l_pix"] = l_pix.detach()
        total = total + l_pix
    return total, terms


class _Base(nn.Module):
    """A loss with a global multiplier ``weight``."""

    random_init = False

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)


class L1Loss(_Base):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        pred, target = _fp32(pred, target)
        loss = self.weight * F.l1_loss(pred, target)
        return loss, {"l_pix": loss.detach()}


class CharbonnierLoss(_Base):
    def __init__(self, weight: float = 1.0, eps: float = 1e-3):
        super().__init__(weight)
        self.eps = float(eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        pred, target = _fp32(pred, target)
        loss = self.weight * charbonnier(pred, target, self.eps)
        return loss, {"l_pix": loss.detach()}


class FFTLoss(_Base):
    """L1 between FFT amplitudes (optionally + phase); reported as ``l_freq``. With ``pixel_weight > 0``
    an L1 pixel term ``l_pix`` is added (the usual "L1 + FFT" recipe)."""

    def __init__(self, weight: float = 1.0, phase_weight: float = 0.0, pixel_weight: float = 0.0):
        super().__init__(weight)
        self.phase_weight = float(phase_weight)
        self.pixel_weight = float(pixel_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        pred, target = _fp32(pred, target)
        l_freq = self.weight * fft_terms(pred, target, self.phase_weight)
        return _with_pixel_term(l_freq, {"l_freq": l_freq.detach()}, pred, target, self.pixel_weight)


class EdgeLoss(_Base):
    """L1 between Sobel gradients (kornia); reported as ``l_edge``. Optional L1 pixel term as in FFTLoss."""

    def __init__(self, weight: float = 1.0, pixel_weight: float = 0.0):
        super().__init__(weight)
        self.pixel_weight = float(pixel_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        pred, target = _fp32(pred, target)
        l_edge = self.weight * F.l1_loss(sobel_gradients(pred), sobel_gradients(target))
        return _with_pixel_term(l_edge, {"l_edge": l_edge.detach()}, pred, target, self.pixel_weight)
