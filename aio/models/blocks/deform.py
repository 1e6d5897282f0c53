"""AirNet's modulated deformable conv (``DCN_layer`` of the official ``net/deform_conv.py``) on
``torchvision.ops.deform_conv2d`` (the official code calls mmcv's ``modulated_deform_conv2d``; both use the
DCNv2 layout: offsets ``[dy, dx]`` per kernel tap, one mask value per tap)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula
from torchvision.ops import deform_conv2d

_DEFORM_OP = torch.ops.torchvision.deform_conv2d


def _deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a deformable conv counted as the equivalent dense conv (1 MAC = 2 FLOPs; the bilinear
    sampling and the mask product are not counted), so FlopCounterMode sees AirNet's DGMs."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


if _DEFORM_OP not in flop_registry:
    register_flop_formula(_DEFORM_OP)(_deform_conv_flops)


class DeformConv(nn.Module):
    """Modulated deformable ``k x k`` conv of ``x`` whose offsets and mask come from a conv of
    ``concat(x, guide)`` (``conv_offset_mask``, zero-initialised: starts as a plain conv with mask 1/2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 bias: bool = False):
        super().__init__()
        k = kernel_size
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.conv_offset_mask = nn.Conv2d(in_channels * 2, 3 * k * k, k, padding=padding, bias=True)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        bound = 1.0 / math.sqrt(in_channels * k * k)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        out = self.conv_offset_mask(torch.cat([x, guide], dim=1))
        taps = out.shape[1] // 3
        offset, mask = out[:, : 2 * taps], torch.sigmoid(out[:, 2 * taps :])
        if x.dtype in (torch.float32, torch.float64):
            return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)
        # bf16/fp16 (autocast): the op runs in fp32 (torchvision's CPU kernel has no bf16; its CUDA autocast
        # rule does the same), the result goes back to the input's dtype
        with torch.autocast(x.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            y = deform_conv2d(x.float(), offset.float(), self.weight.float(), bias, padding=self.padding,
                              mask=mask.float())
        return y.to(x.dtype)
