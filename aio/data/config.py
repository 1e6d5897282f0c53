"""Structured-config schema of the ``dataset`` node.

``aio.config.register_configs()`` stores :class:`DatasetConfig` in Hydra's ConfigStore as group
``dataset``, name ``base_dataset``; every ``conf/dataset/*.yaml`` starts with
``defaults: [base_dataset, _self_]`` so a misspelt key is rejected at compose time.

This module imports only the standard library and omegaconf (cheap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

AIO3_TASKS = ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]
AIO5_TASKS = ["denoise_25", "derain", "dehaze", "deblur", "lowlight"]
CDD11_TASKS = [
    "low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow",
    "haze_rain", "haze_snow", "low_haze_rain", "low_haze_snow",
]


@dataclass
class ValConfig:
    """Validation / test settings."""

    # synthetic presets: a fixed set of crops per task cut from a held-out region of every photo
    crops_per_task: int = 3
    crop_size: int = 96
    # fraction of each clean image (its right-hand strip) reserved for validation; training crops
    # never touch it (synthetic presets only)
    holdout: float = 0.25
    # seed of every validation degradation (noise on BSD68, synthetic crops): fixed so every run and
    # every model sees the same inputs
    seed: int = 2024
    # real presets: use at most this many images per test set (null = all)
    max_images: Optional[int] = None
    # real presets: centre-crop test images to this size (null = full size)
    center_crop: Optional[int] = None


@dataclass
class TestSetConfig:
    """One test set of a real preset (a folder below ``dataset.root``)."""

    task: str = MISSING  # one of dataset.tasks (denoise sets take their noise from the task's recipe)
    path: str = MISSING  # folder relative to dataset.root
    # clean: <path>/* clean images, degraded on the fly with the task's recipe and val.seed
    # paired: <path>/input/* and <path>/target/* with the same file names
    # dehaze: <path>/input/<id>_<A>_<beta>.* and <path>/target/<id>.*
    # cdd11: <root>/test/<category>/<name> against <root>/test/clear/<name> (path = test/<category>)
    layout: str = "paired"
    crop_border: int = 0
    test_y_channel: bool = False
    required: bool = True  # a missing optional set (urban100, kodak24) is only noted by the checker
    expected: Optional[int] = None  # the published image count (BSD68 68, Urban100 100): the checker warns otherwise


@dataclass
class DatasetConfig:
    """The ``dataset`` node. Keys the trainer reads: ``batch_size``, ``num_workers``, ``patch_size``."""

    name: str = "synthetic"
    kind: str = "synthetic"  # synthetic | aio | cdd11 | folder
    # synthetic: a folder of clean images (null = the colour photos bundled with scikit-image);
    # aio / cdd11: the dataset root (required)
    root: Optional[str] = None
    # synthetic with root=null: which scikit-image photos (null = all bundled colour photos)
    images: Optional[List[str]] = None
    tasks: List[str] = field(default_factory=lambda: list(AIO3_TASKS))
    # task name -> degradation recipe (a list of {type: ..., <param>: value or [lo, hi]}), overriding
    # or extending the built-in recipes of aio.data.degradations.RECIPES
    recipes: Dict[str, Any] = field(default_factory=dict)
    patch_size: int = 128
    batch_size: int = 8
    num_workers: int = 2
    # per-task repeat factor of the training list (tasks not named: 1)
    repeat: Dict[str, int] = field(default_factory=dict)
    # synthetic: training crops per task per epoch (before repeat)
    epoch_size: int = 256
    # synthetic: probability that a training crop mixes several tasks region-wise (CutMix-style);
    # such items also carry a "label_map" (every item does when > 0)
    mix_prob: float = 0.0
    # synthetic: ABAIR pre-training mix (single / CutMix / whole-image composites with degradation maps);
    # empty = off. Keys: see aio/data/abair.py
    abair: Dict[str, Any] = field(default_factory=dict)
    val: ValConfig = field(default_factory=ValConfig)
    # real presets: name -> test set (names follow the published tables)
    test_sets: Dict[str, TestSetConfig] = field(default_factory=dict)
    # cache file lists under <outputs>/cache/data (keyed by root, layout and folder mtimes)
    cache: bool = True
    # skip unreadable images / unpaired files with a warning instead of raising
    skip_bad: bool = False
    # training only: denoise_* tasks draw sigma per image uniformly from [lo, hi] (blind denoising, DSRIR's
    # [0, 55]); null = each task's own recipe. Test sets keep their fixed sigma (denoise_15/25/50).
    noise_sigma_range: Optional[List[float]] = None
    # real presets, training only: task -> N keeps N distinct targets (drawn with dataset.seed) and one of
    # their inputs each at random (DSRIR's 5,000 RESIDE OTS pairs: dehaze: 5000); tasks not named: all pairs
    sample_pairs: Dict[str, int] = field(default_factory=dict)
    # a named metric protocol of aio.metrics.protocols for every test set (e.g. dsrir); null = aio's PSNR/SSIM
    # with each set's crop_border / test_y_channel
    metric_protocol: Optional[str] = None
    seed: int = 0
    # kind=folder (conf/dataset/folder.yaml): degraded inputs and clean targets paired by file name, and the
    # task (degradation) they show (null: the first of dataset.tasks; see aio/data/folder.py)
    input: Optional[str] = None
    target: Optional[str] = None
    task: Optional[str] = None


def load_preset(name: str, overrides: dict | None = None, conf_dir=None):
    """``conf/dataset/<name>.yaml`` merged onto the schema, without Hydra (tests, benchmarks, notebooks).

    ``overrides`` is a (nested) dict merged last, e.g. ``{"root": "/data", "val": {"crops_per_task": 1}}``.
    """
    from pathlib import Path

    from omegaconf import OmegaConf

    if conf_dir is None:
        from aio.paths import CONF_DIR as conf_dir
    raw = OmegaConf.load(Path(conf_dir) / "dataset" / f"{name}.yaml")
    if "defaults" in raw:
        raw.pop("defaults")
    return OmegaConf.merge(OmegaConf.structured(DatasetConfig), raw, OmegaConf.create(overrides or {}))
