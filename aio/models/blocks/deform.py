"""AirNet's modulated deformable conv (``DCN_layer`` of the official ``net/deform_conv.py``) on
``torchvision.ops.deform_conv2d`` (the official code calls mmcv's ``modulated_deform_conv2d``; both use the
DCNv2 layout: offsets ``[dy, dx]`` per kernel tap, one mask value per tap). On the CPU the op is
:func:`deform_conv2d_cpu` (the same sampling as gathers + one GEMM; torchvision's CPU kernel is serial)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import flop_registry, register_flop_formula
from torchvision.ops import deform_conv2d

_DEFORM_OP = torch.ops.torchvision.deform_conv2d


def _deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a deformable conv counted as the equivalent dense conv (1 MAC = 2 FLOPs; the bilinear
    sampling and the mask product are not counted), so FlopCounterMode sees AirNet's DGMs."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


if _DEFORM_OP not in flop_registry:
    register_flop_formula(_DEFORM_OP)(_deform_conv_flops)


def _sampled_columns(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kh: int, kw: int,
                     padding: int) -> torch.Tensor:
    """The modulated, bilinearly sampled columns ``[B, Ho*Wo, kh*kw*C]`` (tap-major, channels inner) of a
    stride-1 deformable conv: torchvision's ``bilinear_interpolate`` (zero outside, a corner outside counts 0,
    the same corner weights) done as four row gathers of the channels-last image."""
    b, c, h, w = x.shape
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    off = offset.reshape(b, taps, 2, ho * wo)  # DCNv2 layout: (dy, dx) per tap
    kw_ = dict(dtype=x.dtype, device=x.device)
    ky = torch.arange(kh, **kw_).repeat_interleave(kw).view(1, taps, 1)
    kx = torch.arange(kw, **kw_).repeat(kh).view(1, taps, 1)
    gy = (torch.arange(ho, **kw_) - padding).repeat_interleave(wo).view(1, 1, -1)
    gx = (torch.arange(wo, **kw_) - padding).repeat(ho).view(1, 1, -1)
    py, px = gy + ky + off[:, :, 0], gx + kx + off[:, :, 1]  # [B, taps, Ho*Wo] sampling positions
    with torch.no_grad():
        inside = (py > -1) & (py < h) & (px > -1) & (px < w)
        y0f, x0f = py.floor(), px.floor()
    ly, lx = py - y0f, px - x0f
    hy, hx = 1 - ly, 1 - lx
    y0, x0 = y0f.long(), x0f.long()
    # row 0 of each image is a zero row: corners outside the image read it
    rows = torch.cat([x.new_zeros(b, 1, c), x.permute(0, 2, 3, 1).reshape(b, h * w, c)], 1).reshape(-1, c)
    first_row = (torch.arange(b, device=x.device) * (h * w + 1)).view(b, 1, 1)
    val = 0
    for dy, dx, weight in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = torch.where(ok, yy * w + xx + 1, 0) + first_row
        val = val + weight.unsqueeze(-1) * rows.index_select(0, idx.reshape(-1)).view(b, taps, ho * wo, c)
    cols = val * mask.reshape(b, taps, ho * wo, 1)
    return cols.permute(0, 2, 1, 3).reshape(b, ho * wo, taps * c)


def _gathered_deform_conv(x, offset, weight, mask, padding: int) -> torch.Tensor:
    o, _, kh, kw = weight.shape
    b, ho, wo = x.shape[0], *offset.shape[-2:]
    cols = _sampled_columns(x, offset, mask, kh, kw, padding)
    out = cols @ weight.permute(0, 2, 3, 1).reshape(o, -1).t()  # one GEMM: [B, Ho*Wo, O]
    return out.view(b, ho, wo, o).permute(0, 3, 1, 2)  # channels_last


def deform_conv2d_cpu(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      padding: int, mask: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` (stride 1, dilation 1, one offset group) for the CPU: gathers and one
    GEMM in aten ops, recomputed in the backward (``checkpoint``: only the inputs are kept). torchvision's CPU
    kernel runs its sampling and backward in serial loops (88% of an AirNet training step); this is ~2x faster
    per layer at 64 channels, equal to it to ~1e-6 (another summation order in the GEMM)."""
    out = checkpoint(_gathered_deform_conv, x, offset, weight, mask, padding, use_reentrant=False)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _deform(x, offset, weight, bias, padding, mask):
    if x.device.type == "cpu":
        return deform_conv2d_cpu(x, offset, weight, bias, padding, mask)
    return deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)


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
            return _deform(x, offset, self.weight, self.bias, self.padding, mask)
        # bf16/fp16 (autocast): the op runs in fp32 (torchvision's CPU kernel has no bf16; its CUDA autocast
        # rule does the same), the result goes back to the input's dtype
        with torch.autocast(x.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            y = _deform(x.float(), offset.float(), self.weight.float(), bias, self.padding, mask.float())
        return y.to(x.dtype)
