"""The base class of every aio network and the pad-to-a-multiple helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` ([B, C, H, W]) on the bottom/right so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`. Reflect padding falls back to
    replicate where the image is too small to reflect (pad >= side).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` channels_last on CPU (oneDNN's 3x3 convs, forward and backward, run faster in it; the network
    then stays in it), unchanged elsewhere. The values are the same to ~1e-7 (another summation order)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``x`` back to ``size = (H, W)`` (top-left corner)."""
    h, w = size
    return x[..., :h, :w]


class RestorationModel(nn.Module):
    """Base of all aio networks: ``forward(x, task=None)`` maps a [B, 3, H, W] image in [0, 1] to its
    restoration, same shape, for any H, W (padding is handled inside).

    ``task`` is an optional LongTensor[B] of task labels (ignored by models that do not use it).
    ``aux_losses(task)`` returns extra, already weighted loss terms from the last forward; ``aux_metrics()``
    values worth logging from the last forward. Both are empty by default.
    """

    #: True when the state dict keeps modules that forward never uses (official layouts do); DDP then needs
    #: ``find_unused_parameters=True``.
    has_unused_parameters: bool = False

    #: H and W are padded to a multiple of this inside ``forward``.
    pad_multiple: int = 8

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def aux_losses(self, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Extra loss terms (already weighted) computed from the last forward."""
        return {}

    def aux_metrics(self) -> dict[str, float]:
        """Scalars worth logging from the last forward."""
        return {}

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Reflect-pad ``x`` to a multiple of :attr:`pad_multiple`; returns ``(padded, (H, W))``."""
        return pad_to_multiple(x, self.pad_multiple)
