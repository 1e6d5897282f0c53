"""Human labels for table headers and captions: test sets (``σ=15``, ``Rain100L``), metrics with their
direction and unit (``PSNR↑ (dB)``), and the dataset presets as a paper names them.

A spec's ``set_labels`` / ``presets`` entries win over these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# test-set name (the presets' names, see conf/dataset) -> header
SET_LABELS: dict[str, str] = {
    "avg": "Average",
    "BSD68_s15": "\u03c3=15", "BSD68_s25": "\u03c3=25", "BSD68_s50": "\u03c3=50",
    "denoise_15": "\u03c3=15", "denoise_25": "\u03c3=25", "denoise_50": "\u03c3=50",
    "Rain100L": "Rain100L", "derain": "Rain", "SOTS": "SOTS", "dehaze": "Haze",
    "GoPro": "GoPro", "deblur": "Blur", "LOLv1": "LOL", "lowlight": "Low light",
}

# metric -> (plain header, LaTeX header)
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "psnr": ("PSNR\u2191 (dB)", r"PSNR$\uparrow$ (dB)"),
    "ssim": ("SSIM\u2191", r"SSIM$\uparrow$"),
    "ms_ssim": ("MS-SSIM\u2191", r"MS-SSIM$\uparrow$"),
    "lpips": ("LPIPS\u2193", r"LPIPS$\downarrow$"),
    "dists": ("DISTS\u2193", r"DISTS$\downarrow$"),
    "params_m": ("Params (M)", "Params (M)"),
    "gflops": ("GFLOPs @256\u00b2", r"GFLOPs @256$^2$"),
}

# dataset preset (dataset.name) -> how a caption names it
PRESET_NAMES: dict[str, str] = {
    "aio3": "AIO-3 (BSD68 \u03c3=15/25/50, Rain100L, SOTS)",
    "aio5": "AIO-5 (BSD68 \u03c3=25, Rain100L, SOTS, GoPro, LOL)",
    "cdd11": "CDD-11",
    "synthetic": "the embedded synthetic AIO-3 tasks (scikit-image photos)",
    "synthetic_aio3": "synthetic AIO-3 (scikit-image photos)",
    "synthetic_aio5": "synthetic AIO-5 (scikit-image photos)",
    "synthetic_cdd11": "synthetic CDD-11 (scikit-image photos)",
}
# dataset preset -> short column-group label and the published benchmark it corresponds to
PRESET_COLUMNS: dict[str, tuple[str, str | None]] = {
    "aio3": ("AIO-3", "AIO-3"), "aio5": ("AIO-5", "AIO-5"), "cdd11": ("CDD11", "CDD11"),
    "synthetic": ("AIO-3 (synth.)", None), "synthetic_aio3": ("AIO-3 (synth.)", None),
    "synthetic_aio5": ("AIO-5 (synth.)", None), "synthetic_cdd11": ("CDD11 (synth.)", None),
}


def set_label(name: str | None, spec: Mapping[str, Any]) -> str:
    """The header of a test set (or preset column group)."""
    if name is None:
        return ""
    labels = dict(spec.get("set_labels") or {})
    presets = dict(spec.get("presets") or {})
    if name in labels:
        return str(labels[name])
    if name in presets and isinstance(presets[name], Mapping) and presets[name].get("label"):
        return str(presets[name]["label"])
    if name in PRESET_COLUMNS and spec.get("columns_by") == "preset":
        return PRESET_COLUMNS[name][0]
    return SET_LABELS.get(name, name)


def metric_header(metric: str, latex: bool = False) -> str:
    """``PSNR↑ (dB)`` and friends; unknown metrics upper-cased."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric][1 if latex else 0]
    return metric.replace("_", "-").upper()


def preset_name(dataset: str) -> str:
    """A dataset preset as a caption names it (the preset name itself when unknown)."""
    return PRESET_NAMES.get(dataset, dataset)
