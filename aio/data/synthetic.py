"""Synthetic all-in-one datasets: clean photos degraded on the fly by the degradation engine.

Clean images come from ``dataset.root`` (any folder of images, searched recursively) or, when it is
null, from the colour photos bundled with scikit-image (``SKIMAGE_PHOTOS``). Train and validation are
disjoint by region: the right-hand ``dataset.val.holdout`` fraction of every image is reserved for the
validation crops and training crops never overlap it.
"""

from __future__ import annotations

import bisect
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from . import degradations as D
from .images import ImageReadError, is_image_file, read_image
from .transforms import EpochSeededDataset, single_thread, augment, crop_box, derive_seed, generator_for, pad_to, randint

# the colour photographs bundled with scikit-image (no download needed); name -> file in data_dir
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",  # (motorcycle_right is the stereo twin: left out)
}

PRELOAD_LIMIT = 64  # folders with at most this many images are decoded once and kept in memory (uint8)
_DECODED: dict[tuple[str, int], torch.Tensor] = {}  # (path, mtime) -> uint8 image, shared in a process
_DECODED_MAX = 256


def skimage_photos(names=None) -> list[Path]:
    """Paths of the bundled scikit-image colour photos (all of ``SKIMAGE_PHOTOS`` or ``names``)."""
    import skimage.data

    base = Path(skimage.data.__file__).parent
    names = list(SKIMAGE_PHOTOS) if names is None else list(names)
    unknown = [n for n in names if n not in SKIMAGE_PHOTOS]
    if unknown:
        raise ValueError(f"unknown scikit-image photo(s) {unknown} in dataset.images; "
                         f"known: {', '.join(SKIMAGE_PHOTOS)}")
    return [base / SKIMAGE_PHOTOS[n] for n in names]


def clean_image_paths(cfg) -> list[Path]:
    """The clean images of a synthetic preset (sorted), without reading them."""
    if cfg.root is None:
        return skimage_photos(cfg.get("images") if hasattr(cfg, "get") else getattr(cfg, "images", None))
    root = Path(str(cfg.root)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset.root={root} is not a folder of clean images")
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))


def _holdout_split(w: int, holdout: float) -> int:
    """Column where the validation strip starts."""
    if holdout <= 0:
        return w
    return max(1, min(w - 1, int(round(w * (1 - holdout)))))


class _CleanImages:
    """Clean images, loaded lazily (kept in memory as uint8 when the folder is small)."""

    def __init__(self, paths, skip_bad: bool = False):
        self.paths = list(paths)
        self.skip_bad = skip_bad
        self.preload = len(self.paths) <= PRELOAD_LIMIT
        self._cache: dict[int, torch.Tensor] = {}
        self.bad: set[int] = set()

    def __len__(self):
        return len(self.paths)

    def get_raw(self, i: int) -> torch.Tensor:
        """The image as stored: uint8 ``[3,H,W]`` when kept in memory, else float in [0, 1];
        crop before calling :func:`as_float` to keep the conversion cheap."""
        if i in self._cache:
            return self._cache[i]
        if not self.preload:
            return read_image(self.paths[i])
        p = self.paths[i]
        try:
            key = (str(p), p.stat().st_mtime_ns)
        except OSError:
            key = None
        img = _DECODED.get(key) if key is not None else None
        if img is None:
            img = (read_image(p) * 255.0).round().to(torch.uint8)
            if key is not None and len(_DECODED) < _DECODED_MAX:
                _DECODED[key] = img
        self._cache[i] = img
        return img

    def get(self, i: int) -> torch.Tensor:
        return as_float(self.get_raw(i))

    def name(self, i: int) -> str:
        return self.paths[i].stem


def as_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t


def _recipes(cfg, tasks):
    return [D.get_recipe(t, cfg.recipes) for t in tasks]


class SyntheticTrainDataset(EpochSeededDataset):
    """Random ``patch_size`` crops of the training region of clean images, augmented (flips/rot90) and
    degraded on the fly with each task's recipe. ``epoch_size * repeat[task]`` items per task."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.task_names = list(cfg.tasks)
        self.recipes = [D.get_train_recipe(t, cfg.recipes, cfg.get("noise_sigma_range")) for t in self.task_names]
        self.images = _CleanImages(clean_image_paths(cfg), skip_bad=bool(cfg.skip_bad))
        if len(self.images) == 0:
            raise FileNotFoundError(f"no clean images found under dataset.root={cfg.root}")
        self.patch = int(cfg.patch_size)
        self.holdout = float(cfg.val.holdout)
        self.seed = int(cfg.seed)
        self.mix_prob = float(cfg.mix_prob)
        repeat = dict(cfg.repeat or {})
        unknown = set(repeat) - set(self.task_names)
        if unknown:
            raise ValueError(f"dataset.repeat names unknown task(s) {sorted(unknown)}; tasks: {self.task_names}")
        self.counts = [int(cfg.epoch_size) * int(repeat.get(t, 1)) for t in self.task_names]
        self.offsets = [0]
        for c in self.counts:
            self.offsets.append(self.offsets[-1] + c)
        self.epoch = 0

    def __len__(self):
        return self.offsets[-1]

    def task_of(self, index: int) -> int:
        return bisect.bisect_right(self.offsets, index) - 1

    def _clean_crop(self, g):
        for _ in range(10):
            i = randint(len(self.images), g)
            try:
                img = self.images.get_raw(i)
                break
            except ImageReadError as e:
                if not self.images.skip_bad:
                    raise
                if i not in self.images.bad:
                    warnings.warn(f"skipping unreadable image: {e}")
                    self.images.bad.add(i)
        else:
            raise RuntimeError("too many unreadable clean images")
        h, w = img.shape[-2:]
        split = _holdout_split(w, self.holdout)
        h = img.shape[-2]
        top, left = crop_box(h, split, self.patch, g)
        crop = pad_to(as_float(img[..., top:top + self.patch, left:left + self.patch]), self.patch)
        return augment([crop], g)[0], self.images.name(i)

    def _get_item(self, index: int, seed_offset: int) -> dict:
        task = self.task_of(index)
        g = generator_for("train", self.seed, index, int(seed_offset))
        clean, img_name = self._clean_crop(g)
        item = {"target": clean, "task": task, "name": f"{self.task_names[task]}/{img_name}/{index}"}
        if self.mix_prob > 0:
            use_mix = float(torch.rand((), generator=g)) < self.mix_prob and len(self.recipes) > 1
            if use_mix:
                mixed, label = D.region_mix(clean[None], self.recipes, g)
                item["input"], label = mixed[0], label[0]
                item["task"] = int(torch.bincount(label.flatten(), minlength=len(self.recipes)).argmax())
            else:
                item["input"] = self.recipes[task](clean[None], g)[0]
                label = torch.full(clean.shape[-2:], task, dtype=torch.long)
            item["label_map"] = label
        else:
            item["input"] = self.recipes[task](clean[None], g)[0]
        item["input"] = item["input"].contiguous()
        return item


class FixedSet(Dataset):
    """A precomputed, deterministic list of items (a validation set)."""

    def __init__(self, items, task_name: str, protocol: dict, task_names=None):
        self.items = items
        self.task_name = task_name
        self.protocol = dict(protocol)
        self.task_names = list(task_names) if task_names is not None else [task_name]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in it.items()}


def build_synthetic_val_sets(cfg) -> dict[str, Dataset]:
    """One set per task, named after the task: ``val.crops_per_task`` crops of ``val.crop_size`` from the
    held-out strips, degraded with a seed derived from ``val.seed`` (same inputs for every run)."""
    with single_thread():
        return _build_synthetic_val_sets(cfg)


def _build_synthetic_val_sets(cfg) -> dict[str, Dataset]:
    tasks = list(cfg.tasks)
    recipes = _recipes(cfg, tasks)
    images = _CleanImages(clean_image_paths(cfg), skip_bad=bool(cfg.skip_bad))
    if len(images) == 0:
        raise FileNotFoundError(f"no clean images found under dataset.root={cfg.root}")
    holdout = float(cfg.val.holdout)
    size = int(cfg.val.crop_size)
    n = int(cfg.val.crops_per_task)
    vseed = int(cfg.val.seed)
    protocol = {"crop_border": 0, "test_y_channel": False}
    # strips of every image, decoded once
    strips = []
    for i in range(len(images)):
        try:
            img = images.get(i)
        except ImageReadError as e:
            if not cfg.skip_bad:
                raise
            warnings.warn(f"skipping unreadable image: {e}")
            continue
        w = img.shape[-1]
        split = _holdout_split(w, holdout) if holdout > 0 else 0
        strips.append((images.name(i), pad_to(img[..., split:], size)))
    sets = {}
    for t, (task, recipe) in enumerate(zip(tasks, recipes)):
        order = torch.randperm(len(strips), generator=generator_for("val-order", vseed, task)).tolist()
        items = []
        for k in range(n):
            name, strip = strips[order[k % len(strips)]]
            g = generator_for("val", vseed, task, k)
            h, w = strip.shape[-2:]
            top, left = crop_box(h, w, size, g)
            clean = strip[..., top:top + size, left:left + size].contiguous()
            degraded = recipe(clean[None], g)[0].contiguous()
            items.append({"input": degraded, "target": clean, "task": t, "name": f"{task}/{name}_{k}"})
        if cfg.get("metric_protocol"):
            from aio.metrics.protocols import get_protocol

            protocol = get_protocol(cfg.metric_protocol).set_protocol(task)
        sets[task] = FixedSet(items, task, protocol, tasks)
    return sets
