"""Restore every image of a file or folder with a model (any size; tiled when larger than ``tile``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from aio.eval.evaluate import restore_image

_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                ".tiff": "TIFF", ".webp": "WEBP"}


def _read(path: Path) -> torch.Tensor:
    """RGB float [3, H, W] in [0, 1]: aio.data.images rules (grey replicated, alpha dropped)."""
    from aio.data.images import read_image

    return read_image(path)


def _write(path: Path, img: torch.Tensor) -> Path:
    from PIL import Image

    from aio.data.images import to_uint8

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _PIL_FORMATS.get(path.suffix.lower(), "PNG")
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(to_uint8(img)).save(path, format=fmt, **kw)
    return path


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    from aio.data.images import is_image_file

    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root}")
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or not is_image_file(p) or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if exclude is not None and exclude.resolve() in p.resolve().parents:
            continue
        out.append(p)
    return out


def restore_path(model, input_path, output_dir, *, device=None, tile: int | None = 512, tile_overlap: int = 32,
                 tta: str | None = None, task: int | None = None, amp_dtype: torch.dtype | None = None,
                 ext: str | None = None, progress: bool = True) -> list[Path]:
    """Restore ``input_path`` (an image or a folder, searched recursively) into ``output_dir``.

    Output files mirror the input names (relative paths kept; ``ext`` e.g. ``"png"`` changes the
    extension, None keeps it; JPEG/WebP are written at quality 95). Images larger than ``tile`` px are
    restored tile by tile. ``task`` is the task label passed to task-conditioned models (None: not passed).
    Unreadable files are skipped with a warning. Returns the written paths.
    """
    from tqdm import tqdm

    from aio.data.images import ImageReadError

    input_path, output_dir = Path(input_path), Path(output_dir)
    files = list_images(input_path, exclude=output_dir)
    if not files:
        raise FileNotFoundError(f"no images under {input_path}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    base = input_path if input_path.is_dir() else input_path.parent
    written = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for f in tqdm(files, desc="restore", unit="img", disable=not progress):
                try:
                    x = _read(f)
                except ImageReadError as err:
                    warnings.warn(f"skipping {err}")
                    continue
                x = x.unsqueeze(0).to(device)
                t = None if task is None else torch.tensor([int(task)], dtype=torch.long, device=device)
                y = restore_image(model, x, task=t, tile=tile, tile_overlap=tile_overlap, tta=tta,
                                  amp_dtype=amp_dtype)
                rel = f.relative_to(base)
                if ext:
                    rel = rel.with_suffix("." + ext.lstrip("."))
                written.append(_write(output_dir / rel, y[0].cpu()))
    finally:
        model.train(was_training)
    return written
