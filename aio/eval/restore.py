"""Restore every image of a file or folder with a model (any size; tiled when larger than ``tile``).

Each result is written in its source's mode by the rules of :mod:`aio.data.images` (grey in -> grey out by
BT.601 luma, alpha carried through, 16-bit written as 16-bit); whatever could not be kept is said per file.
An unreadable file is one line (``skipped <path>: <reason>``) and counted in the summary.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aio.eval.evaluate import restore_image


@dataclass
class RestoreReport:
    """What :func:`restore_path` did: files written, files skipped (with why), per-file conversion notes."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"restored {len(self.written)}, skipped {len(self.skipped)}"


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """The image files of ``root`` (itself when a file; recursively, hidden parts and ``exclude`` left out)."""
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
                 ext: str | None = None, progress: bool = True, echo=print) -> RestoreReport:
    """Restore ``input_path`` (an image or a folder, searched recursively) into ``output_dir``.

    Output files mirror the input names (relative paths kept; ``ext`` e.g. ``"png"`` changes the
    extension, None keeps it; JPEG/WebP are written at quality 95) in the input's mode (module docstring).
    Images larger than ``tile`` px are restored tile by tile. ``task`` is the task label passed to
    task-conditioned models (None: not passed). Unreadable files are skipped, each with one line through
    ``echo`` (above the progress bar); warnings raised while reading a file become such a line too.
    """
    from tqdm import tqdm

    from aio.data.images import ImageReadError, read_image_with_source, write_like_source

    input_path, output_dir = Path(input_path), Path(output_dir)
    files = list_images(input_path, exclude=output_dir)
    if not files:
        raise FileNotFoundError(f"no images under {input_path}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    base = input_path if input_path.is_dir() else input_path.parent
    report = RestoreReport()
    was_training = model.training
    model.eval()
    bar = tqdm(files, desc="restore", unit="img", disable=not progress)
    say = bar.write if progress else echo
    try:
        with torch.inference_mode():
            for f in bar:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        x, src = read_image_with_source(f)
                    except (ImageReadError, OSError, ValueError) as err:
                        reason = getattr(err, "reason", str(err))
                        report.skipped.append((f, reason))
                        say(f"skipped {f}: {reason}")
                        continue
                for w in caught:
                    say(f"{f}: {w.category.__name__}: {w.message}")
                x = x.unsqueeze(0).to(device)
                t = None if task is None else torch.tensor([int(task)], dtype=torch.long, device=device)
                y = restore_image(model, x, task=t, tile=tile, tile_overlap=tile_overlap, tta=tta,
                                  amp_dtype=amp_dtype)
                rel = f.relative_to(base)
                if ext:
                    rel = rel.with_suffix("." + ext.lstrip("."))
                target = output_dir / rel
                for note in write_like_source(target, y[0].float().cpu(), src):
                    report.notes.append((f, note))
                    say(f"{f}: {note}")
                report.written.append(target)
    finally:
        bar.close()
        model.train(was_training)
    return report
