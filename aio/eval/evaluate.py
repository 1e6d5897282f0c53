"""The evaluation loop shared by the trainer (periodic validation) and ``aio-eval``."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aio.eval.tiling import call_model, tiled_forward, tta_forward
from aio.metrics import get_metric
from aio.metrics.protocols import metric_for


@dataclass
class EvalResult:
    """``per_set[name]`` = {metric: mean, metric + "_input": mean for the degraded input, "n": count};
    ``average`` = mean over sets of each metric key ("n" is the total count); ``samples`` = list of
    ``(degraded, restored, clean)`` CPU tensors [3, H, W]; ``per_image[name]`` = one row per image
    (``{"image": item name, metric: value, metric + "_input": value}``, in the set's order), so that tables
    can recompute means and paired significance tests from the same images."""

    per_set: dict[str, dict[str, float]] = field(default_factory=dict)
    average: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    metrics: tuple[str, ...] = ("psnr", "ssim")
    per_image: dict[str, list[dict[str, float | str]]] = field(default_factory=dict)

    def write_per_image(self, folder: str | Path) -> list[Path]:
        """Write ``<folder>/<set>.csv`` (one line per image, full precision) for every set; returns the paths."""
        import pandas as pd

        from aio.tracking.names import per_image_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, rows in self.per_image.items():
            path = folder / per_image_file(name)
            pd.DataFrame.from_records(rows).to_csv(path, index=False)
            paths.append(path)
        return paths

    def to_frame(self, include_average: bool = True):
        """A pandas DataFrame, one row per set (index ``set``), plus an ``average`` row."""
        import pandas as pd

        rows = {name: dict(v) for name, v in self.per_set.items()}
        if include_average and self.per_set:
            rows["average"] = dict(self.average)
        cols = []
        for m in self.metrics:
            cols += [m, f"{m}_input"]
        cols.append("n")
        df = pd.DataFrame.from_dict(rows, orient="index")
        df = df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]]
        df.index.name = "set"
        if "n" in df.columns:
            df["n"] = df["n"].astype(int)
        return df

    def flat(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + set + "/" + key: value}`` for logging (includes ``average``)."""
        out = {}
        for name, vals in list(self.per_set.items()) + [("average", self.average)]:
            for k, v in vals.items():
                out[f"{prefix}{name}/{k}"] = float(v)
        return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else math.nan


def _png_path(root: Path, set_name: str, item_name: str) -> Path:
    rel = Path(str(item_name).replace("\\", "/").lstrip("/"))
    rel = Path(*[p for p in rel.parts if p not in ("..", ".")]) if rel.parts else Path("image")
    return root / set_name / rel.with_suffix(".png")


def save_png(img: torch.Tensor, path: str | Path) -> Path:
    """Write a [3, H, W] (or [1, 3, H, W]) image in [0, 1] as an 8-bit PNG (round(x * 255))."""
    from PIL import Image

    if img.ndim == 4:
        img = img[0]
    arr = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def save_sample_grid(samples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], path: str | Path,
                     crop: int | None = None, padding: int = 2) -> Path:
    """Write a PNG grid, one row per sample, columns degraded | restored | clean.

    Images of different sizes are zero-padded (bottom/right) to the largest; ``crop`` centre-crops each to
    at most ``crop`` x ``crop`` px first (handy for large test images).
    """
    from torchvision.utils import make_grid, save_image

    if not samples:
        raise ValueError("save_sample_grid: no samples")
    imgs = []
    for trip in samples:
        for im in trip:
            im = im.detach().float().cpu()
            if im.ndim == 4:
                im = im[0]
            if crop:
                h, w = im.shape[-2:]
                t, l = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
                im = im[:, t:t + crop, l:l + crop]
            imgs.append(im.clamp(0, 1))
    hmax = max(i.shape[-2] for i in imgs)
    wmax = max(i.shape[-1] for i in imgs)
    imgs = [torch.nn.functional.pad(i, (0, wmax - i.shape[-1], 0, hmax - i.shape[-2])) for i in imgs]
    grid = make_grid(torch.stack(imgs), nrow=3, padding=padding)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path


def restore_image(model, x: torch.Tensor, *, task=None, tile: int | None = None, tile_overlap: int = 32,
                  tta: str | None = None, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One forward pass on ``x`` [B, 3, H, W] (on the model's device) with optional tiling and TTA;
    returns float32 clamped to [0, 1]. Call under ``torch.inference_mode()`` with the model in eval mode."""
    fwd = model
    if tile:
        fwd = functools.partial(tiled_forward, model, tile=int(tile), overlap=int(tile_overlap))
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        y = tta_forward(fwd, x, mode=tta, task=task) if tta else call_model(fwd, x, task)
    return y.float().clamp(0, 1)


def _model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def evaluate_sets(model, sets: Mapping[str, torch.utils.data.Dataset], *, device=None,
                  amp_dtype: torch.dtype | None = None, tile: int | None = None, tile_overlap: int = 32,
                  tta: str | None = None, save_dir: str | Path | None = None, num_samples: int = 0,
                  metrics: Sequence[str] = ("psnr", "ssim"), metric_options: Mapping[str, Mapping] | None = None,
                  progress: bool = False) -> EvalResult:
    """Evaluate ``model`` on every dataset of ``sets`` (batch size 1, any image size).

    Each item is ``{"input", "target", "task", "name"}``; the set's ``.protocol`` (``crop_border``,
    ``test_y_channel``; defaults 0 / False; ``name``: a named protocol of :mod:`aio.metrics.protocols`) selects the
    metric protocol. The model is called as
    ``model(x, task=LongTensor[1])`` in eval mode under ``torch.inference_mode`` (its training mode is
    restored afterwards); ``tile`` enables tiled inference for images larger than ``tile`` px, ``tta``
    (``"x8"``/``"flip"``) self-ensembling. ``save_dir`` writes restored PNGs as
    ``<save_dir>/<set>/<item name>.png``. ``num_samples`` keeps up to that many ``(degraded, restored,
    clean)`` triplets, spread over the sets. ``metric_options[name]`` are extra keyword arguments for a
    metric (e.g. local weight files for LPIPS).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    metrics = tuple(dict.fromkeys(metrics))
    fns = {m: get_metric(m) for m in metrics}
    metric_options = {k: dict(v) for k, v in (metric_options or {}).items()}
    result = EvalResult(metrics=metrics)
    n_sets = max(1, len(sets))
    per_set_samples = math.ceil(num_samples / n_sets) if num_samples > 0 else 0
    save_root = Path(save_dir) if save_dir is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for set_name, ds in sets.items():
                proto = dict(getattr(ds, "protocol", None) or {})
                kw = dict(crop_border=int(proto.get("crop_border", 0) or 0),
                          test_y_channel=bool(proto.get("test_y_channel", False)))
                set_fns = {m: metric_for(proto, m, fn) for m, fn in fns.items()}  # a named protocol's own metrics
                vals: dict[str, list[float]] = {k: [] for m in metrics for k in (m, f"{m}_input")}
                images: list[str] = []
                indices = range(len(ds))
                if progress:
                    from tqdm import tqdm

                    indices = tqdm(indices, desc=f"eval {set_name}", leave=False)
                for i in indices:
                    item = ds[i]
                    x = item["input"].unsqueeze(0).to(device, torch.float32)
                    gt = item["target"].unsqueeze(0).to(device, torch.float32)
                    task = torch.as_tensor([int(item.get("task", 0))], dtype=torch.long, device=device)
                    y = restore_image(model, x, task=task, tile=tile, tile_overlap=tile_overlap, tta=tta,
                                      amp_dtype=amp_dtype)
                    if y.shape != gt.shape:
                        raise ValueError(f"eval {set_name}/{item.get('name', i)}: output {tuple(y.shape)} "
                                         f"!= target {tuple(gt.shape)}")
                    for m, fn in set_fns.items():
                        opts = metric_options.get(m, {})
                        vals[m].append(float(fn(y, gt, **kw, **opts)[0]))
                        vals[f"{m}_input"].append(float(fn(x, gt, **kw, **opts)[0]))
                    images.append(str(item.get("name", f"{i:05d}")))
                    if save_root is not None:
                        save_png(y[0], _png_path(save_root, set_name, item.get("name", f"{i:05d}")))
                    if len(result.samples) < num_samples and i < per_set_samples:
                        result.samples.append((x[0].cpu(), y[0].cpu(), gt[0].cpu()))
                stats = {k: _mean(v) for k, v in vals.items()}
                stats["n"] = len(ds)
                result.per_set[set_name] = stats
                result.per_image[set_name] = [
                    {"image": img, **{k: v[j] for k, v in vals.items()}} for j, img in enumerate(images)
                ]
    finally:
        model.train(was_training)
    if result.per_set:
        keys = [k for k in next(iter(result.per_set.values())) if k != "n"]
        result.average = {k: _mean([s[k] for s in result.per_set.values()]) for k in keys}
        result.average["n"] = sum(s["n"] for s in result.per_set.values())
    return result
