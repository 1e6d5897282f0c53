"""Tiled inference and test-time augmentation (self-ensemble).

``tiled_forward`` runs a model tile by tile over an image of any size and blends the overlaps with a
separable linear-ramp window (weights rise over ``overlap`` pixels from each tile edge; each output pixel
is the weight-normalised sum of the tiles that cover it, so image borders are exact). Only one tile is on
the model's device at a time and the output is accumulated on ``out_device`` (the input's device by
default): memory is bounded by the tile size whatever the image size.

``tta_forward`` averages the model over the dihedral group: ``x8`` = 4 rotations x {identity, flip}, and
``flip`` = {identity, horizontal flip, vertical flip, both}; each output is mapped back by the inverse
transform before averaging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aio.models.output import restored_image


def call_model(model: Callable, x: torch.Tensor, task) -> torch.Tensor:
    """The restored image of one forward pass (``ModelOutput.restored`` for multi-output models)."""
    return restored_image(model(x) if task is None else model(x, task=task))


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return sorted(set(starts))


def _ramp(length: int, overlap: int, lead: bool, trail: bool, device) -> torch.Tensor:
    """1-D blending weights of one tile: ones, ramping linearly over ``overlap`` px on the sides shared with
    a neighbour (``lead``/``trail``), with the outermost ``overlap // 4`` px at 0 (the model's zero-padded
    tile border is the least reliable part of a tile). Sides on the image border keep weight 1."""
    w = torch.ones(length, device=device, dtype=torch.float32)
    if overlap <= 0:
        return w
    margin = overlap // 4
    d = torch.arange(length, device=device, dtype=torch.float32)
    ramp = lambda dist: ((dist + 1 - margin) / (overlap - margin + 1)).clamp(0.0, 1.0)  # noqa: E731
    if lead:
        w = torch.minimum(w, ramp(d))
    if trail:
        w = torch.minimum(w, ramp(length - 1 - d))
    return w


def tiled_forward(model: Callable, x: torch.Tensor, tile: int = 512, overlap: int = 32, task=None,
                  out_device: torch.device | str | None = None, model_device: torch.device | str | None = None,
                  ) -> torch.Tensor:
    """Restore ``x`` [B, C, H, W] tile by tile (tiles of ``tile`` x ``tile`` px, ``overlap`` px shared).

    ``model`` is called as ``model(tile, task=task)`` (``task`` omitted when None) and must keep the spatial
    size. Tiles are moved to ``model_device`` (default: ``x``'s device) and the result is accumulated on
    ``out_device`` (default: ``x``'s device). Images no larger than one tile go through in one call.
    """
    if x.ndim != 4:
        raise ValueError(f"tiled_forward expects [B, C, H, W], got {tuple(x.shape)}")
    tile = int(tile)
    overlap = max(0, min(int(overlap), tile // 2))
    out_device = torch.device(out_device) if out_device is not None else x.device
    model_device = torch.device(model_device) if model_device is not None else x.device
    b, _, h, w = x.shape
    if h <= tile and w <= tile:
        return call_model(model, x.to(model_device), task).to(out_device)
    stride = tile - overlap
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _starts(h, th, stride), _starts(w, tw, stride)
    out = None
    weight = torch.zeros(1, 1, h, w, device=out_device, dtype=torch.float32)
    for y0 in ys:
        wy = _ramp(th, overlap, y0 > 0, y0 + th < h, out_device)
        for x0 in xs:
            wx = _ramp(tw, overlap, x0 > 0, x0 + tw < w, out_device)
            win = (wy[:, None] * wx[None, :]).view(1, 1, th, tw)
            patch = x[:, :, y0:y0 + th, x0:x0 + tw].to(model_device)
            y = call_model(model, patch, task)
            if y.shape[-2:] != patch.shape[-2:]:
                raise ValueError(f"tiled_forward: the model changed the tile size {tuple(patch.shape[-2:])} -> "
                                 f"{tuple(y.shape[-2:])}; only same-size restoration models can be tiled")
            y = y.to(out_device, torch.float32)
            if out is None:
                out = torch.zeros(b, y.shape[1], h, w, device=out_device, dtype=torch.float32)
            out[:, :, y0:y0 + th, x0:x0 + tw] += y * win
            weight[:, :, y0:y0 + th, x0:x0 + tw] += win
    return out / weight


# (forward, inverse) pairs over the last two dims
def _transforms(mode: str):
    def rot(k):
        return (lambda t: torch.rot90(t, k, (-2, -1))), (lambda t: torch.rot90(t, -k, (-2, -1)))

    def flip(dims):
        return (lambda t: t.flip(dims)), (lambda t: t.flip(dims))

    if mode == "flip":
        return [(lambda t: t, lambda t: t), flip((-1,)), flip((-2,)), flip((-2, -1))]
    if mode == "x8":
        out = []
        for k in range(4):
            f, inv = rot(k)
            out.append((f, inv))
            out.append(((lambda t, f=f: f(t).flip(-1)), (lambda t, inv=inv: inv(t.flip(-1)))))
        return out
    raise ValueError(f"unknown tta mode {mode!r}; choose from ['x8', 'flip'] (or null for none)")


def tta_forward(model: Callable, x: torch.Tensor, mode: str = "x8", task=None) -> torch.Tensor:
    """Self-ensemble: the mean of ``inverse(model(transform(x)))`` over the transforms of ``mode``."""
    acc = None
    ts = _transforms(mode)
    for fwd, inv in ts:
        y = inv(call_model(model, fwd(x), task)).float()
        acc = y if acc is None else acc + y
    return acc / len(ts)
