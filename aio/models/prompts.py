"""MiOIR's prompt modules (Kong et al., "Towards Effective Multiple-in-One Image Restoration", 2024).

A *prompt* conditions a restoration network on the degradation: a prompt image goes through a small CNN
(:class:`PromptExtractor`, the reference's ``F_ext``) that pools it to a vector; per-position linear layers
(``prompt_scale<k>`` / ``prompt_shift<k>``) turn the vector into a channel-wise scale and shift, applied as
``feat * scale + shift + feat`` (:func:`modulate`) at fixed positions of the network.

* **Explicit prompt (EP)**: the prompt image is a fixed per-task map (:class:`TaskPromptMaps`) picked by the
  task label, so the network knows which of the seven tasks it is solving.
* **Adaptive prompt (AP)**: the prompt image is the degraded input itself (blind: no task label needed).

How the task label reaches the model (reference ``MiO_EP_Dateset`` / ``IRModel_EP``): the dataset reads the
degradation type from the type prefix of the LQ path (``blur_``, ``noise_``, ``jpeg_``, ``rain_``, ``haze_``,
``dark_``, ``sr_``) and returns row ``typep[i]`` of ``data/type7.npy``, a fixed ``[7, 128, 128]`` array of
uniform random values, with ``i`` = blur 0, noise 1, jpeg 2, rain 3, haze 4, dark 5, sr 6
(:data:`MIO_PROMPT_ROWS`). In aio the dataset returns the index of its task in ``dataset.tasks`` instead;
:class:`TaskPromptMaps` maps each task *name* to the reference row, so any task order gives the reference
prompt. The reference's maps are not learned and not in its checkpoints; ours are a non-persistent buffer
(the state dict stays the reference's), drawn from a fixed seed, or read from the reference's
``type7.npy`` (``model.prompt_maps``) to reproduce reference checkpoints exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

#: The reference's row of ``type7.npy`` for each task (``typep[i]`` in ``MiO_EP_Dateset``).
MIO_PROMPT_ROWS: tuple[str, ...] = ("blur", "noise", "jpeg", "rain", "haze", "dark", "sr")
#: Side of the reference's prompt maps.
PROMPT_MAP_SIZE = 128
#: Seed of the default prompt maps (the reference's own maps come from ``model.prompt_maps``).
PROMPT_MAP_SEED = 3


class PromptExtractor(nn.Module):
    """The reference's ``F_ext``: three zero-padded stride-2 convs (7x7, 3x3, 3x3) with ReLU, then a global
    mean -> a ``[B, nf]`` prompt vector. ``in_nc`` is 1 for explicit prompt maps, 3 for adaptive (image)."""

    def __init__(self, in_nc: int = 3, nf: int = 64):
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.conv1 = nn.Conv2d(in_nc, nf, 7, 2, 0)
        self.conv2 = nn.Conv2d(nf, nf, 3, 2, 0)
        self.conv3 = nn.Conv2d(nf, nf, 3, 2, 0)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = self.act(conv(self.pad(x)))
        return x.mean(dim=(2, 3))


def _read_maps(path: str) -> torch.Tensor:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"model.prompt_maps={path} does not exist; give the reference's data/type7.npy "
                                "or set model.prompt_maps=null for the built-in maps")
    import numpy as np

    maps = torch.from_numpy(np.load(p).astype(np.float32)).to("cpu")
    if maps.dim() != 3 or maps.shape[0] < len(MIO_PROMPT_ROWS):
        raise ValueError(f"model.prompt_maps={path} has shape {tuple(maps.shape)}; expected [7, H, W] (type7.npy)")
    return maps


class TaskPromptMaps(nn.Module):
    """Task label -> explicit prompt image ``[B, 1, S, S]``.

    ``tasks`` are the names behind the labels (``dataset.tasks``; default :data:`MIO_PROMPT_ROWS`, so label
    ``i`` is reference row ``i``). A name among the seven MiO tasks gets the reference's row; any other name
    gets a further map of its own. ``maps_path`` reads the reference's ``type7.npy``; without it the maps are
    uniform random in [0, 1) (like the reference's) from :data:`PROMPT_MAP_SEED`. The maps are a
    non-persistent buffer: they follow ``.to(device)`` but are not in the state dict (nor in the reference's).
    """

    def __init__(self, tasks: Sequence[str] | None = None, maps_path: str | None = None,
                 size: int = PROMPT_MAP_SIZE):
        super().__init__()
        self.tasks = list(tasks) if tasks is not None else list(MIO_PROMPT_ROWS)
        if not self.tasks:
            raise ValueError("model.prompt_tasks is empty; give the dataset's task names")
        extra = [t for t in self.tasks if t not in MIO_PROMPT_ROWS]
        g = torch.Generator().manual_seed(PROMPT_MAP_SEED)
        if maps_path is not None:
            base = _read_maps(str(maps_path))[: len(MIO_PROMPT_ROWS)]
            size = base.shape[-1]
        else:
            base = torch.rand(len(MIO_PROMPT_ROWS), size, size, generator=g, device="cpu")
        more = torch.rand(len(extra), base.shape[-2], base.shape[-1], generator=g, device="cpu")
        table = torch.cat([base.cpu(), more])
        rows = [MIO_PROMPT_ROWS.index(t) if t in MIO_PROMPT_ROWS else len(MIO_PROMPT_ROWS) + extra.index(t)
                for t in self.tasks]
        self.register_buffer("maps", table[rows].contiguous(), persistent=False)

    def forward(self, task: torch.Tensor | None, batch: int) -> torch.Tensor:
        if task is None:
            raise ValueError("an explicit-prompt model needs the task label: call model(x, task=LongTensor[B]) "
                             "(or use prompt=adaptive, which needs none)")
        task = torch.as_tensor(task, device=self.maps.device).long().reshape(-1)
        if task.numel() == 1 and batch > 1:
            task = task.expand(batch)
        if task.numel() != batch:
            raise ValueError(f"{task.numel()} task labels for a batch of {batch}")
        if task.device.type != "meta" and (bool((task < 0).any()) or bool((task >= len(self.tasks)).any())):
            raise ValueError(f"task label out of range 0..{len(self.tasks) - 1} (model.prompt_tasks={self.tasks})")
        return self.maps[task].unsqueeze(1)


def add_prompt_linears(module: nn.Module, kind: str, outputs: Sequence[tuple[str, int]], prompt_nf: int) -> None:
    """Register ``prompt_<kind><suffix> = Linear(prompt_nf, channels)`` on ``module`` for every
    ``(suffix, channels)`` of ``outputs``, in order (the reference's attribute names, so its checkpoints load)."""
    for suffix, channels in outputs:
        module.add_module(f"prompt_{kind}{suffix}", nn.Linear(prompt_nf, channels, bias=True))


def modulate(feat: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """MiOIR's prompt modulation ``feat * scale + shift + feat`` with ``[B, C]`` scale and shift."""
    c = feat.shape[1]
    return feat * scale.view(-1, c, 1, 1) + shift.view(-1, c, 1, 1) + feat


def modulate_at(module: nn.Module, feat: torch.Tensor, prompt: torch.Tensor, suffix: str) -> torch.Tensor:
    """:func:`modulate` ``feat`` with ``module``'s ``prompt_scale<suffix>`` / ``prompt_shift<suffix>`` of ``prompt``."""
    scale, shift = getattr(module, f"prompt_scale{suffix}"), getattr(module, f"prompt_shift{suffix}")
    return modulate(feat, scale(prompt), shift(prompt))


def check_prompt_kind(prompt: str) -> str:
    """``prompt`` if it is ``explicit`` or ``adaptive``; else a one-line error."""
    if prompt not in ("explicit", "adaptive"):
        raise ValueError(f"model.prompt={prompt!r} unknown for a prompted model; use explicit | adaptive")
    return prompt


def prompt_input(maps: TaskPromptMaps | None, x: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
    """The prompt image: the task's explicit map ``[B, 1, S, S]`` when ``maps`` is given, else (adaptive) the
    network's input ``x`` itself, as the reference feeds ``[lq, lq]``."""
    return maps(task, x.shape[0]) if maps is not None else x
