"""PSNR and SSIM under the two protocols used in all-in-one restoration papers.

* RGB protocol (PromptIR / AirNet family): ``test_y_channel=False``, ``crop_border=0``. PSNR over all
  pixels and channels; SSIM per channel, then averaged over channels.
* Y protocol (Restormer / BasicSR family): ``test_y_channel=True`` and usually ``crop_border`` > 0. The
  image is converted to the Y channel of YCbCr (ITU-R BT.601, BasicSR's ``rgb2ycbcr(y_only=True)``:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on 8-bit values), kept as float in [16, 235].

Inputs are ``[B, 3, H, W]`` (or ``[3, H, W]``) in [0, 1]; they are clamped to [0, 1] and, unless
``quantize=False``, rounded to 8 bits (``round(x * 255)``) first, as a saved PNG would be. All maths is in
float64 with data range 255. The results agree with scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``
(11x11 Gaussian window; the (11-1)//2 = 5 pixel border that skimage discards is the 'valid' region here).
Identical images give PSNR = inf.
"""

from __future__ import annotations

import math

import torch

_Y_COEFFS = (65.481, 128.553, 24.966)


def _prepare(img: torch.Tensor, crop_border: int, test_y_channel: bool, quantize: bool) -> torch.Tensor:
    if img.ndim == 3:
        img = img.unsqueeze(0)
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"metrics expect [B, 3, H, W] images, got {tuple(img.shape)}")
    x = img.detach().to(torch.float64).clamp(0, 1) * 255.0
    if quantize:
        x = torch.round(x)
    if test_y_channel and x.shape[1] == 3:
        w = x.new_tensor(_Y_COEFFS).view(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True) / 255.0 + 16.0
    if crop_border:
        c = int(crop_border)
        x = x[..., c:-c, c:-c]
    return x


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"metrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def psnr(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
         quantize: bool = True) -> torch.Tensor:
    """PSNR in dB per image, ``Tensor[B]`` (float64)."""
    _check(pred, target)
    x = _prepare(pred, crop_border, test_y_channel, quantize)
    y = _prepare(target, crop_border, test_y_channel, quantize)
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)  # mse 0 -> inf


def _gaussian_1d(sigma: float = 1.5, truncate: float = 3.5, dtype=torch.float64, device=None) -> torch.Tensor:
    # scipy.ndimage.gaussian_filter's kernel: radius int(truncate * sigma + 0.5), normalised
    radius = int(truncate * sigma + 0.5)
    ax = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (ax / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' correlation with the 1-D kernel ``g`` along H then W, as shifted sums (float64
    conv2d has no fast CPU path; this is exact and quick)."""
    k = g.numel()
    h, w = x.shape[-2:]
    wts = g.tolist()
    y = sum(wts[i] * x[..., i:i + h - k + 1, :] for i in range(k))
    return sum(wts[i] * y[..., :, i:i + w - k + 1] for i in range(k))


def ssim(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
         quantize: bool = True) -> torch.Tensor:
    """Mean SSIM per image (channel-averaged for RGB), ``Tensor[B]`` (float64)."""
    _check(pred, target)
    x = _prepare(pred, crop_border, test_y_channel, quantize)
    y = _prepare(target, crop_border, test_y_channel, quantize)
    g = _gaussian_1d(device=x.device)
    if min(x.shape[-2:]) < g.numel():
        raise ValueError(f"ssim: image {tuple(x.shape[-2:])} (after crop) is smaller than the 11x11 window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    xx, yy, xy = _filter_valid(x * x, g), _filter_valid(y * y, g), _filter_valid(x * y, g)
    vx, vy, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


def psnr_value(pred: torch.Tensor, target: torch.Tensor, **kw) -> float:
    """Convenience: PSNR of a single pair as a Python float."""
    v = psnr(pred, target, **kw)
    return float(v.mean()) if v.numel() else math.nan
