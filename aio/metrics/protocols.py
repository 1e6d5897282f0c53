"""Named metric protocols: a paper's own way of computing PSNR/SSIM, selected per dataset preset with
``dataset.metric_protocol`` (null = aio's default, :mod:`aio.metrics.fidelity`, with each test set's
``crop_border`` / ``test_y_channel``).

``dsrir`` — the reference ``test.py`` of DSRIR (xfwang23/DSRIR):

* test images are centre-cropped to a multiple of 8 (its ``crop_img(base=8)``);
* the restored image is clipped to [0, 1] and **not** quantised to 8 bits;
* derain sets are scored on Y (BasicSR's float ``rgb2ycbcr(y_only=True)``:
  ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``), all other sets on RGB;
* PSNR: ``skimage.metrics.peak_signal_noise_ratio(data_range=1)``;
* SSIM: ``skimage.metrics.structural_similarity(data_range=1, channel_axis=-1)`` with its defaults: a 7x7
  *uniform* window, sample covariance (N / (N - 1)), the mean over the valid region, averaged over channels.
  Surprising but matched: for the 2-D Y image, ``channel_axis=-1`` makes scikit-image treat every image
  **column** as a channel, so derain SSIM is the mean over columns of a 1-D SSIM along the rows (window 7).

Noisy test inputs of the reference are ``uint8(clip(x + sigma * n))`` drawn from NumPy's global RNG; that is
data, not the metric: aio's denoise sets draw their noise from ``dataset.val.seed`` (float, unquantised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Y_COEFFS = (65.481, 128.553, 24.966)


def _float_images(img: torch.Tensor, y_channel: bool) -> torch.Tensor:
    """[B, C, H, W] float64 in [0, 1] (clipped, unquantised); Y only when ``y_channel``."""
    if img.ndim == 3:
        img = img.unsqueeze(0)
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"metrics expect [B, 3, H, W] images, got {tuple(img.shape)}")
    x = img.detach().to(torch.float64).clamp(0, 1)
    if y_channel:
        w = x.new_tensor(Y_COEFFS).view(1, 3, 1, 1)
        x = ((x * w).sum(dim=1, keepdim=True) + 16.0) / 255.0
    return x


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border else x


def skimage_psnr(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
                 **_) -> torch.Tensor:
    """PSNR (dB, peak 1) of clipped float images, ``Tensor[B]``; Y or RGB."""
    x = _crop(_float_images(pred, test_y_channel), crop_border)
    y = _crop(_float_images(target, test_y_channel), crop_border)
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def _uniform_ssim(x: torch.Tensor, y: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """scikit-image's uniform-window SSIM (sample covariance, data range 1) per map: mean over the valid
    region of every (B, C) map -> [B, C]."""
    n = window[0] * window[1]
    if x.shape[-2] < window[0] or x.shape[-1] < window[1]:
        raise ValueError(f"ssim: image {tuple(x.shape[-2:])} is smaller than the {window} window")
    box = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731  (valid uniform filter)
    mx, my = box(x), box(y)
    cov_norm = n / (n - 1)
    vx = cov_norm * (box(x * x) - mx * mx)
    vy = cov_norm * (box(y * y) - my * my)
    vxy = cov_norm * (box(x * y) - mx * my)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(-2, -1))


def skimage_ssim(pred: torch.Tensor, target: torch.Tensor, *, crop_border: int = 0, test_y_channel: bool = False,
                 **_) -> torch.Tensor:
    """``structural_similarity(data_range=1, channel_axis=-1)`` on clipped float images, ``Tensor[B]``:
    RGB: a 7x7 window per channel, averaged; Y: a 7x1 window per column (see the module docstring)."""
    x = _crop(_float_images(pred, test_y_channel), crop_border)
    y = _crop(_float_images(target, test_y_channel), crop_border)
    window = (7, 1) if test_y_channel else (7, 7)
    return _uniform_ssim(x, y, window).mean(dim=1)


@dataclass(frozen=True)
class MetricProtocol:
    """How a paper scores its test sets: metric functions replacing aio's ``psnr``/``ssim``, which sets use
    the Y channel, and the multiple that test images are centre-cropped to (1 = none)."""

    name: str
    metrics: dict[str, Callable[..., torch.Tensor]]
    y_channel_tasks: tuple[str, ...]
    image_multiple: int = 1
    crop_border: int = 0

    def set_protocol(self, task_name: str) -> dict:
        """The ``.protocol`` dict of a test set of task ``task_name`` under this protocol."""
        return {"name": self.name, "crop_border": self.crop_border,
                "test_y_channel": task_name in self.y_channel_tasks, "image_multiple": self.image_multiple}


PROTOCOLS: dict[str, MetricProtocol] = {
    "dsrir": MetricProtocol("dsrir", {"psnr": skimage_psnr, "ssim": skimage_ssim}, y_channel_tasks=("derain",),
                            image_multiple=8),
}


def get_protocol(name: str) -> MetricProtocol:
    """The protocol ``name``; a one-line error naming ``dataset.metric_protocol`` otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"dataset.metric_protocol={name!r} is unknown; choose from {sorted(PROTOCOLS)} or null")
    return PROTOCOLS[name]


def metric_for(protocol: dict | None, name: str, default: Callable) -> Callable:
    """The function computing metric ``name`` on a set with ``protocol`` (its ``.protocol`` dict)."""
    named = (protocol or {}).get("name")
    if not named:
        return default
    return get_protocol(named).metrics.get(name, default)
