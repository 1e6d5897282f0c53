"""Image-quality metrics.

``psnr`` and ``ssim`` follow both protocols (see :mod:`aio.metrics.fidelity`). ``METRICS`` maps a metric
name to a :class:`Metric` with ``higher_is_better``; call it as ``METRICS[name](pred, target,
crop_border=..., test_y_channel=..., quantize=..., **options) -> Tensor[B]``. Extras (piq): ``ms_ssim``,
``fsim``, ``vif``, ``gmsd`` (lower is better), ``haarpsi``; ``lpips`` and ``dists`` (lower is better) only
with local weight files passed as options ``weights=`` and ``vgg16_weights=`` (else a one-line error naming
``eval.lpips_weights`` / ``eval.dists_weights`` / ``eval.vgg16_weights``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from aio.metrics import extra
from aio.metrics.fidelity import psnr, ssim


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., torch.Tensor]
    higher_is_better: bool
    uses_y_channel: bool = False  # whether test_y_channel changes the result
    weight_options: tuple[str, ...] = field(default=())  # options that must name local files

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
        return self.fn(pred, target, **kw)


def _wrap(fn):
    def call(pred, target, *, crop_border=0, test_y_channel=False, quantize=True, **_):
        return fn(pred, target, crop_border=crop_border, test_y_channel=test_y_channel, quantize=quantize)

    return call


METRICS: dict[str, Metric] = {
    "psnr": Metric("psnr", _wrap(psnr), True, uses_y_channel=True),
    "ssim": Metric("ssim", _wrap(ssim), True, uses_y_channel=True),
    "ms_ssim": Metric("ms_ssim", extra.ms_ssim, True),
    "fsim": Metric("fsim", extra.fsim, True),
    "vif": Metric("vif", extra.vif, True),
    "gmsd": Metric("gmsd", extra.gmsd, False),
    "haarpsi": Metric("haarpsi", extra.haarpsi, True),
    "lpips": Metric("lpips", extra.lpips, False, weight_options=("weights", "vgg16_weights")),
    "dists": Metric("dists", extra.dists, False, weight_options=("weights", "vgg16_weights")),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]


__all__ = ["psnr", "ssim", "Metric", "METRICS", "get_metric"]
