"""Model size and cost: parameter count and forward FLOPs."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``); works on meta-device models."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _forward_any(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, with a task label 0 for models whose forward takes one (explicit-prompt models need it)."""
    if "task" in inspect.signature(model.forward).parameters:
        return model(x, task=torch.zeros(1, dtype=torch.long, device=x.device))
    return model(x)


def forward_gflops(model: nn.Module, size: int | tuple[int, int] = 256, in_channels: int = 3) -> float:
    """Forward GFLOPs of one ``[1, in_channels, size, size]`` image, counted by ``FlopCounterMode``.

    Only the forward is counted (FlopCounterMode's backward formulas overcount depthwise convs; a training
    step costs about 3x the forward). One multiply-add counts as 2 FLOPs, so papers quoting thop/ptflops
    "FLOPs" (really MACs) give half this number. The count runs on a meta-device copy: no memory, no compute.
    """
    h, w = (size, size) if isinstance(size, int) else size
    try:
        meta = copy.deepcopy(model).to("meta").eval()  # inference cost (BatchNorm cannot train on batch 1)
        x = torch.empty(1, in_channels, h, w, device="meta")
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            _forward_any(meta, x)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the real device
        p = next(model.parameters())
        x = torch.zeros(1, in_channels, h, w, device=p.device, dtype=p.dtype)
        counter = FlopCounterMode(display=False)
        was_training = model.training
        model.eval()
        with torch.no_grad(), counter:
            _forward_any(model, x)
        model.train(was_training)
    return counter.get_total_flops() / 1e9
