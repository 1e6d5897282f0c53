"""Evaluation loop, tiled inference, test-time augmentation and folder restoration.

Public API: ``evaluate_sets(model, sets, *, device, amp_dtype=None, tile=None, tile_overlap=32, tta=None,
save_dir=None, num_samples=0, metrics=("psnr", "ssim")) -> EvalResult``, ``save_sample_grid(samples,
path)``, ``tiled_forward(model, x, tile=512, overlap=32, task=None)``, ``tta_forward(model, x, mode="x8",
task=None)``, ``restore_path(model, input, output, ...)``.
"""

from __future__ import annotations

from aio.eval.evaluate import EvalResult, evaluate_sets, restore_image, save_png, save_sample_grid
from aio.eval.restore import restore_path
from aio.eval.tiling import tiled_forward, tta_forward

__all__ = ["EvalResult", "evaluate_sets", "save_sample_grid", "save_png", "restore_image", "restore_path",
           "tiled_forward", "tta_forward"]
