"""Real datasets on the public folder layouts (AIO-3/AIO-5 and CDD-11), their file lists and test sets.

AIO (``dataset.kind=aio``)::

    <root>/Train/Denoise/**/*.{png,jpg,bmp}              clean images; noise added on the fly
    <root>/Train/Derain/rainy/rain-N.png  gt/norain-N.png
    <root>/Train/Dehaze/synthetic/partK/<id>_<A>_<beta>.jpg  original/<id>.png  (id = before first "_")
    <root>/Train/Deblur/blur/*  sharp/*                   (same names)
    <root>/Train/Enhance/low/*  gt/*                      (same names)
    test sets: declared in the preset (``dataset.test_sets``), conventionally
    <root>/test/denoise/{bsd68,urban100}/*  clean (Urban100: the 100 HR images), noise added with val.seed
    <root>/test/derain/Rain100L/{input,target}/*   <root>/test/dehaze/{input,target}/* (SOTS outdoor)
    <root>/Train/Desnow/snowy/*  gt/*                     (same names; preset derain_desnow)

CDD-11 (``dataset.kind=cdd11``, OneRestore release): ``<root>/{train,test}/<category>/<name>`` with the
target ``<root>/{train,test}/clear/<name>``.

Pairing is by file stem (extensions may differ). File lists are cached as JSON under
``<outputs>/cache/data`` keyed by the folder, the layout and the folder modification times.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from . import degradations as D
from .images import ImageReadError, is_image_file, read_image
from .transforms import (EpochSeededDataset, augment, center_crop, derive_seed, generator_for, randint,
                         random_crop, single_thread)


class RootNotSetError(ValueError):
    """A real preset without ``dataset.root``."""


def require_root(cfg) -> Path:
    if cfg.root is None or str(cfg.root).strip() in ("", "???"):
        raise RootNotSetError(
            f"dataset.root is not set: the '{cfg.name}' preset reads the dataset from disk; "
            f"add dataset.root=/path/to/{cfg.name} to the command line")
    return Path(str(cfg.root)).expanduser()


@dataclass
class Problem:
    severity: str  # "error" | "warning"
    kind: str  # missing folder | empty folder | unpaired input | unpaired target | unreadable | size mismatch
    path: str
    detail: str = ""

    def line(self) -> str:
        d = f": {self.detail}" if self.detail else ""
        return f"{self.severity.upper():7s} {self.kind}: {self.path}{d}"


@dataclass
class Sample:
    target: str
    input: Optional[str]  # None = degrade the target on the fly with the task's recipe
    name: str


@dataclass
class Listing:
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# -------------------------------------------------------------------------------------------- keys

def key_stem(p: Path) -> str:
    return p.stem


def key_derain(p: Path) -> str:
    return re.sub(r"^(no)?rain-", "", p.stem)


def key_haze_id(p: Path) -> str:
    return p.stem.split("_", 1)[0]


# ------------------------------------------------------------------------------------------ listing

def _list_images(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and is_image_file(p))


def _dir_stamp(folder: Path, recursive: bool) -> list:
    """Modification times of ``folder`` and (recursive listings) its immediate sub-folders."""
    out = []
    try:
        out.append(folder.stat().st_mtime_ns)
        if recursive:
            for d in sorted(os.scandir(folder), key=lambda e: e.name):
                if d.is_dir():
                    out.append([d.name, d.stat().st_mtime_ns])
    except OSError:
        pass
    return out


def _cache_dir() -> Path:
    from aio.paths import outputs_dir

    return outputs_dir() / "cache" / "data"


def list_images(folder: Path, recursive: bool = False, cache: bool = False) -> list[Path]:
    """Sorted image files in ``folder`` (cached when ``cache``; the cache key includes folder mtimes)."""
    folder = Path(folder)
    if not cache:
        return _list_images(folder, recursive)
    key = derive_seed("list", str(folder.resolve()), recursive, _dir_stamp(folder, recursive))
    path = _cache_dir() / f"{key:016x}.json"
    try:
        data = json.loads(path.read_text())
        if data.get("folder") == str(folder.resolve()):
            return [folder / r for r in data["files"]]
    except (OSError, ValueError):
        pass
    files = _list_images(folder, recursive)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"folder": str(folder.resolve()),
                                   "files": [str(p.relative_to(folder)) for p in files]}))
        os.replace(tmp, path)
    except OSError:
        pass
    return files


def list_clean(folder: Path, *, recursive=True, cache=False) -> Listing:
    out = Listing()
    if not folder.is_dir():
        out.problems.append(Problem("error", "missing folder", str(folder)))
        return out
    files = list_images(folder, recursive, cache)
    if not files:
        out.problems.append(Problem("error", "empty folder", str(folder), "no images"))
    out.samples = [Sample(str(p), None, p.stem) for p in files]
    return out


def list_pairs(in_dir: Path, tgt_dir: Path, *, key_in: Callable = key_stem, key_tgt: Callable = key_stem,
               recursive_in: bool = False, cache=False, skip_bad=False) -> Listing:
    """Pair every input with the target of the same key; unpaired inputs are errors (warnings when
    ``skip_bad``), unpaired targets warnings."""
    out = Listing()
    for d in (in_dir, tgt_dir):
        if not d.is_dir():
            out.problems.append(Problem("error", "missing folder", str(d)))
    if out.problems:
        return out
    ins = list_images(in_dir, recursive_in, cache)
    tgts = list_images(tgt_dir, False, cache)
    for d, files in ((in_dir, ins), (tgt_dir, tgts)):
        if not files:
            out.problems.append(Problem("error", "empty folder", str(d), "no images"))
    targets: dict[str, Path] = {}
    for t in tgts:
        k = key_tgt(t)
        if k in targets:
            out.problems.append(Problem("warning", "duplicate target", str(t), f"same key as {targets[k].name}"))
            continue
        targets[k] = t
    used = set()
    for p in ins:
        k = key_in(p)
        t = targets.get(k)
        if t is None:
            out.problems.append(Problem("warning" if skip_bad else "error", "unpaired input", str(p),
                                        f"no target with key '{k}' in {tgt_dir}"))
            continue
        used.add(k)
        out.samples.append(Sample(str(t), str(p), str(p.relative_to(in_dir).with_suffix(""))))
    for k, t in targets.items():
        if k not in used and ins:
            out.problems.append(Problem("warning", "unpaired target", str(t), f"no input in {in_dir}"))
    return out


# ------------------------------------------------------------------------------------------- layouts

AIO_TRAIN = {
    # task -> (layout, input folder, target folder, input key, target key, recursive inputs)
    "derain": ("paired", "Train/Derain/rainy", "Train/Derain/gt", key_derain, key_derain, False),
    "dehaze": ("paired", "Train/Dehaze/synthetic", "Train/Dehaze/original", key_haze_id, key_stem, True),
    "deblur": ("paired", "Train/Deblur/blur", "Train/Deblur/sharp", key_stem, key_stem, False),
    "lowlight": ("paired", "Train/Enhance/low", "Train/Enhance/gt", key_stem, key_stem, False),
    "desnow": ("paired", "Train/Desnow/snowy", "Train/Desnow/gt", key_stem, key_stem, False),
}
AIO_TRAIN["enhance"] = AIO_TRAIN["lowlight"]
DENOISE_DIR = "Train/Denoise"


def sample_one_input_per_target(listing: Listing, n: int, seed: int, task: str) -> Listing:
    """Keep ``n`` distinct targets (a seeded random draw) and one of each one's inputs at random: how DSRIR
    draws its 5,000 RESIDE OTS pairs (5,000 of the 8,970 clean images, one of their 35 hazy versions each)."""
    by_target: dict[str, list[Sample]] = {}
    for s in listing.samples:
        by_target.setdefault(s.target, []).append(s)
    targets = sorted(by_target)
    g = generator_for("sample_pairs", seed, task)
    chosen = sorted(torch.randperm(len(targets), generator=g)[:n].tolist())
    out = Listing(problems=list(listing.problems))
    if n > len(targets):
        out.problems.append(Problem("warning", "fewer targets than sampled", task,
                                    f"dataset.sample_pairs.{task}={n} but only {len(targets)} targets"))
    for k in chosen:
        group = by_target[targets[k]]
        out.samples.append(group[randint(len(group), g)])
    return out


def train_listing(cfg, task: str) -> Listing:
    """The training pairs of one task of a real preset (``dataset.sample_pairs`` applied)."""
    listing = _train_listing(cfg, task)
    n = dict(cfg.get("sample_pairs") or {}).get(task)
    return listing if n is None else sample_one_input_per_target(listing, int(n), int(cfg.seed), task)


def _train_listing(cfg, task: str) -> Listing:
    root = require_root(cfg)
    cache, skip = bool(cfg.cache), bool(cfg.skip_bad)
    if cfg.kind == "cdd11":
        return list_pairs(root / "train" / task, root / "train" / "clear", cache=cache, skip_bad=skip)
    if cfg.kind == "mio":
        from .mio import mio_train_listing

        return mio_train_listing(root, task, cache=cache, skip_bad=skip)
    if cfg.kind != "aio":
        raise ValueError(f"dataset.kind={cfg.kind!r} has no folder layout (synthetic | aio | cdd11 | mio)")
    if task.startswith("denoise"):
        return list_clean(root / DENOISE_DIR, cache=cache)
    if task not in AIO_TRAIN:
        raise ValueError(f"task {task!r} has no AIO training layout; known: denoise_<sigma>, "
                         f"{', '.join(AIO_TRAIN)}")
    _, i, t, ki, kt, rec = AIO_TRAIN[task]
    return list_pairs(root / i, root / t, key_in=ki, key_tgt=kt, recursive_in=rec, cache=cache, skip_bad=skip)


def test_listing(cfg, spec) -> Listing:
    """The pairs of one declared test set (``spec``: a TestSetConfig node)."""
    root = require_root(cfg)
    folder = root / str(spec.path)
    layout = str(spec.layout)
    if layout == "clean":
        return list_clean(folder, recursive=False)
    if layout == "paired":
        return list_pairs(folder / "input", folder / "target", skip_bad=bool(cfg.skip_bad))
    if layout == "dehaze":
        return list_pairs(folder / "input", folder / "target", key_in=key_haze_id, skip_bad=bool(cfg.skip_bad))
    if layout == "cdd11":
        return list_pairs(folder, folder.parent / "clear", skip_bad=bool(cfg.skip_bad))
    if layout == "mio":
        from .mio import mio_test_listing

        return mio_test_listing(root, folder, skip_bad=bool(cfg.skip_bad))
    raise ValueError(f"test set layout {layout!r} unknown (clean | paired | dehaze | cdd11 | mio)")


# ------------------------------------------------------------------------------------------ datasets

def _load_pair(sample: Sample):
    tgt = read_image(sample.target)
    inp = read_image(sample.input) if sample.input is not None else None
    if inp is not None and inp.shape != tgt.shape:
        raise ImageReadError(sample.input, f"size {tuple(inp.shape[1:])} differs from its target "
                                           f"{sample.target} {tuple(tgt.shape[1:])}")
    return inp, tgt


class PairedTrainDataset(EpochSeededDataset):
    """Training pairs of a real preset: the same random crop and flip/rot90 of input and target; inputs
    of clean-only tasks (denoising) synthesised on the fly. Tasks are repeated ``dataset.repeat[task]``
    times. Unreadable pairs raise :class:`ImageReadError` naming the file, or are replaced by the next
    item with a warning when ``dataset.skip_bad``."""

    listing = staticmethod(train_listing)  # (cfg, task) -> Listing; the folder dataset pairs its own

    def __init__(self, cfg):
        self.cfg = cfg
        self.task_names = list(cfg.tasks)
        self.patch = int(cfg.patch_size)
        self.seed = int(cfg.seed)
        self.skip_bad = bool(cfg.skip_bad)
        repeat = dict(cfg.repeat or {})
        unknown = set(repeat) - set(self.task_names)
        if unknown:
            raise ValueError(f"dataset.repeat names unknown task(s) {sorted(unknown)}; tasks: {self.task_names}")
        self.recipes = {}
        self.samples: list[tuple[int, Sample]] = []
        self.offsets = [0]
        self.counts = []
        self.base_counts = []
        for t, task in enumerate(self.task_names):
            lst = self.listing(cfg, task)
            errors = [p for p in lst.problems if p.severity == "error"]
            if errors:
                raise FileNotFoundError(f"{errors[0].line()} (run `aio-data check` for the full report)")
            if lst.samples and lst.samples[0].input is None:
                self.recipes[t] = D.get_train_recipe(task, cfg.recipes, cfg.get("noise_sigma_range"))
            for s in lst.samples:
                self.samples.append((t, s))
            self.base_counts.append(len(lst.samples))
            self.counts.append(len(lst.samples) * int(repeat.get(task, 1)))
        # virtual index -> (task, sample) through per-task blocks
        self._starts = []  # start of each task's block in self.samples
        s = 0
        for c in self.base_counts:
            self._starts.append(s)
            s += c
        for c in self.counts:
            self.offsets.append(self.offsets[-1] + c)
        self.epoch = 0
        self._bad: set[int] = set()

    def __len__(self):
        return self.offsets[-1]

    def _locate(self, index: int):
        t = bisect.bisect_right(self.offsets, index) - 1
        j = (index - self.offsets[t]) % self.base_counts[t]
        return self.samples[self._starts[t] + j]

    def _get_item(self, index: int, seed_offset: int) -> dict:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            t, s = self._locate(i)
            try:
                inp, tgt = _load_pair(s)
                break
            except ImageReadError as e:
                if not self.skip_bad:
                    raise
                if i not in self._bad:
                    warnings.warn(f"skipping unreadable pair: {e}")
                    self._bad.add(i)
        else:
            raise RuntimeError("every training pair is unreadable")
        g = generator_for("train", self.seed, index, int(seed_offset))
        tensors = [tgt] if inp is None else [tgt, inp]
        tensors = augment(random_crop(tensors, self.patch, g), g)
        tgt = tensors[0]
        inp = tensors[1] if len(tensors) > 1 else self.recipes[t](tgt[None], g)[0]
        return {"input": inp.contiguous(), "target": tgt.contiguous(), "task": t,
                "name": f"{self.task_names[t]}/{s.name}"}


class TestSet(Dataset):
    """One test set of a real preset: full images (or centre crops), clean-only sets degraded with a
    seed derived from ``val.seed`` and the file name, so every run sees the same noisy inputs."""

    def __init__(self, cfg, name: str, spec, listing: Listing):
        self.name = name
        self.task_names = list(cfg.tasks)
        self.task_name = str(spec.task)
        if self.task_name not in self.task_names:
            raise ValueError(f"test set {name}: task {self.task_name!r} is not in dataset.tasks {self.task_names}")
        self.task = self.task_names.index(self.task_name)
        self.protocol = {"crop_border": int(spec.crop_border), "test_y_channel": bool(spec.test_y_channel)}
        if cfg.get("metric_protocol"):
            from aio.metrics.protocols import get_protocol

            self.protocol = get_protocol(cfg.metric_protocol).set_protocol(self.task_name)
        self.multiple = int(self.protocol.get("image_multiple", 1))
        self.samples = listing.samples
        if cfg.val.max_images is not None:
            self.samples = self.samples[: int(cfg.val.max_images)]
        self.recipe = D.get_recipe(self.task_name, cfg.recipes) if any(
            s.input is None for s in self.samples) else None
        self.vseed = int(cfg.val.seed)
        self.center = cfg.val.center_crop

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        with single_thread():
            return self._get(i)

    def _get(self, i: int) -> dict:
        s = self.samples[i]
        inp, tgt = _load_pair(s)
        if self.center is not None:
            tgt = center_crop(tgt, int(self.center))
            inp = center_crop(inp, int(self.center)) if inp is not None else None
        if self.multiple > 1:  # the protocol's centre crop to a multiple (DSRIR: 8)
            tgt = crop_to_multiple(tgt, self.multiple)
            inp = crop_to_multiple(inp, self.multiple) if inp is not None else None
        if inp is None:
            g = generator_for("test", self.vseed, self.name, s.name)
            inp = self.recipe(tgt[None], g)[0]
        return {"input": inp.contiguous(), "target": tgt.contiguous(), "task": self.task, "name": s.name}


def crop_to_multiple(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre-crop ``[C, H, W]`` to the largest multiple of ``multiple`` (the extra row/column at the bottom/right)."""
    h, w = t.shape[-2:]
    dh, dw = h % multiple, w % multiple
    return t[..., dh // 2:h - dh + dh // 2, dw // 2:w - dw + dw // 2]


def build_real_val_sets(cfg) -> dict[str, Dataset]:
    sets = {}
    if not cfg.test_sets:
        raise ValueError(f"dataset {cfg.name}: no dataset.test_sets declared")
    for name, spec in cfg.test_sets.items():
        lst = test_listing(cfg, spec)
        errors = [p for p in lst.problems if p.severity == "error"]
        if errors:
            if not spec.required and any(p.kind == "missing folder" for p in errors):
                continue
            raise FileNotFoundError(f"test set {name}: {errors[0].line()} (run `aio-data check`)")
        sets[str(name)] = TestSet(cfg, str(name), spec, lst)
    return sets
